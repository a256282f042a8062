package drivers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage/imagekernel"
	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/pci"
)

func TestMatchPCIAlias(t *testing.T) {
	e1000e := pci.ID{Vendor: 0x8086, Device: 0x10d3}
	rtl := pci.ID{Vendor: 0x10ec, Device: 0x8139}
	for _, tc := range []struct {
		name    string
		pattern string
		id      pci.ID
		want    bool
	}{
		{"exact", "pci:v00008086d000010D3sv*sd*bc*sc*i*", e1000e, true},
		{"other device", "pci:v00008086d000010D4sv*sd*bc*sc*i*", e1000e, false},
		{"other vendor", "pci:v00008087d000010D3sv*sd*bc*sc*i*", e1000e, false},
		{"any vendor, subsystem given", "pci:v*d00008139sv000010ECsd00008139bc*sc*i*", rtl, true},
		{"any device, class given", "pci:v000010ECd*sv*sd*bc02sc00i*", rtl, true},
		{"class driver", "pci:v*d*sv*sd*bc01sc06i01*", rtl, false},
		{"glob", "pci:v000010ECd0000813?sv*sd*bc*sc*i*", rtl, true},
		{"not pci", "virtio:d00000001v*", rtl, false},
		{"other shape", "pci:v000010EC*", rtl, false},
		{"bad glob", "pci:v000010ECd0000[813sv*sd*bc*sc*i*", rtl, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchPCIAlias(tc.pattern, tc.id); got != tc.want {
				t.Errorf("MatchPCIAlias(%q, %v) = %v, want %v", tc.pattern, tc.id, got, tc.want)
			}
		})
	}
}

// realTree opens the installed Debian kernel's modules (make deps
// installs linux-image-amd64).
func realTree(t *testing.T) *initramfs.ModuleTree {
	t.Helper()
	deps := testneed.Glob(t, "/lib/modules/*/kernel/drivers/net/ethernet/realtek/8139cp.ko*", "linux-image-amd64")
	release := strings.Split(deps[0], "/")[3]
	mt, err := initramfs.OpenModuleTree("", release)
	if err != nil {
		t.Fatal(err)
	}
	return mt
}

func TestMatchReal(t *testing.T) {
	mt := realTree(t)
	for id, want := range map[pci.ID][]string{
		{Vendor: 0x10ec, Device: 0x8139}: {"8139cp", "8139too"}, // QEMU's rtl8139
		{Vendor: 0x8086, Device: 0x10d3}: {"e1000e"},            // QEMU's e1000e
		{Vendor: 0x10ec, Device: 0x8168}: {"r8169"},
		{Vendor: 0x8086, Device: 0x1237}: nil, // the i440FX host bridge (busloc unset)
		{Vendor: 0x1af4, Device: 0x1000}: nil, // virtio-net: a virtio driver, in DefaultModules
	} {
		got, err := Match(mt, id)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Match(%v) (-want +got):\n%s", id, d)
		}
	}
}

