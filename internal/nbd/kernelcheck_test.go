//go:build linux

package nbd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// The kernel check: TestKernelNBD builds this test binary statically, puts
// it as /init with nbd.ko into an initramfs, and boots Debian's kernel on it
// in QEMU. There, as PID 1, TestMain runs guestCheck: load nbd.ko, Connect
// devices over netlink to Serve on a socket pair, read them back through the
// kernel's block layer and Disconnect. The guest prints one of the markers
// below on the serial console and powers off.
const (
	guestPass = "NBD-KERNELCHECK PASS"
	guestFail = "NBD-KERNELCHECK FAIL"
)

func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		if err := guestCheck(); err != nil {
			fmt.Printf("%s: %v\n", guestFail, err)
		} else {
			fmt.Println(guestPass)
		}
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {} // PID 1 must not exit
	}
	os.Exit(m.Run())
}

// qemuArgs is the command line of the check's VM: direct kernel boot, the
// serial console on stdout, no network, and TCG's RDRAND for early
// randomness.
func qemuArgs(kernel, initrd string) []string {
	return []string{
		"-nodefaults", "-nographic", "-accel", "tcg", "-cpu", "max", "-m", "512",
		"-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 random.trust_cpu=on",
	}
}

func TestQEMUArgs(t *testing.T) {
	got := strings.Join(qemuArgs("/boot/vmlinuz", "/tmp/i.cpio.gz"), " ")
	want := "-nodefaults -nographic -accel tcg -cpu max -m 512 -serial stdio -no-reboot " +
		"-kernel /boot/vmlinuz -initrd /tmp/i.cpio.gz -append console=ttyS0 panic=-1 random.trust_cpu=on"
	if got != want {
		t.Errorf("qemu args\n got %s\nwant %s", got, want)
	}
}

// debianKernel finds the newest /boot/vmlinuz-R whose modules tree has
// nbd.ko.
func debianKernel() (kernel, release string, err error) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		rel := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "kernel/drivers/block/nbd.ko")); err == nil {
			return k, rel, nil
		}
	}
	return "", "", errors.New("no /boot/vmlinuz-R with /lib/modules/R/kernel/drivers/block/nbd.ko: install linux-image-amd64 (make deps)")
}

// TestKernelNBD boots Debian's kernel in QEMU and checks that it takes the
// netlink configuration and reads the devices through Serve. It runs in
// the QEMU tier (OVERBOOT_VMTEST=1, testneed.VM).
func TestKernelNBD(t *testing.T) {
	testneed.VM(t)
	kernel, release, err := debianKernel()
	if err != nil {
		testneed.Missing(t, "%v", err)
	}
	qemu := testneed.Tool(t, "qemu-system-x86_64")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("%v: the check builds this package's test binary", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	bin := filepath.Join(dir, "init")
	build := exec.CommandContext(ctx, goBin, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest binary: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = initramfs.Build(ctx, f, initramfs.Options{Agent: bin, KernelRelease: release, Modules: []string{"nbd"}, Compression: "gzip"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("build the initramfs: %v", err)
	}

	cmd := exec.CommandContext(ctx, qemu, qemuArgs(kernel, initrd)...)
	console, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	verdict := ""
	sc := bufio.NewScanner(console)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		if strings.Contains(line, guestPass) || strings.Contains(line, guestFail) {
			verdict = line
		}
	}
	waitErr := cmd.Wait()
	t.Logf("console:\n%s", log.String())
	switch {
	case strings.Contains(verdict, guestPass):
	case verdict != "":
		t.Fatalf("guest: %s", verdict)
	case ctx.Err() != nil:
		t.Fatalf("no verdict from the guest after %v", 5*time.Minute)
	default:
		t.Fatalf("QEMU ended (%v) without a verdict from the guest", waitErr)
	}
}

// guestCheck runs as /init in the VM.
func guestCheck() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	if err := loadNBD(); err != nil {
		return err
	}
	// The kernel chooses the index; one connection; 4 KiB blocks.
	cfg := Config{Index: AnyIndex, Size: 8 << 20, Timeout: 30 * time.Second}
	if err := guestDevice(cfg, 1, patternImage{cfg.Size}, checkDevice, 0); err != nil {
		return err
	}
	// A given index, two connections (NBD_FLAG_CAN_MULTI_CONN), 512-byte
	// blocks.
	cfg = Config{Index: 5, Size: 3 << 20, BlockSize: 512, Timeout: 30 * time.Second}
	if err := guestDevice(cfg, 2, patternImage{cfg.Size}, checkDevice, 0); err != nil {
		return err
	}
	// A backend error: the kernel fails that read with EIO (taking no
	// payload after the error reply) and the connection goes on.
	cfg = Config{Index: 2, Size: 1 << 20, Timeout: 30 * time.Second}
	bad := failingImage{Backend: patternImage{cfg.Size}, badFrom: 512 << 10, badTo: 512<<10 + 1, err: errors.New("injected")}
	return guestDevice(cfg, 1, bad, checkBackendError, 1)
}

func loadNBD() error {
	mods, _ := filepath.Glob("/lib/modules/*/kernel/drivers/block/nbd.ko")
	if len(mods) != 1 {
		return fmt.Errorf("nbd.ko in the initramfs: found %v", mods)
	}
	f, err := os.Open(mods[0])
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		return fmt.Errorf("load %s: %w", mods[0], err)
	}
	return nil
}

