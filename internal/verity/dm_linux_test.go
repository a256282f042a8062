package verity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/testneed"
)

// TestDmIoctlLayout holds x/sys/unix's DmIoctl and DmTargetSpec, which
// dm_linux.go marshals byte for byte, to include/uapi/linux/dm-ioctl.h.
func TestDmIoctlLayout(t *testing.T) {
	var h unix.DmIoctl
	var s unix.DmTargetSpec
	got := map[string]uintptr{
		"sizeof(dm_ioctl)":       unsafe.Sizeof(h),
		"version":                unsafe.Offsetof(h.Version),
		"data_size":              unsafe.Offsetof(h.Data_size),
		"data_start":             unsafe.Offsetof(h.Data_start),
		"target_count":           unsafe.Offsetof(h.Target_count),
		"open_count":             unsafe.Offsetof(h.Open_count),
		"flags":                  unsafe.Offsetof(h.Flags),
		"event_nr":               unsafe.Offsetof(h.Event_nr),
		"dev":                    unsafe.Offsetof(h.Dev),
		"name":                   unsafe.Offsetof(h.Name),
		"uuid":                   unsafe.Offsetof(h.Uuid),
		"data":                   unsafe.Offsetof(h.Data),
		"sizeof(dm_target_spec)": unsafe.Sizeof(s),
		"sector_start":           unsafe.Offsetof(s.Sector_start),
		"length":                 unsafe.Offsetof(s.Length),
		"status":                 unsafe.Offsetof(s.Status),
		"next":                   unsafe.Offsetof(s.Next),
		"target_type":            unsafe.Offsetof(s.Target_type),
	}
	// Offsets from the header: __u32 version[3], data_size, data_start,
	// target_count, __s32 open_count, __u32 flags, event_nr, padding,
	// __u64 dev, char name[128], uuid[129], data[7], 8-byte aligned; and
	// __u64 sector_start, length, __s32 status, __u32 next,
	// char target_type[16].
	want := map[string]uintptr{
		"sizeof(dm_ioctl)": 312, "version": 0, "data_size": 12, "data_start": 16,
		"target_count": 20, "open_count": 24, "flags": 28, "event_nr": 32, "dev": 40,
		"name": 48, "uuid": 176, "data": 305,
		"sizeof(dm_target_spec)": 40, "sector_start": 0, "length": 8, "status": 16,
		"next": 20, "target_type": 24,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-dm-ioctl.h +x/sys/unix):\n%s", diff)
	}
	if unix.SizeofDmIoctl != 312 || unix.SizeofDmTargetSpec != 40 {
		t.Errorf("SizeofDmIoctl %d, SizeofDmTargetSpec %d", unix.SizeofDmIoctl, unix.SizeofDmTargetSpec)
	}

	// _IOWR(DM_IOCTL, nr, struct dm_ioctl): dir 3 (read|write) << 30,
	// size << 16, type 0xfd << 8, nr.
	iowr := func(nr uint) uint { return 3<<30 | 312<<16 | 0xfd<<8 | nr }
	for _, c := range []struct {
		name string
		got  uint
		nr   uint
	}{
		{"DM_VERSION", unix.DM_VERSION, 0},
		{"DM_DEV_CREATE", unix.DM_DEV_CREATE, 3},
		{"DM_DEV_REMOVE", unix.DM_DEV_REMOVE, 4},
		{"DM_DEV_SUSPEND", unix.DM_DEV_SUSPEND, 6},
		{"DM_TABLE_LOAD", unix.DM_TABLE_LOAD, 9},
	} {
		if c.got != iowr(c.nr) {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, iowr(c.nr))
		}
	}
	if unix.DM_READONLY_FLAG != 1 || unix.DM_SUSPEND_FLAG != 2 || unix.DM_NAME_LEN != 128 {
		t.Error("DM_READONLY_FLAG, DM_SUSPEND_FLAG or DM_NAME_LEN changed")
	}
}

// header reads back the fields of a request buffer's dm_ioctl.
type header struct {
	Version                                     [3]uint32
	DataSize, DataStart, TargetCount, Flags, Ev uint32
	Dev                                         uint64
	Name, UUID                                  string
}

func readHeader(t *testing.T, b []byte) header {
	t.Helper()
	if len(b) < 312 {
		t.Fatalf("request of %d bytes", len(b))
	}
	ne := binary.NativeEndian
	cstr := func(b []byte) string { s, _, _ := bytes.Cut(b, []byte{0}); return string(s) }
	return header{
		Version:     [3]uint32{ne.Uint32(b[0:]), ne.Uint32(b[4:]), ne.Uint32(b[8:])},
		DataSize:    ne.Uint32(b[12:]),
		DataStart:   ne.Uint32(b[16:]),
		TargetCount: ne.Uint32(b[20:]),
		Flags:       ne.Uint32(b[28:]),
		Ev:          ne.Uint32(b[32:]),
		Dev:         ne.Uint64(b[40:]),
		Name:        cstr(b[48:176]),
		UUID:        cstr(b[176:305]),
	}
}

