package initagent

import (
	"strings"
	"testing"
	"time"

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

// TestPlanAttestMode: overboot.attest plans as overboot.doc does, with
// securityfs mounted early and the Attest step in FetchDocument's place.
func TestPlanAttestMode(t *testing.T) {
	p, err := boot.Parse("overboot.attest=http://s/attest/tok-0123456789 overboot.fetch.attempts=3")
	if err != nil {
		t.Fatal(err)
	}
	early, err := Plan(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsDocument(early) {
		t.Fatalf("the early plan does not end with Attest:\n%s", FormatPlan(early))
	}
	if got, want := early[len(early)-1], (Attest{URL: "http://s/attest/tok-0123456789", Attempts: 3, Stall: boot.DefaultFetchTimeout}); got != want {
		t.Errorf("last step %#v, want %#v", got, want)
	}
	want := Mount{Source: "securityfs", Target: SecurityFS, FSType: "securityfs", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly}
	if d := cmp.Diff(Step(want), early[2]); d != "" {
		t.Errorf("third step (-want +got):\n%s", d)
	}
	doc := boot.Document{Version: 1,
		Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/blobs/sha256/" + digest.Hex(), Digest: digest}},
		Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}}}
	full, err := Plan(p, &doc)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(FormatPlan(early), FormatPlan(full[:len(early)])); d != "" {
		t.Errorf("the whole plan does not begin with the early plan (-early +whole):\n%s", d)
	}
	// What follows the document is document mode's.
	pd, err := boot.Parse("overboot.doc=http://s/doc/tok-0123456789 overboot.fetch.attempts=3")
	if err != nil {
		t.Fatal(err)
	}
	docMode, err := Plan(pd, &doc)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(FormatPlan(docMode[len(docMode)-(len(full)-len(early)):]), FormatPlan(full[len(early):])); d != "" {
		t.Errorf("after the document, attested and document mode differ (-doc +attest):\n%s", d)
	}
	for _, s := range docMode {
		if m, ok := s.(Mount); ok && m.FSType == "securityfs" {
			t.Errorf("document mode mounts securityfs")
		}
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

// TestPlanKeep: a root with iSCSI sessions hands them to the keeper after
// the last attach and before the hand-over, each ISCSIAttach with the
// recovery timeout of the command line; a root without any has no Keep.
func TestPlanKeep(t *testing.T) {
	src := func(target string) *boot.ISCSISource {
		return &boot.ISCSISource{Portal: "10.0.2.100:3260", Target: target, Initiator: "iqn.2026-11.org.overboot:i-1",
			CHAP: &boot.CHAP{User: "m1", Secret: "secret-of-16-bytes"}}
	}
	lowerSrc := func(target string) *boot.ISCSISource {
		s := src(target)
		s.Digest, s.Size = digest, 4096
		return s
	}
	httpLower := boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/i", Digest: digest}}
	lazyLower := boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/i", Digest: digest, Size: 1 << 20, Mode: boot.LowerLazy,
		Verity: &boot.Verity{HashURL: "http://s/v", HashDigest: digest, HashSize: 16384, RootHash: strings.Repeat("ab", 32), Salt: "00"}}}
	tmpfs := boot.Upper{Tmpfs: &boot.TmpfsUpper{}}
	for _, tc := range []struct {
		name    string
		cmdline string
		doc     *boot.Document
		want    []string // Keep's links; nil: no Keep
	}{
		{"iscsi upper", "overboot.doc=http://s/d overboot.iscsi.recovery=90s", &boot.Document{Version: 1, Lower: httpLower, Upper: boot.Upper{ISCSI: src("iqn.2026-11.org.overboot:u")}}, []string{UpperDevice}},
		{"iscsi lower", "overboot.doc=http://s/d overboot.iscsi.recovery=90s", &boot.Document{Version: 1, Lower: boot.Source{ISCSI: lowerSrc("iqn.2026-11.org.overboot:l")}, Upper: tmpfs}, []string{LowerDevice}},
		{"both", "overboot.doc=http://s/d overboot.iscsi.recovery=90s", &boot.Document{Version: 1, Lower: boot.Source{ISCSI: lowerSrc("iqn.2026-11.org.overboot:l")}, Upper: boot.Upper{ISCSI: src("iqn.2026-11.org.overboot:u")}}, []string{LowerDevice, UpperDevice}},
		{"lazy lower, iscsi upper", "overboot.doc=http://s/d overboot.iscsi.recovery=90s", &boot.Document{Version: 1, Lower: lazyLower, Upper: boot.Upper{ISCSI: src("iqn.2026-11.org.overboot:u")}}, []string{UpperDevice}},
		{"lazy lower alone", "overboot.doc=http://s/d", &boot.Document{Version: 1, Lower: lazyLower, Upper: tmpfs}, nil},
		{"ram", "overboot.doc=http://s/d", &boot.Document{Version: 1, Lower: httpLower, Upper: tmpfs}, nil},
		{"disk root", "overboot.root=ibft:1 overboot.iscsi.recovery=90s", nil, []string{RootDevice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := boot.Parse(tc.cmdline)
			if err != nil {
				t.Fatal(err)
			}
			steps, err := Plan(p, tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			keepAt, lastAttach := -1, -1
			var got []string
			for i, s := range steps {
				switch s := s.(type) {
				case Keep:
					keepAt, got = i, s.Links
				case ISCSIAttach:
					lastAttach = i
					if s.Recovery != 90*time.Second {
						t.Errorf("%s: recovery %v, want 90s", s, s.Recovery)
					}
				case IBFTAttach:
					lastAttach = i
					if s.Recovery != 90*time.Second {
						t.Errorf("%s: recovery %v, want 90s", s, s.Recovery)
					}
				case LazyAttach:
					lastAttach = max(lastAttach, i)
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("kept links (-want +got):\n%s\n%s", d, FormatPlan(steps))
			}
			if keepAt < 0 {
				return
			}
			if keepAt < lastAttach {
				t.Errorf("Keep before the last attach:\n%s", FormatPlan(steps))
			}
			if _, ok := steps[len(steps)-1].(SwitchRoot); !ok || keepAt > len(steps)-3 {
				t.Errorf("Keep not before the hand-over:\n%s", FormatPlan(steps))
			}
			if s := steps[keepAt].String(); strings.Contains(s, "secret") {
				t.Errorf("Keep shows a secret: %s", s)
			}
		})
	}
}

// TestPlanMirrors: the mirrors of a static command line reach the
// download (ram) and the keeper (lazy), and the plan shows them in the
// order they are tried.
func TestPlanMirrors(t *testing.T) {
	h := strings.Repeat("c", 64)
	for _, tc := range []struct{ cmdline, want string }{
		{"overboot.lower=http://a/img overboot.lower.mirrors=http://b/img,http://c/img overboot.digest=" + string(digest),
			"fetch http://a/img or http://b/img or http://c/img -> "},
		{"overboot.lower=http://a/img overboot.lower.mirrors=http://b/img overboot.digest=" + string(digest) +
			" overboot.size=8192 overboot.lower.mode=lazy overboot.verity=http://a/t overboot.verity.mirrors=http://b/t overboot.verity.size=8192 overboot.verity.root=" + h,
			"nbd <- keeper <- http://a/img or http://b/img (on demand, 8192 bytes) + tree http://a/t or http://b/t (8192 bytes)"},
	} {
		p, err := boot.Parse(tc.cmdline)
		if err != nil {
			t.Fatal(err)
		}
		steps, err := Plan(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(FormatPlan(steps), tc.want) {
			t.Errorf("plan lacks %q:\n%s", tc.want, FormatPlan(steps))
		}
		for _, s := range steps {
			switch s := s.(type) {
			case Download:
				if diff := cmp.Diff([]string{"http://b/img", "http://c/img"}, s.Mirrors); diff != "" {
					t.Errorf("download mirrors (-want +got):\n%s", diff)
				}
			case LazyAttach:
				if diff := cmp.Diff([]string{"http://b/img"}, s.Source.Mirrors); diff != "" {
					t.Errorf("lazy mirrors (-want +got):\n%s", diff)
				}
			}
		}
	}
}
