package initagent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
)

// TestPlanDocumentMode: without the document the plan ends at
// FetchDocument; with it, the whole plan begins with the same steps, so
// the agent goes on where it stopped.
func TestPlanDocumentMode(t *testing.T) {
	p, err := boot.Parse("overboot.doc=http://s/doc/tok-0123456789 overboot.fetch.attempts=3")
	if err != nil {
		t.Fatal(err)
	}
	early, err := Plan(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsDocument(early) {
		t.Fatalf("the early plan does not end with FetchDocument:\n%s", FormatPlan(early))
	}
	if got, want := early[len(early)-1], (FetchDocument{URL: "http://s/doc/tok-0123456789", Attempts: 3, Stall: boot.DefaultFetchTimeout}); got != want {
		t.Errorf("last step %#v, want %#v", got, want)
	}
	doc := boot.Document{Version: 1,
		Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/blobs/sha256/" + digest.Hex(), Digest: digest}},
		Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}}}
	full, err := Plan(p, &doc)
	if err != nil {
		t.Fatal(err)
	}
	if NeedsDocument(full) {
		t.Errorf("the whole plan still needs the document")
	}
	if d := cmp.Diff(FormatPlan(early), FormatPlan(full[:len(early)])); d != "" {
		t.Errorf("the whole plan does not begin with the early plan (-early +whole):\n%s", d)
	}
	if _, ok := full[len(full)-1].(SwitchRoot); !ok {
		t.Errorf("the whole plan does not end with switch_root:\n%s", FormatPlan(full))
	}
	if _, err := Plan(p, &boot.Document{Version: 1}); err == nil {
		t.Errorf("an invalid document was planned")
	}
}

// TestPlanWhole: a static command line and a disk root are planned at once;
// a document given to them is ignored.
func TestPlanWhole(t *testing.T) {
	other := &boot.Document{Version: 1, Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://elsewhere/i", Digest: digest}}, Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}}}
	for _, cmdline := range []string{
		"overboot.lower=http://10.0.2.100/img overboot.digest=" + string(digest),
		"overboot.root=ibft:1",
	} {
		p, err := boot.Parse(cmdline)
		if err != nil {
			t.Fatal(err)
		}
		steps, err := Plan(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if NeedsDocument(steps) || strings.Contains(FormatPlan(steps), "document") {
			t.Errorf("%s: the plan fetches a document:\n%s", cmdline, FormatPlan(steps))
		}
		with, err := Plan(p, other)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(FormatPlan(steps), FormatPlan(with)); d != "" {
			t.Errorf("%s: a document changed the plan (-without +with):\n%s", cmdline, d)
		}
	}
}
