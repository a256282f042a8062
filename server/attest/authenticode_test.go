package attest

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
)

// TestAuthenticodeSHA256: our hash of Debian's signed GRUB netboot image
// and of the machine's own signed kernel is the one osslsigncode
// calculates (and the one their signatures sign); an unsigned copy (the
// signature stripped by sbattach) hashes the same.
func TestAuthenticodeSHA256(t *testing.T) {
	tool := testneed.Tool(t, "osslsigncode")
	files := []string{"/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"}
	testneed.File(t, files[0], "grub-efi-amd64-signed")
	if ks, _ := filepath.Glob("/boot/vmlinuz-*"); len(ks) > 0 {
		files = append(files, ks[0])
	}
	calc := regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-F]{64})`)
	for _, p := range files {
		out, _ := exec.Command(tool, "verify", "-in", p).CombinedOutput()
		m := calc.FindSubmatch(out)
		if m == nil {
			t.Fatalf("osslsigncode verify %s: no calculated digest:\n%s", p, out)
		}
		want := strings.ToLower(string(m[1]))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		got, err := AuthenticodeSHA256(f, fi.Size())
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if hex.EncodeToString(got) != want {
			t.Errorf("%s: authenticode %x, osslsigncode %s", p, got, want)
		}
		if sbattach, err := exec.LookPath("sbattach"); err == nil {
			bare := t.TempDir() + "/bare.efi"
			data, _ := os.ReadFile(p)
			os.WriteFile(bare, data, 0o644)
			if out, err := exec.Command(sbattach, "--remove", bare).CombinedOutput(); err != nil {
				t.Fatalf("sbattach --remove: %v %s", err, out)
			}
			b, _ := os.Open(bare)
			bi, _ := b.Stat()
			got2, err := AuthenticodeSHA256(b, bi.Size())
			b.Close()
			if err != nil || hex.EncodeToString(got2) != want {
				t.Errorf("%s without its signature: %x %v, want %s", p, got2, err, want)
			}
		}
	}
	if _, err := AuthenticodeSHA256(strings.NewReader("MZ not a PE"), 11); err == nil {
		t.Error("a non-PE file hashed")
	}
}
