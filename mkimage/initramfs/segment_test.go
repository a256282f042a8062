package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/testneed"
)

// elfModule returns a minimal ELF64 relocatable file with a .modinfo
// section holding the given key=value strings, as a kernel module has.
func elfModule(t *testing.T, info ...string) []byte {
	t.Helper()
	var modinfo []byte
	for _, kv := range info {
		modinfo = append(append(modinfo, kv...), 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const hdr = 64
	shoff := (hdr + len(modinfo) + len(shstr) + 7) &^ 7
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: uint64(shoff), Ehsize: hdr, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, h)
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shoff-b.Len()))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: hdr, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: uint64(hdr + len(modinfo)), Size: uint64(len(shstr)), Addralign: 1},
	} {
		binary.Write(&b, binary.LittleEndian, s)
	}
	return b.Bytes()
}

func compress(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	var err error
	switch {
	case strings.HasSuffix(name, ".xz"):
		w, err = xz.NewWriter(&b)
	case strings.HasSuffix(name, ".zst"):
		w, err = zstd.NewWriter(&b)
	case strings.HasSuffix(name, ".gz"):
		w = gzip.NewWriter(&b)
	default:
		return data
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// elfKernel writes a modules tree of ELF modules: nic (a PCI NIC driver
// under drivers/net/ethernet) needs phy and mii-x, phy needs mii-x;
// wifi is a PCI driver elsewhere; nic asks for two firmware files, one
// of which the firmware directory has (xz-compressed).
func elfKernel(t *testing.T) (modDir, fwDir string) {
	t.Helper()
	modDir, fwDir = t.TempDir(), t.TempDir()
	rel := filepath.Join(modDir, "6.1.0-test")
	mods := map[string][]string{
		"kernel/drivers/net/ethernet/acme/nic.ko.zst": {"license=GPL", "firmware=acme/nic-1.fw", "firmware=acme/nic-2.fw", "alias=pci:v00001234d00005678sv*sd*bc*sc*i*"},
		"kernel/drivers/net/phy/phy.ko.xz":            {"license=GPL"},
		"kernel/drivers/net/mii-x.ko.gz":              {"license=GPL"},
		"kernel/drivers/net/wireless/wifi.ko":         {"license=GPL", "firmware=wifi.bin"},
		"kernel/drivers/net/ethernet/acme/libacme.ko": {"license=GPL"},
	}
	for f, info := range mods {
		p := filepath.Join(rel, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, compress(t, f, elfModule(t, info...)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := `kernel/drivers/net/ethernet/acme/nic.ko.zst: kernel/drivers/net/phy/phy.ko.xz kernel/drivers/net/mii-x.ko.gz
kernel/drivers/net/phy/phy.ko.xz: kernel/drivers/net/mii-x.ko.gz
kernel/drivers/net/mii-x.ko.gz:
kernel/drivers/net/wireless/wifi.ko:
kernel/drivers/net/ethernet/acme/libacme.ko:
`
	alias := "alias pci:v00001234d00005678sv*sd*bc*sc*i* nic\nalias pci:v00001234d00009999sv*sd*bc*sc*i* wifi\nalias virtio:d00000001v* mii_x\n"
	for name, body := range map[string]string{"modules.dep": dep, "modules.alias": alias, "modules.builtin": "kernel/drivers/net/builtin-nic.ko\n"} {
		if err := os.WriteFile(filepath.Join(rel, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(fwDir, "acme"), 0o755)
	if err := os.WriteFile(filepath.Join(fwDir, "acme/nic-2.fw.xz"), []byte("FIRMWARE"), 0o644); err != nil {
		t.Fatal(err)
	}
	return modDir, fwDir
}

func TestModInfo(t *testing.T) {
	modDir, _ := elfKernel(t)
	rel := filepath.Join(modDir, "6.1.0-test")
	for file, want := range map[string][]string{
		"kernel/drivers/net/ethernet/acme/nic.ko.zst": {"acme/nic-1.fw", "acme/nic-2.fw"},
		"kernel/drivers/net/phy/phy.ko.xz":            nil,
		"kernel/drivers/net/wireless/wifi.ko":         {"wifi.bin"},
	} {
		got, err := ModuleFirmware(filepath.Join(rel, file))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s firmware (-want +got):\n%s", file, d)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.ko")
	os.WriteFile(bad, elfModule(t, "firmware=../../etc/shadow"), 0o644)
	if _, err := ModuleFirmware(bad); err == nil {
		t.Errorf("a firmware path leaving /lib/firmware was accepted")
	}
	os.WriteFile(bad, []byte("not ELF"), 0o644)
	if _, err := ModInfo(bad); err == nil || !strings.Contains(err.Error(), "not a kernel module") {
		t.Errorf("ModInfo(not ELF) = %v", err)
	}
}

// TestModInfoReal reads a module of the installed Debian kernel (make
// deps installs linux-image-amd64).
func TestModInfoReal(t *testing.T) {
	ms := testneed.Glob(t, "/lib/modules/*/kernel/drivers/net/ethernet/realtek/r8169.ko*", "linux-image-amd64")
	fw, err := ModuleFirmware(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(fw, " "), "rtl_nic/rtl8168h-2.fw") {
		t.Errorf("r8169 firmware %v lacks rtl_nic/rtl8168h-2.fw", fw)
	}
}

func TestLoadOrder(t *testing.T) {
	dir, _ := fakeKernel(t)
	mt, err := OpenModuleTree(dir, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := mt.LoadOrder([]string{"e", "a", "builtin-x"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/fs/b.ko", "kernel/net/d.ko.xz", "kernel/net/c-dash.ko", "kernel/fs/a.ko", "kernel/misc/e.ko"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("load order (-want +got):\n%s", d)
	}
	if _, err := mt.LoadOrder([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown module: %v", err)
	}
	if _, err := OpenModuleTree(dir, "../etc"); err == nil {
		t.Errorf("a release with a slash was accepted")
	}
}

func TestNetworkDrivers(t *testing.T) {
	modDir, _ := elfKernel(t)
	mt, err := OpenModuleTree(modDir, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := mt.NetworkDrivers()
	if err != nil {
		t.Fatal(err)
	}
	// libacme has no PCI alias, wifi is not under NetworkDriverDirs.
	if d := cmp.Diff([]string{"nic"}, got); d != "" {
		t.Errorf("network drivers (-want +got):\n%s", d)
	}
}

func TestBuildSegment(t *testing.T) {
	modDir, fwDir := elfKernel(t)
	mt, err := OpenModuleTree(modDir, "6.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	o := SegmentOptions{Tree: mt, Drivers: []string{"nic"}, Comment: "acme 1234:5678", FirmwareDir: fwDir}
	var b1, b2 bytes.Buffer
	sum, err := BuildSegment(context.Background(), &b1, o)
	if err != nil {
		t.Fatal(err)
	}
	// A second build, from a tree opened anew, is the same bytes.
	mt2, _ := OpenModuleTree(modDir, "6.1.0-test")
	o.Tree = mt2
	if _, err := BuildSegment(context.Background(), &b2, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Errorf("two builds differ")
	}
	if sum.Compressed != int64(b1.Len()) || sum.Digest != boot.DigestFromSum(sha(b1.Bytes())) {
		t.Errorf("summary %d bytes %s, wrote %d", sum.Compressed, sum.Digest, b1.Len())
	}
	const base = "lib/modules/6.1.0-test/kernel/drivers/net/"
	wantLoad := []string{base + "mii-x.ko.gz", base + "phy/phy.ko.xz", base + "ethernet/acme/nic.ko.zst"}
	if d := cmp.Diff(wantLoad, sum.Load); d != "" {
		t.Errorf("load order (-want +got):\n%s", d)
	}
	if sum.Name != "nic" || !cmp.Equal(sum.Firmware, []string{"lib/firmware/acme/nic-2.fw.xz"}) || !cmp.Equal(sum.MissingFirmware, []string{"acme/nic-1.fw"}) {
		t.Errorf("summary %+v", sum)
	}
	segs, err := List(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segs[0].Compression != "zstd" {
		t.Fatalf("segments %+v", segs)
	}
	got := names(segs[0].Entries)
	for _, want := range append(wantLoad, "lib/firmware/acme/nic-2.fw.xz", "etc/overboot/modules.d/nic", "lib/modules/6.1.0-test/kernel/drivers/net/phy") {
		if !strings.Contains("\n"+strings.Join(got, "\n")+"\n", "\n"+want+"\n") {
			t.Errorf("no %s in %v", want, got)
		}
	}
	for _, n := range got {
		if strings.Contains(n, "modules.dep") || n == "init" || strings.Contains(n, "wifi") {
			t.Errorf("segment has %s", n)
		}
	}

	for name, bad := range map[string]SegmentOptions{
		"no drivers":   {Tree: mt},
		"unknown":      {Tree: mt, Drivers: []string{"nosuch"}},
		"builtin only": {Tree: mt, Drivers: []string{"builtin-nic"}},
		"bad name":     {Tree: mt, Drivers: []string{"nic"}, Name: "../x"},
		"compression":  {Tree: mt, Drivers: []string{"nic"}, Compression: "lz77"},
	} {
		if _, err := BuildSegment(context.Background(), &bytes.Buffer{}, bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBuildFirmware(t *testing.T) {
	modDir, fwDir := elfKernel(t)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("x"), 0o755)
	_, sum := build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: modDir, Modules: []string{"nic"}, Firmware: true, FirmwareDir: fwDir, Compression: "none"})
	if !cmp.Equal(sum.Firmware, []string{"lib/firmware/acme/nic-2.fw.xz"}) || !cmp.Equal(sum.MissingFirmware, []string{"acme/nic-1.fw"}) {
		t.Errorf("firmware %v, missing %v", sum.Firmware, sum.MissingFirmware)
	}
}

func sha(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}
