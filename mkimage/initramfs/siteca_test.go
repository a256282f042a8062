package initramfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/overboot/overboot/server/sitetls"
)

// TestSiteCA: the site CA goes in at SiteCAPath, byte for byte and
// readable by all, read back with u-root's cpio reader; a file that is
// not CA certificates (a key, a server certificate, nothing) is refused.
func TestSiteCA(t *testing.T) {
	dir, agent := fakeKernel(t)
	site := &sitetls.Site{Dir: filepath.Join(t.TempDir(), "tls")}
	if _, err := site.ServerCert([]string{"boot.example"}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(site.Dir, sitetls.CACertFile)
	want, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"e"}, SiteCA: ca})
	zr, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	var found bool
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Name != SiteCAPath {
			continue
		}
		found = true
		got, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s in the initramfs is not the site CA:\n%s", SiteCAPath, got)
		}
		if rec.Mode&0o777 != 0o644 {
			t.Errorf("%s: mode %o", SiteCAPath, rec.Mode&0o777)
		}
	}
	if !found {
		t.Fatalf("no %s in the initramfs", SiteCAPath)
	}
	b, _ = build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"e"}})
	segs, err := List(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range segs[0].Entries {
		if e.Name == SiteCAPath {
			t.Error("a site CA in an initramfs built without one")
		}
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("nothing\n"), 0o644)
	for name, file := range map[string]string{
		"key":     filepath.Join(site.Dir, sitetls.CAKeyFile),
		"leaf":    filepath.Join(site.Dir, sitetls.ServerCrtFile),
		"nothing": empty,
	} {
		_, err := Build(t.Context(), io.Discard, Options{Agent: agent, Modules: []string{}, SiteCA: file})
		if !errors.Is(err, ErrOption) {
			t.Errorf("%s as the site CA: %v, want a refusal", name, err)
		}
	}
}
