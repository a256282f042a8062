package profiles

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// TestResolveNow: a name resolves to its current version each time it is
// asked, and a name of the wrong kind is refused.
func TestResolveNow(t *testing.T) {
	dir := t.TempDir()
	blobs, _ := blobstore.Open(filepath.Join(dir, "data"))
	db, err := state.Open(filepath.Join(dir, "data", state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	pub := func(name, kind, content string) {
		d, n, _ := blobs.Ingest(strings.NewReader(content))
		db.PublishImage(ctx, state.Image{Name: name, Digest: d.String(), Size: n, Kind: kind})
	}
	pub("root1", "root", "hsqs-1")
	pub("k", "kernel", "kernel")
	os.WriteFile(filepath.Join(dir, "initrd"), []byte("initrd"), 0o644)
	cfg, err := config.Parse("t.conf", strings.NewReader("[profile default]\nkernel = k\ninitramfs = "+dir+"/initrd\nroot = root1\n[profile bad]\nkernel = root1\ninitramfs = k\nroot = nope\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, blobs, db); err == nil || !strings.Contains(err.Error(), "t.conf:5: profile bad: kernel root1: image root1 (version 1) is a root, not a kernel") || !strings.Contains(err.Error(), "root nope: no image of that name") {
		t.Fatalf("bad profile: %v", err)
	}
	delete(cfg.Profiles, "bad")
	set, err := New(ctx, cfg, blobs, db)
	if err != nil {
		t.Fatal(err)
	}
	a1, err := set.Resolve(ctx, set.Profile("default"))
	if err != nil {
		t.Fatal(err)
	}
	pub("root1", "root", "hsqs-2")
	a2, _ := set.Resolve(ctx, set.Profile("default"))
	if a1.Root.Digest == a2.Root.Digest || a2.Kernel != a1.Kernel {
		t.Errorf("a publish did not reach the next resolution: %v %v", a1, a2)
	}
	if set.Kind(a2.Root.Digest) != "root" || set.Kind(a1.Initramfs.Digest) != "initramfs" {
		t.Errorf("kinds")
	}
	if !set.Digests()[a1.Initramfs.Digest] {
		t.Errorf("the file reference is not among the digests to keep")
	}
}
