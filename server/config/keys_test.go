package config

import (
	"flag"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the key table")

// TestKeyTable: every key of the table is one its section's setter
// takes, and every key a setter takes (its case labels) is in the table:
// the reference and an unknown key's error cannot drift from the parser.
func TestKeyTable(t *testing.T) {
	setters := map[string]func(k, v string) error{
		"server":  func(k, v string) error { return Default().setServer(k, v) },
		"profile": func(k, v string) error { return (&Profile{}).set(k, v) },
		"machine": func(k, v string) error { return (&Machine{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}).set(k, v) },
		"subnet":  func(k, v string) error { return (&Subnet{}).set(k, v) },
		"select":  func(k, v string) error { return (&Select{}).set(k, v) },
	}
	funcs := map[string]string{"server": "setServer", "profile": "Profile) set", "machine": "Machine) set", "subnet": "Subnet) set", "select": "Select) set"}
	src, err := os.ReadFile("keys.go")
	if err != nil {
		t.Fatal(err)
	}
	caseRE := regexp.MustCompile(`case ("[a-z0-9-]+"(?:, "[a-z0-9-]+")*):`)
	for _, s := range Sections {
		set := setters[s.Kind]
		inTable := map[string]bool{}
		for _, k := range s.Keys {
			inTable[k.Name] = true
			if err := set(k.Name, "\x01 not a value"); err != nil && strings.Contains(err.Error(), "unknown key") {
				t.Errorf("[%s] %s: in the table, but its setter says %v", s.Kind, k.Name, err)
			}
			if k.Doc == "" {
				t.Errorf("[%s] %s: no doc", s.Kind, k.Name)
			}
		}
		if err := set("no-such-key", "x"); err == nil || !strings.Contains(err.Error(), "unknown key in ["+s.Kind+"]") {
			t.Errorf("[%s] an unknown key: %v", s.Kind, err)
		}
		// The setter's own case labels.
		body := string(src)
		i := strings.Index(body, funcs[s.Kind]+"(k, v string) error {")
		if i < 0 {
			t.Fatalf("no setter %s in keys.go", funcs[s.Kind])
		}
		body = body[i:]
		if j := strings.Index(body, "\n}\n"); j > 0 {
			body = body[:j]
		}
		labels := []string{}
		for _, m := range caseRE.FindAllStringSubmatch(body, -1) {
			for _, q := range strings.Split(m[1], ", ") {
				labels = append(labels, strings.Trim(q, `"`))
			}
		}
		if s.Kind == "subnet" {
			labels = append(labels, "profile") // its setter takes one key, with an if
		}
		for _, l := range labels {
			if !inTable[l] && !inner[l] {
				t.Errorf("[%s] %s: its setter takes it, the table lacks it", s.Kind, l)
			}
		}
	}
}

// inner are case labels of switches inside setters: values, not keys.
var inner = map[string]bool{}

// TestReferenceDoc: docs/configuration.md is the reference made from the
// key table (go test -update rewrites it).
func TestReferenceDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	got := Reference()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./server/config -update writes it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s is not the key table's reference (go test ./server/config -update) (-file +table):\n%s", path, d)
	}
}