func TestDmRequest(t *testing.T) {
	b := dmRequest("vroot", 0, 0, nil)
	want := header{Version: [3]uint32{4, 0, 0}, DataSize: 312, DataStart: 312, Name: "vroot"}
	if diff := cmp.Diff(want, readHeader(t, b)); diff != "" {
		t.Errorf("DM_DEV_CREATE request (-want +got):\n%s", diff)
	}
	if len(b) != 312 {
		t.Errorf("%d bytes, want 312", len(b))
	}
	long := strings.Repeat("n", 200)
	if got := readHeader(t, dmRequest(long, 0, 0, nil)).Name; len(got) != 127 {
		t.Errorf("a 200-byte name is cut to %d bytes, want 127 and a NUL", len(got))
	}
}

func TestTableLoadRequest(t *testing.T) {
	tg := testTarget()
	b := tableLoadRequest("vroot", tg)
	params := tg.Params()
	specLen := (40 + len(params) + 1 + 7) &^ 7
	want := header{
		Version: [3]uint32{4, 0, 0}, DataSize: uint32(312 + specLen), DataStart: 312,
		TargetCount: 1, Flags: unix.DM_READONLY_FLAG, Name: "vroot",
	}
	if diff := cmp.Diff(want, readHeader(t, b)); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if len(b) != 312+specLen || len(b)%8 != 0 {
		t.Fatalf("%d bytes, want %d, a multiple of 8", len(b), 312+specLen)
	}
	ne := binary.NativeEndian
	spec := b[312:]
	if got := ne.Uint64(spec[0:]); got != 0 {
		t.Errorf("sector_start %d", got)
	}
	if got := ne.Uint64(spec[8:]); got != 129*8 {
		t.Errorf("length %d sectors, want %d", got, 129*8)
	}
	if got := ne.Uint32(spec[16:]); got != 0 {
		t.Errorf("status %d", got)
	}
	if got := ne.Uint32(spec[20:]); got != uint32(specLen) {
		t.Errorf("next %d, want %d", got, specLen)
	}
	if got, want := spec[24:40], append([]byte("verity"), make([]byte, 10)...); !bytes.Equal(got, want) {
		t.Errorf("target_type %q", got)
	}
	text := spec[40:]
	if got := string(text[:len(params)]); got != params {
		t.Errorf("parameters %q, want %q", got, params)
	}
	if !allZero(text[len(params):]) {
		t.Errorf("parameters not NUL-terminated and zero-padded: %q", text[len(params):])
	}
	if !strings.HasPrefix(params, "1 /dev/loop0 /dev/loop1 4096 4096 129 1 sha256 ") {
		t.Errorf("parameters %q", params)
	}
}

func TestDmPath(t *testing.T) {
	// huge_encode_dev: (minor & 0xff) | major << 8 | (minor & ~0xff) << 12.
	enc := func(major, minor uint64) uint64 { return minor&0xff | major<<8 | (minor&^0xff)<<12 }
	for _, c := range []struct {
		major, minor uint64
		want         string
	}{
		{253, 0, "/dev/dm-0"},
		{254, 7, "/dev/dm-7"},
		{253, 300, "/dev/dm-300"},
		{253, 1 << 19, "/dev/dm-524288"},
	} {
		if got := dmPath(enc(c.major, c.minor)); got != c.want {
			t.Errorf("dmPath(%d:%d) = %s, want %s", c.major, c.minor, got, c.want)
		}
		if got := unix.Mkdev(uint32(c.major), uint32(c.minor)); got != enc(c.major, c.minor) {
			t.Errorf("unix.Mkdev(%d, %d) = %#x, kernel %#x", c.major, c.minor, got, enc(c.major, c.minor))
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"root", "overboot-lower.0", "a_b+c", strings.Repeat("x", 127)} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "é", strings.Repeat("x", 128)} {
		if err := checkName(bad); err == nil {
			t.Errorf("checkName(%q): no error", bad)
		}
	}
}