// baseBlob builds a small base initramfs with these modules into st.
func baseBlob(t *testing.T, st *blobstore.Store, release string, modules []string) boot.Digest {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)
	m, err := initramfs.BuildToStore(context.Background(), st, initramfs.Options{Agent: agent, KernelRelease: release, Modules: modules, Compression: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	return m.Digest
}

func TestSegments(t *testing.T) {
	mt := realTree(t)
	dir := t.TempDir()
	st, err := blobstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	withE1000e := baseBlob(t, st, mt.Release, []string{"e1000e", "virtio_net"})
	ctx := context.Background()
	s := &Segments{Blobs: st, FirmwareDir: t.TempDir()}
	rtl := pci.ID{Vendor: 0x10ec, Device: 0x8139}

	// The driver is in the base: no segment.
	c, err := s.For(ctx, withE1000e, pci.ID{Vendor: 0x8086, Device: 0x10d3})
	if err != nil || c.Segment != nil || c.Why != "e1000e in the base initramfs" {
		t.Fatalf("e1000e: %+v %v", c, err)
	}
	if c, err := s.For(ctx, withE1000e, pci.ID{}); err != nil || c.Segment != nil {
		t.Fatalf("unknown NIC: %+v %v", c, err)
	}
	if c, err := s.For(ctx, withE1000e, pci.ID{Vendor: 0x8086, Device: 0x1237}); err != nil || c.Segment != nil || !strings.Contains(c.Why, "no network driver") {
		t.Fatalf("host bridge: %+v %v", c, err)
	}

	// Not in the base: built once, then cached.
	t0 := time.Now()
	c, err = s.For(ctx, withE1000e, rtl)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("segment %s: %d bytes, %d modules, built in %v", c.Segment.Name, c.Segment.Size, len(c.Segment.Modules), time.Since(t0))
	if !c.Built || c.Segment.Name != "8139cp+8139too" || c.Segment.Release != mt.Release {
		t.Fatalf("rtl8139: %+v", c)
	}
	wantLoad := []string{
		"lib/modules/" + mt.Release + "/kernel/drivers/net/mii.ko",
		"lib/modules/" + mt.Release + "/kernel/drivers/net/ethernet/realtek/8139cp.ko",
		"lib/modules/" + mt.Release + "/kernel/drivers/net/ethernet/realtek/8139too.ko",
	}
	if d := cmp.Diff(wantLoad, c.Segment.Modules); d != "" {
		t.Errorf("modules (-want +got):\n%s", d)
	}
	first := *c.Segment
	c, err = s.For(ctx, withE1000e, rtl)
	if err != nil || c.Built || c.Segment.Digest != first.Digest {
		t.Fatalf("second request: %+v %v", c, err)
	}
	// A new server over the same store reads the index.
	s2 := &Segments{Blobs: st, FirmwareDir: s.FirmwareDir}
	if c, err := s2.For(ctx, withE1000e, rtl); err != nil || c.Built || c.Segment.Digest != first.Digest {
		t.Fatalf("after a restart: %+v %v", c, err)
	}
	// A collected blob is built again, to the same bytes.
	if err := st.Remove(first.Digest); err != nil {
		t.Fatal(err)
	}
	if c, err := s2.For(ctx, withE1000e, rtl); err != nil || !c.Built || c.Segment.Digest != first.Digest {
		t.Fatalf("after a collection: %+v %v", c, err)
	}
	// Another store, another build: the same bytes (reproducible).
	st3, _ := blobstore.Open(t.TempDir())
	s3 := &Segments{Blobs: st3, FirmwareDir: s.FirmwareDir}
	c, err = s3.For(ctx, baseBlob(t, st3, mt.Release, []string{"virtio_net"}), rtl)
	if err != nil || c.Segment.Digest != first.Digest {
		t.Fatalf("another store: %+v %v", c, err)
	}
	// The segment holds what its list names, and nothing of the base.
	f, _ := st.OpenBlob(first.Digest)
	defer f.Close()
	segs, err := initramfs.List(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range segs[0].Entries {
		if e.Type() == '-' {
			names = append(names, e.Name)
		}
	}
	want := append([]string{"etc/overboot/modules.d/8139cp+8139too"}, wantLoad...)
	slices.Sort(want)
	slices.Sort(names)
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
}

func TestSegmentFirmware(t *testing.T) {
	mt := realTree(t)
	st, _ := blobstore.Open(t.TempDir())
	fw := t.TempDir()
	s := &Segments{Blobs: st, FirmwareDir: fw}
	ctx := context.Background()
	base := baseBlob(t, st, mt.Release, []string{"virtio_net"})
	r8169 := pci.ID{Vendor: 0x10ec, Device: 0x8168}
	c, err := s.For(ctx, base, r8169)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Segment.Firmware) != 0 || !strings.Contains(strings.Join(c.Segment.MissingFirmware, " "), "rtl_nic/rtl8168h-2.fw") {
		t.Fatalf("firmware %v, missing %v", c.Segment.Firmware, c.Segment.MissingFirmware)
	}
	// The firmware appears: the next request builds a segment with it.
	os.MkdirAll(filepath.Join(fw, "rtl_nic"), 0o755)
	os.WriteFile(filepath.Join(fw, "rtl_nic/rtl8168h-2.fw"), bytes.Repeat([]byte{0x5a}, 4096), 0o644)
	c2, err := s.For(ctx, base, r8169)
	if err != nil || !c2.Built || c2.Segment.Digest == c.Segment.Digest {
		t.Fatalf("after installing firmware: %+v %v", c2, err)
	}
	if d := cmp.Diff([]string{"lib/firmware/rtl_nic/rtl8168h-2.fw"}, c2.Segment.Firmware); d != "" {
		t.Errorf("firmware (-want +got):\n%s", d)
	}
}

func TestReadBase(t *testing.T) {
	st, _ := blobstore.Open(t.TempDir())
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)
	m, err := initramfs.BuildToStore(context.Background(), st, initramfs.Options{Agent: agent, Modules: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Segments{Blobs: st}
	if c, err := s.For(context.Background(), m.Digest, pci.ID{Vendor: 0x10ec, Device: 0x8139}); err != nil || c.Segment != nil || !strings.Contains(c.Why, "ships no kernel modules") {
		t.Errorf("base without modules: %+v %v", c, err)
	}
	if _, err := s.For(context.Background(), boot.DigestFromSum(make([]byte, 32)), pci.ID{Vendor: 1, Device: 1}); err == nil {
		t.Errorf("a missing base blob gave no error")
	}
}

// TestSegmentsFromImageModules: a base initramfs built for an image's own
// kernel (mkimage/imagekernel) gets its segments from that image's modules
// blob, not from the server's modules directory (empty here): the
// release is one the server does not have.
func TestSegmentsFromImageModules(t *testing.T) {
	host := realTree(t)
	const rel = "9.9.9-image"
	img := t.TempDir()
	mods := filepath.Join(img, "lib/modules", rel)
	var dep, alias strings.Builder
	hostAlias, err := os.ReadFile(filepath.Join(host.Dir, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := host.LoadOrder([]string{"8139cp", "8139too", "virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(filepath.Join(host.Dir, file))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(mods, file)), 0o755)
		os.WriteFile(filepath.Join(mods, file), b, 0o644)
		fmt.Fprintf(&dep, "%s:", file)
		for _, d := range host.Deps(file) {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteString("\n")
		name := initramfs.ModuleName(file)
		for _, l := range strings.Split(string(hostAlias), "\n") {
			if strings.HasSuffix(l, " "+name) {
				alias.WriteString(l + "\n")
			}
		}
	}
	os.WriteFile(filepath.Join(mods, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(mods, "modules.alias"), []byte(alias.String()), 0o644)
	os.MkdirAll(filepath.Join(img, "boot"), 0o755)
	kern := make([]byte, 4096)
	copy(kern[0x202:], "HdrS")
	os.WriteFile(filepath.Join(img, "boot", "vmlinuz-"+rel), kern, 0o644)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)

	st, err := blobstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := imagekernel.Find(img, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := imagekernel.Build(ctx, st, k, imagekernel.Options{Agent: agent, Modules: []string{"virtio_net"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Segments{Blobs: st, ModulesDir: t.TempDir(), FirmwareDir: t.TempDir()}
	c, err := s.For(ctx, res.Initramfs.Digest, pci.ID{Vendor: 0x10ec, Device: 0x8139})
	if err != nil {
		t.Fatal(err)
	}
	if c.Segment == nil || c.Segment.Release != rel || c.Segment.Name != "8139cp+8139too" {
		t.Fatalf("segment: %+v", c)
	}
	want := []string{
		"lib/modules/" + rel + "/kernel/drivers/net/mii.ko",
		"lib/modules/" + rel + "/kernel/drivers/net/ethernet/realtek/8139cp.ko",
		"lib/modules/" + rel + "/kernel/drivers/net/ethernet/realtek/8139too.ko",
	}
	if d := cmp.Diff(want, c.Segment.Modules); d != "" {
		t.Errorf("modules (-want +got):\n%s", d)
	}
	if c, err := s.For(ctx, res.Initramfs.Digest, pci.ID{Vendor: 0x1af4, Device: 0x1000}); err != nil || c.Segment != nil {
		t.Errorf("virtio-net is in the image's initramfs: %+v %v", c, err)
	}
	// A new server reads the index, under the image's tree, not the
	// release alone.
	s2 := &Segments{Blobs: st, ModulesDir: t.TempDir(), FirmwareDir: s.FirmwareDir}
	c2, err := s2.For(ctx, res.Initramfs.Digest, pci.ID{Vendor: 0x10ec, Device: 0x8139})
	if err != nil || c2.Built || c2.Segment.Digest != c.Segment.Digest {
		t.Errorf("after a restart: %+v %v", c2, err)
	}
	if _, err := os.Stat(filepath.Join(st.Dir(), "drivers", rel+"@"+res.Modules.Digest.Hex()[:16], "8139cp+8139too.json")); err != nil {
		t.Errorf("index: %v", err)
	}
	// Without the modules blob, and nothing unpacked, there is no tree.
	os.RemoveAll(filepath.Join(st.Dir(), "drivers"))
	st.Remove(res.Modules.Digest)
	s3 := &Segments{Blobs: st, ModulesDir: t.TempDir(), FirmwareDir: s.FirmwareDir}
	if _, err := s3.For(ctx, res.Initramfs.Digest, pci.ID{Vendor: 0x10ec, Device: 0x8139}); err == nil || !strings.Contains(err.Error(), "the image's modules") {
		t.Errorf("modules blob gone: %v", err)
	}
}
