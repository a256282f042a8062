package initagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
)

// TestWriteFiles writes an identity into a directory standing for the new
// root: modes as given, an image's old file replaced, and a symlink in
// the image that points outside the root is not followed. No root needed.
func TestWriteFiles(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("image\n"), 0o444)
	os.Symlink(outside, filepath.Join(root, "etc/ssh"))
	files := IdentityFiles(&boot.Identity{Hostname: "lab-01", MachineID: strings.Repeat("ab", 16),
		Files: []boot.IdentityFile{{Path: "/etc/ssh/ssh_host_ed25519_key", Mode: 0o600, Data: "KEY"}}})
	_, err := writeFiles(WriteFiles{Root: root, Files: files[:2]})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]struct {
		data string
		mode os.FileMode
	}{"etc/hostname": {"lab-01\n", 0o644}, "etc/machine-id": {strings.Repeat("ab", 16) + "\n", 0o444}} {
		b, err := os.ReadFile(filepath.Join(root, p))
		fi, _ := os.Stat(filepath.Join(root, p))
		if err != nil || string(b) != want.data || fi.Mode().Perm() != want.mode {
			t.Errorf("%s: %q %v %v", p, b, fi.Mode().Perm(), err)
		}
	}
	if _, err := writeFiles(WriteFiles{Root: root, Files: files[2:]}); err == nil {
		t.Error("wrote through a symlink that leaves the root")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("a file landed outside the root: %v", ents)
	}
	os.Remove(filepath.Join(root, "etc/ssh"))
	if _, err := writeFiles(WriteFiles{Root: root, Files: files[2:]}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key: %v %v", fi, err)
	}
	if s := (WriteFiles{Root: "/newroot", Files: files}).String(); strings.Contains(s, "KEY") || !strings.Contains(s, "/etc/ssh/ssh_host_ed25519_key (0600, 3 bytes)") {
		t.Errorf("plan line: %s", s)
	}
}

func TestPlanWritesIdentity(t *testing.T) {
	d := boot.Document{Version: 1, Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/i", Digest: boot.Digest("sha256:" + strings.Repeat("a", 64))}},
		Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}}, Identity: &boot.Identity{Hostname: "lab-01"}}
	steps, err := Plan(boot.Params{Doc: "http://s/doc/t"}, &d)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range steps[len(steps)-4:] {
		kinds = append(kinds, strings.Fields(s.String())[0])
	}
	if strings.Join(kinds, " ") != "write hand test switch_root" {
		t.Errorf("last steps: %q\n%s", kinds, FormatPlan(steps))
	}
}