// TestCreateInvalid checks that Create refuses a bad name or table
// before it touches /dev/mapper/control.
func TestCreateInvalid(t *testing.T) {
	if _, err := Create("a/b", testTarget()); err == nil || !strings.Contains(err.Error(), `dm device name "a/b"`) {
		t.Errorf("Create with a bad name: %v", err)
	}
	bad := testTarget()
	bad.RootHash = nil
	if _, err := Create("root", bad); err == nil || !strings.Contains(err.Error(), "root hash of 0 bytes") {
		t.Errorf("Create with no root hash: %v", err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	testneed.Root(t, "mknod")
}

func TestEnsureNode(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "dm-9")
	dev := unix.Mkdev(253, 9)
	made, err := ensureNode(p, dev)
	if err != nil || !made {
		t.Fatalf("ensureNode of a missing node: made %v, %v", made, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || uint64(st.Rdev) != dev {
		t.Errorf("mode %o rdev %#x, want a block device %#x", st.Mode, st.Rdev, dev)
	}
	if made, err := ensureNode(p, dev); err != nil || made {
		t.Errorf("ensureNode of the right node: made %v, %v", made, err)
	}
	if _, err := ensureNode(p, unix.Mkdev(253, 10)); err == nil || !strings.Contains(err.Error(), "not block device 253:10") {
		t.Errorf("ensureNode of another device's node: %v", err)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureNode(f, dev); err == nil {
		t.Error("ensureNode of a regular file: no error")
	}
}

// attachLoop attaches the file at path to a free read-only loop device
// (LOOP_CTL_GET_FREE, LOOP_CONFIGURE: what the agent does, no losetup).
func attachLoop(t *testing.T, path string) string {
	t.Helper()
	testneed.Module(t, "loop")
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		lf, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY}}
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) && try < 10 {
			lf.Close() // taken meanwhile: ask again
			continue
		}
		if err != nil {
			lf.Close()
			t.Fatalf("LOOP_CONFIGURE %s: %v", dev, err)
		}
		t.Cleanup(func() {
			unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
		})
		return dev
	}
}

// dmModules are what TestCreate needs of the kernel.
var dmModules = []string{"loop", "dm_mod", "dm_verity"}

// hostDM says why this machine cannot run TestCreate itself, or nil: it
// needs root, and loop, dm-mod and dm-verity (loaded with modprobe).
func hostDM() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	for _, m := range dmModules {
		if err := testneed.LoadModule(m); err != nil {
			return err
		}
	}
	if _, err := os.Stat(controlSysfs); err != nil {
		return fmt.Errorf("dm-mod is loaded and %w", err)
	}
	return nil
}

// TestCreate sets up a real dm-verity device on loop devices, reads it
// back, and checks that a flipped data byte makes its block read fail
// with EIO. It needs root, loop, and dm-mod and dm-verity: where this
// machine cannot have them (a kernel without modules, a user not root),
// the QEMU tier runs it in a VM on Debian's kernel (runInVM).
func TestCreate(t *testing.T) {
	if err := hostDM(); err != nil {
		if inVM() {
			t.Fatalf("in the VM: %v", err)
		}
		runInVM(t, "TestCreate", fmt.Sprintf("here it cannot run: %v", err))
		return
	}

	const blocks = 300
	dir := t.TempDir()
	dataPath, data := randomFile(t, dir, "data", blocks)
	hashPath, tree := buildFile(t, dataPath, Params{})
	tg := tree.Target(attachLoop(t, dataPath), attachLoop(t, hashPath))
	name := "overboot-verity-test-" + strconv.Itoa(os.Getpid())

	// A hash device too small for the tree: the kernel refuses the table
	// (E2BIG, "Hash device is too small" in its log), and Create removes
	// the device it made, so the name is free below.
	short := filepath.Join(dir, "short.hash")
	hash, err := os.ReadFile(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, hash[:BlockSize], 0o600); err != nil {
		t.Fatal(err)
	}
	bad := tg
	bad.HashDevice = attachLoop(t, short)
	if _, err := Create(name, bad); err == nil || !strings.Contains(err.Error(), "load table") {
		t.Errorf("Create on a short hash device: %v, want a table load error", err)
	} else {
		t.Logf("short hash device: %v", err)
	}

	create := func() *Device {
		t.Helper()
		d, err := Create(name, tg)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { d.Remove() })
		return d
	}
	d := create()
	t.Logf("%s is %s (made by mknod: %v)", name, d.Path, d.madeNode)
	got, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s: %d bytes read differ from the %d bytes of data", d.Path, len(got), len(data))
	}
	if _, err := Create(name, tg); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("Create of an existing name: %v", err)
	}
	if err := d.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}

	const k = 200
	flipByte(t, dataPath, k*BlockSize+9)
	d = create()
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, BlockSize)
	if _, err := f.ReadAt(block, (k-1)*BlockSize); err != nil {
		t.Errorf("read block %d, before the flipped one: %v", k-1, err)
	}
	if _, err := f.ReadAt(block, k*BlockSize); !errors.Is(err, syscall.EIO) {
		t.Errorf("read block %d, flipped: %v, want EIO", k, err)
	}
	if _, err := f.ReadAt(block, (blocks-1)*BlockSize); err != nil && err != io.EOF {
		t.Errorf("read the last block: %v", err)
	}
	f.Close()
	if err := d.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}
