package verity

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// The VM run, as internal/nbd's kernel check does it: where this machine
// cannot run a test (TestCreate needs dm-verity, which a kernel without
// modules, like the CI machines', lacks), runInVM builds this package's
// test binary statically, puts it as /init with the modules into an
// initramfs, and boots Debian's kernel on it in QEMU. There, as PID 1,
// TestMain loads the modules, runs that one test (-test.v, and
// OVERBOOT_STRICT=1: a missing need fails) and prints a verdict on the
// serial console before powering off.
const (
	vmPass = "VERITY-VM PASS"
	vmFail = "VERITY-VM FAIL"
	// vmRunEnv names the test to run; the kernel hands a name=value it
	// does not know to /init as an environment variable.
	vmRunEnv = "OVERBOOT_VERITY_VM_RUN"
	vmWait   = 5 * time.Minute
)

// vmModules go into the initramfs (with what they depend on) and are
// loaded before the test runs.
var vmModules = []string{"loop", "dm-verity"}

func inVM() bool { return os.Getpid() == 1 }

func TestMain(m *testing.M) {
	if !inVM() {
		os.Exit(m.Run())
	}
	if err := vmSetup(); err != nil {
		fmt.Printf("%s: %v\n", vmFail, err)
	} else {
		os.Args = []string{os.Args[0], "-test.v", "-test.run=^" + os.Getenv(vmRunEnv) + "$"}
		if code := m.Run(); code != 0 {
			fmt.Printf("%s: exit status %d\n", vmFail, code)
		} else {
			fmt.Println(vmPass)
		}
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit
}

// vmSetup mounts what the test needs and loads vmModules.
func vmSetup() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	os.Setenv("TMPDIR", "/tmp")
	os.Setenv(testneed.StrictEnv, "1")
	if os.Getenv(vmRunEnv) == "" {
		return fmt.Errorf("no %s on the kernel command line", vmRunEnv)
	}
	rels, _ := filepath.Glob("/lib/modules/*")
	if len(rels) != 1 {
		return fmt.Errorf("kernel releases in the initramfs: %v", rels)
	}
	mt, err := initramfs.OpenModuleTree("", filepath.Base(rels[0]))
	if err != nil {
		return err
	}
	files, err := mt.LoadOrder(vmModules)
	if err != nil {
		return err
	}
	for _, file := range files {
		f, err := os.Open(filepath.Join(mt.Dir, file))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load %s: %w", file, err)
		}
	}
	return nil
}

// vmArgs is the VM's command line: direct kernel boot, the serial console
// on stdout, no network, TCG's RDRAND for early randomness (crypto/rand),
// kernel messages from warnings up.
func vmArgs(kernel, initrd, test string) []string {
	return []string{
		"-nodefaults", "-nographic", "-accel", "tcg", "-cpu", "max", "-m", "512",
		"-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 random.trust_cpu=on loglevel=4 " + vmRunEnv + "=" + test,
	}
}

func TestVMArgs(t *testing.T) {
	got := strings.Join(vmArgs("/boot/vmlinuz", "/tmp/i.gz", "TestCreate"), " ")
	want := "-nodefaults -nographic -accel tcg -cpu max -m 512 -serial stdio -no-reboot " +
		"-kernel /boot/vmlinuz -initrd /tmp/i.gz -append console=ttyS0 panic=-1 random.trust_cpu=on loglevel=4 OVERBOOT_VERITY_VM_RUN=TestCreate"
	if got != want {
		t.Errorf("qemu args\n got %s\nwant %s", got, want)
	}
}

// vmKernel is the newest /boot/vmlinuz-R whose modules have dm-verity.
func vmKernel(t *testing.T) (kernel, release string) {
	t.Helper()
	kernels := testneed.Glob(t, "/boot/vmlinuz-*", "linux-image-amd64")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		rel := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "kernel/drivers/md/dm-verity.ko")); err == nil {
			return k, rel
		}
	}
	testneed.Missing(t, "needs a kernel /boot/vmlinuz-R with /lib/modules/R/kernel/drivers/md/dm-verity.ko (of %v): apt-get install linux-image-amd64 (make deps does)", kernels)
	return "", ""
}

// runInVM runs the test name in a VM (see TestMain) in the QEMU tier, and
// leaves it to that tier elsewhere; why says why it does not run here.
func runInVM(t *testing.T, name, why string) {
	t.Helper()
	t.Logf("%s: the QEMU tier runs %s in a VM on Debian's kernel", why, name)
	testneed.VM(t)
	kernel, release := vmKernel(t)
	qemu := testneed.Tool(t, "qemu-system-x86_64")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("%v: the VM runs this package's test binary, built with go", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), vmWait)
	defer cancel()

	bin := filepath.Join(dir, "init")
	build := exec.CommandContext(ctx, goBin, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test binary: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = initramfs.Build(ctx, f, initramfs.Options{Agent: bin, NoRescueShell: true, KernelRelease: release, Modules: vmModules, Compression: "gzip"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("build the initramfs: %v", err)
	}

	cmd := exec.CommandContext(ctx, qemu, vmArgs(kernel, initrd, name)...)
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
		if strings.HasPrefix(line, vmPass) || strings.HasPrefix(line, vmFail) {
			verdict = line
		}
	}
	waitErr := cmd.Wait()
	t.Logf("the VM's console:\n%s", log.String())
	switch {
	case verdict == vmPass:
	case verdict != "":
		t.Fatalf("in the VM: %s", verdict)
	case ctx.Err() != nil:
		t.Fatalf("no verdict from the VM after %v", vmWait)
	default:
		t.Fatalf("QEMU ended (%v) without a verdict from the VM", waitErr)
	}
}
