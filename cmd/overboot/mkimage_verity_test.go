package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
)

// TestMkimageVerity: the tree veritysetup accepts, and the parameters the
// agent parses into a lazy static boot; an unpadded image is refused and
// leaves nothing.
func TestMkimageVerity(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "root.squashfs")
	b := make([]byte, 4096*300)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)
	out, err := cli(t, "", "mkimage", "verity", "--url", "http://10.0.2.2/img", img)
	if err != nil {
		t.Fatal(err)
	}
	p, err := boot.Parse(out)
	if err != nil {
		t.Fatalf("the printed parameters do not parse: %v\n%s", err, out)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	d := p.Document()
	if d.Lower.HTTP.Mode != boot.LowerLazy || d.Lower.HTTP.Verity.HashURL != "http://10.0.2.2/img/root.squashfs.verity" || d.Lower.HTTP.Size != int64(len(b)) {
		t.Errorf("document: %+v %+v", d.Lower.HTTP, d.Lower.HTTP.Verity)
	}
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Fatal("veritysetup is needed (apt-get install cryptsetup-bin)")
	}
	if o, err := exec.Command("veritysetup", "verify", img, img+".verity", p.VerityRoot).CombinedOutput(); err != nil {
		t.Errorf("veritysetup verify: %v\n%s", err, o)
	}
	odd := filepath.Join(dir, "odd")
	os.WriteFile(odd, b[:5000], 0o644)
	if _, err := cli(t, "", "mkimage", "verity", odd); err == nil || !strings.Contains(err.Error(), "multiple of 4096") {
		t.Errorf("unpadded: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("left in the directory: %v", ents)
	}
}
