package profiles

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
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
	if _, err := New(ctx, cfg, blobs, db, nil); err == nil || !strings.Contains(err.Error(), "t.conf:6: profile bad: kernel root1: image root1 (version 1) is a root, not a kernel") || !strings.Contains(err.Error(), "root nope: no image of that name") {
		t.Fatalf("bad profile: %v", err)
	}
	delete(cfg.Profiles, "bad")
	set, err := New(ctx, cfg, blobs, db, nil)
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

// TestSelectOrder: MAC, then UUID, then the longest subnet, then the
// first matching select, then default; each answer names its rule and line.
func TestSelectOrder(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	blobs, _ := blobstore.Open(filepath.Join(dir, "data"))
	var text strings.Builder
	for _, p := range []string{"default", "bymac", "byuuid", "wide", "narrow", "efi", "gpu"} {
		text.WriteString("[profile " + p + "]\nkernel = " + dir + "/f\ninitramfs = " + dir + "/f\nroot = " + dir + "/f\n")
	}
	text.WriteString(`[machine 52:54:00:00:00:01]
profile = bymac
[machine 11111111-2222-3333-4444-555555555555]
profile = byuuid
[machine 52:54:00:00:00:03]
labels = gpu
[subnet 192.0.2.0/24]
profile = wide
[subnet 192.0.2.128/25]
profile = narrow
[select uefi]
platform = efi
arch = x86_64
profile = efi
[select gpus]
label = gpu
hostname = node-*
profile = gpu
`)
	cfg, err := config.Parse("sel.conf", strings.NewReader(text.String()))
	if err != nil {
		t.Fatal(err)
	}
	set, err := New(context.Background(), cfg, blobs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name, want string
		who        Who
	}{
		{"mac first", "profile bymac because machine 52:54:00:00:00:01 at sel.conf:29", Who{MAC: mac("52:54:00:00:00:01"), UUID: "11111111-2222-3333-4444-555555555555", IP: ip("192.0.2.200")}},
		{"uuid second", "profile byuuid because machine 11111111-2222-3333-4444-555555555555 at sel.conf:31", Who{MAC: mac("52:54:00:00:00:09"), UUID: "11111111-2222-3333-4444-555555555555", IP: ip("192.0.2.200")}},
		{"zero uuid is none", "profile narrow because subnet 192.0.2.128/25 at sel.conf:37", Who{MAC: mac("52:54:00:00:00:09"), UUID: "00000000-0000-0000-0000-000000000000", IP: ip("192.0.2.200")}},
		{"longest prefix", "profile narrow because subnet 192.0.2.128/25 at sel.conf:37", Who{MAC: mac("52:54:00:00:00:09"), IP: ip("192.0.2.200")}},
		{"wider prefix", "profile wide because subnet 192.0.2.0/24 at sel.conf:35", Who{MAC: mac("52:54:00:00:00:09"), IP: ip("192.0.2.7"), Platform: "efi", Arch: "x86_64"}},
		{"select all keys", "profile efi because select uefi at sel.conf:39", Who{MAC: mac("52:54:00:00:00:09"), IP: ip("198.51.100.1"), Platform: "efi", Arch: "x86_64"}},
		{"select one key missing", "profile default because default at sel.conf:1", Who{MAC: mac("52:54:00:00:00:09"), IP: ip("198.51.100.1"), Platform: "efi", Arch: "i386"}},
		{"labels and hostname", "profile gpu because select gpus at sel.conf:43", Who{MAC: mac("52:54:00:00:00:03"), Hostname: "node-7"}},
		{"label without hostname", "profile default because default at sel.conf:1", Who{MAC: mac("52:54:00:00:00:03"), Hostname: "lab-7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, why, err := set.Select(tc.who)
			if err != nil {
				t.Fatal(err)
			}
			if got := "profile " + p.Name + " because " + why.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeRemote holds blobs another server would have; Fetch ingests the one
// asked for, with the size asked for, and counts.
type fakeRemote struct {
	blobs   *blobstore.Store
	content map[boot.Digest]string
	fetched []boot.Digest
	sizes   []int64
}

func (r *fakeRemote) Sourced() bool { return r != nil }

func (r *fakeRemote) Fetch(ctx context.Context, d boot.Digest, size int64) error {
	r.fetched = append(r.fetched, d)
	r.sizes = append(r.sizes, size)
	c, ok := r.content[d]
	if !ok {
		return errors.New("no peer has it")
	}
	return r.blobs.IngestAs(strings.NewReader(c), d, size)
}

// TestResolveElsewhere: with a remote, a sha256:HEX reference or a name
// whose blob is not here does not fail New: Peek says ErrElsewhere and
// fetches nothing; Resolve fetches it (with the name's size) and finds it;
// a blob no remote has fails Resolve naming it. Without a remote the same
// configuration is refused at New.
func TestResolveElsewhere(t *testing.T) {
	dir := t.TempDir()
	blobs, _ := blobstore.Open(filepath.Join(dir, "data"))
	db, err := state.Open(filepath.Join(dir, "data", state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	sum := func(s string) boot.Digest { h := sha256.Sum256([]byte(s)); return boot.DigestFromSum(h[:]) }
	kernel, root, gone := sum("kernel"), sum("hsqs-root"), sum("nowhere")
	db.PublishImage(ctx, state.Image{Name: "root1", Digest: root.String(), Size: int64(len("hsqs-root")), Kind: "root"})
	os.WriteFile(filepath.Join(dir, "initrd"), []byte("initrd"), 0o644)
	text := "[profile default]\nkernel = " + kernel.String() + "\ninitramfs = " + dir + "/initrd\nroot = root1\n[profile other]\nkernel = " + gone.String() + "\ninitramfs = " + dir + "/initrd\nroot = root1\n"
	cfg, err := config.Parse("t.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, blobs, db, nil); err == nil || !strings.Contains(err.Error(), "t.conf:2: profile default: kernel "+kernel.String()) || !strings.Contains(err.Error(), "t.conf:4: profile default: root root1") {
		t.Fatalf("without a remote: %v", err)
	}
	rem := &fakeRemote{blobs: blobs, content: map[boot.Digest]string{kernel: "kernel", root: "hsqs-root"}}
	set, err := New(ctx, cfg, blobs, db, rem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Peek(ctx, set.Profile("default")); !errors.Is(err, ErrElsewhere) || len(rem.fetched) != 0 {
		t.Errorf("Peek: %v, fetched %v", err, rem.fetched)
	}
	a, err := set.Resolve(ctx, set.Profile("default"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Kernel.Digest != kernel || a.Kernel.Size != 6 || a.Root.Digest != root || a.Root.Size != 9 {
		t.Errorf("resolved %+v", a)
	}
	if d := cmp.Diff([]int64{-1, 9}, rem.sizes); d != "" {
		t.Errorf("sizes asked (-want +got):\n%s", d)
	}
	if _, err := set.Peek(ctx, set.Profile("default")); err != nil {
		t.Errorf("Peek after the fetch: %v", err)
	}
	if _, err := set.Resolve(ctx, set.Profile("other")); err == nil || !strings.Contains(err.Error(), "kernel "+gone.String()) || !strings.Contains(err.Error(), "no peer has it") {
		t.Errorf("a blob nobody has: %v", err)
	}
}

// TestResolveKernelImage: kernel = image resolves to the kernel and
// initramfs published with the root's current version, all three of one
// version; a root without a kernel of its own is refused at start, naming
// the image and what to do.
func TestResolveKernelImage(t *testing.T) {
	dir := t.TempDir()
	blobs, _ := blobstore.Open(filepath.Join(dir, "data"))
	db, err := state.Open(filepath.Join(dir, "data", state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	ingest := func(content string) boot.Digest {
		d, _, err := blobs.Ingest(strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	type version struct{ root, kernel, initramfs boot.Digest }
	publish := func(name, tag string, own bool) version {
		v := version{root: ingest("hsqs-" + tag)}
		im := state.Image{Name: name, Digest: v.root.String(), Size: int64(len("hsqs-" + tag)), Kind: "root"}
		if own {
			v.kernel, v.initramfs = ingest("kernel-"+tag), ingest("initramfs-"+tag)
			im.OwnKernel, im.OwnInitramfs, im.OwnModules, im.KernelRelease = v.kernel.String(), v.initramfs.String(), ingest("modules-"+tag).String(), "6.1.0-"+tag
		}
		if _, err := db.PublishImage(ctx, im); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := publish("node", "1", true)
	publish("plain", "p", false)
	parse := func(text string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("t.conf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	_, err = New(ctx, parse("[profile default]\nkernel = image\nroot = plain\n"), blobs, db, nil)
	if err == nil || !strings.Contains(err.Error(), "t.conf:2: profile default: kernel image: image plain (version 1) has no kernel of its own: build it from a tree with /boot/vmlinuz-* and /lib/modules/*") {
		t.Errorf("a root without a kernel: %v", err)
	}

	os.WriteFile(filepath.Join(dir, "initrd"), []byte("site initrd"), 0o644)
	set, err := New(ctx, parse("[profile default]\nkernel = image\nroot = node\n[profile mine]\nkernel = image\ninitramfs = "+dir+"/initrd\nroot = node\n"), blobs, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := set.Resolve(ctx, set.Profile("default"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Kernel.Digest != v1.kernel || got.Initramfs.Digest != v1.initramfs || got.Root.Digest != v1.root || got.Kernel.Size != int64(len("kernel-1")) {
		t.Errorf("version 1: %+v, want %+v", got, v1)
	}
	if set.Kind(got.Kernel.Digest) != "kernel" || set.Kind(got.Initramfs.Digest) != "initramfs" {
		t.Errorf("kinds of the image's own blobs")
	}
	mine, err := set.Resolve(ctx, set.Profile("mine"))
	if err != nil || mine.Kernel.Digest != v1.kernel || mine.Initramfs.Digest == v1.initramfs {
		t.Errorf("kernel = image with a file initramfs: %+v %v", mine, err)
	}

	v2 := publish("node", "2", true)
	got, _ = set.Resolve(ctx, set.Profile("default"))
	if got.Kernel.Digest != v2.kernel || got.Initramfs.Digest != v2.initramfs || got.Root.Digest != v2.root {
		t.Errorf("after a publish: %+v, want %+v", got, v2)
	}
	publish("node", "3", false)
	if _, err := set.Resolve(ctx, set.Profile("default")); err == nil || !strings.Contains(err.Error(), "image node (version 3) has no kernel of its own") {
		t.Errorf("a version without a kernel: %v", err)
	}
	// A kernel blob gone: the error names the image and the blob.
	publish("node", "4", true)
	cur, _ := db.Image(ctx, "node")
	k4, _ := boot.ParseDigest(cur.OwnKernel)
	os.Remove(blobs.BlobPath(k4))
	if _, err := set.Resolve(ctx, set.Profile("default")); err == nil || !strings.Contains(err.Error(), "image node (version 4): its kernel, blob "+k4.String()) {
		t.Errorf("missing kernel blob: %v", err)
	}
}