// guestDevice connects one device with conns sockets served from img,
// checks it, disconnects it, and expects wantErrs backend errors.
func guestDevice(cfg Config, conns int, img Backend, check func(Device, int64) error, wantErrs int) error {
	stats := &statsImage{Backend: img}
	var kernelEnds []*os.File
	served := make(chan error, conns)
	var backendErrs sync.Map
	for range conns {
		k, agent, err := Socketpair()
		if err != nil {
			return err
		}
		defer agent.Close()
		kernelEnds = append(kernelEnds, k)
		s := &Server{Backend: stats, OnError: func(err error) { backendErrs.Store(err.Error(), true) }}
		go func() { served <- s.Serve(context.Background(), agent) }()
	}
	dev, err := Connect(cfg, kernelEnds...)
	for _, k := range kernelEnds {
		k.Close()
	}
	if err != nil {
		return err
	}
	fmt.Printf("nbd-kernelcheck: %v connected (%d bytes, %d connection(s))\n", dev, cfg.Size, conns)
	if cfg.Index != AnyIndex && int(dev) != cfg.Index {
		return fmt.Errorf("connect asked for index %d, the kernel answered %v", cfg.Index, dev)
	}
	if err := check(dev, cfg.Size); err != nil {
		return fmt.Errorf("%v: %w", dev, err)
	}
	if err := Disconnect(dev); err != nil {
		return err
	}
	for range conns {
		select {
		case err := <-served:
			if err != nil {
				return fmt.Errorf("%v: Serve after Disconnect: %w", dev, err)
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%v: Serve still running 30s after Disconnect", dev)
		}
	}
	var errs []string
	backendErrs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
	if len(errs) != wantErrs {
		return fmt.Errorf("%v: backend errors %q, want %d", dev, errs, wantErrs)
	}
	fmt.Printf("nbd-kernelcheck: %v read back and disconnected: %d reads served, largest %d bytes\n", dev, stats.reads.Load(), stats.largest.Load())
	return nil
}

// statsImage counts the reads the kernel sent and the largest.
type statsImage struct {
	Backend
	reads, largest atomic.Int64
}

func (s *statsImage) ReadAt(p []byte, off int64) (int, error) {
	s.reads.Add(1)
	for n := int64(len(p)); ; {
		l := s.largest.Load()
		if n <= l || s.largest.CompareAndSwap(l, n) {
			break
		}
	}
	return s.Backend.ReadAt(p, off)
}

// openDevice opens dev once its node is there (devtmpfs makes it).
func openDevice(dev Device, flag int) (*os.File, error) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		f, err := os.OpenFile(dev.Path(), flag, 0)
		if err == nil || time.Now().After(deadline) {
			return f, err
		}
	}
}

// alignedBuffer is memory O_DIRECT accepts.
func alignedBuffer(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

// checkBackendError reads a block whose backend read fails, then others.
func checkBackendError(dev Device, size int64) error {
	d, err := openDevice(dev, os.O_RDONLY|unix.O_DIRECT)
	if err != nil {
		return err
	}
	defer d.Close()
	buf, err := alignedBuffer(4096)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	if _, err := d.ReadAt(buf, 512<<10); !errors.Is(err, unix.EIO) {
		return fmt.Errorf("read of the failing block: %v, want EIO", err)
	}
	for _, off := range []int64{0, 508 << 10, 516 << 10, size - 4096} {
		if _, err := d.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read at %d after the failing one: %w", off, err)
		}
		if want := wantPattern(off, 4096); !bytes.Equal(buf, want) {
			return fmt.Errorf("read at %d after the failing one: first difference at %d", off, firstDiff(buf, want))
		}
	}
	fmt.Printf("nbd-kernelcheck: %v backend error came back as EIO, the connection went on\n", dev)
	return nil
}

func checkDevice(dev Device, imgSize int64) error {
	f, err := openDevice(dev, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()

	var size uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return fmt.Errorf("BLKGETSIZE64: %w", e)
	}
	if int64(size) != imgSize {
		return fmt.Errorf("size %d, want %d", size, imgSize)
	}
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return fmt.Errorf("BLKROGET: %w", err)
	}
	if ro != 1 {
		return fmt.Errorf("BLKROGET = %d, want 1 (NBD_FLAG_READ_ONLY)", ro)
	}

	// The whole device through the page cache (read-ahead: large requests).
	all, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read all: %w", err)
	}
	if want := wantPattern(0, int(imgSize)); !bytes.Equal(all, want) {
		return fmt.Errorf("read all: %d bytes, first difference at %d", len(all), firstDiff(all, want))
	}

	// Concurrent direct reads at odd block offsets, past the cache.
	d, err := os.OpenFile(dev.Path(), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open O_DIRECT: %w", err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			buf, err := alignedBuffer(1 << 20)
			if err != nil {
				errs <- err
				return
			}
			defer unix.Munmap(buf)
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 16 {
				n := 4096 * (1 + r.IntN(256))
				off := 4096 * r.Int64N((imgSize-int64(n))/4096+1)
				if _, err := d.ReadAt(buf[:n], off); err != nil {
					errs <- fmt.Errorf("direct read %d at %d: %w", n, off, err)
					return
				}
				if want := wantPattern(off, n); !bytes.Equal(buf[:n], want) {
					errs <- fmt.Errorf("direct read %d at %d: first difference at %d", n, off, firstDiff(buf[:n], want))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	// A write must fail: at open, or at the write.
	if w, err := os.OpenFile(dev.Path(), os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		buf, err := alignedBuffer(4096)
		if err != nil {
			return err
		}
		_, werr := w.WriteAt(buf, 0)
		unix.Munmap(buf)
		w.Close()
		if werr == nil {
			return errors.New("a write to the read-only device succeeded")
		}
		fmt.Printf("nbd-kernelcheck: %v write refused: %v\n", dev, werr)
	} else {
		fmt.Printf("nbd-kernelcheck: %v open for writing refused: %v\n", dev, err)
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
