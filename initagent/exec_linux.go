package initagent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	diskfile "github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/initagent/iscsi"
	"github.com/overboot/overboot/internal/iscsiwire"
)

// LinuxExecutor performs plan steps with real syscalls. It only makes sense
// as PID 1 in an initramfs.
type LinuxExecutor struct {
	Console  io.Writer
	Progress func(Phase, string) // download progress lines
	Client   *http.Client        // nil: a default client

	iface string // the interface Network configured
}

// Do implements Executor.
func (e *LinuxExecutor) Do(ctx context.Context, s Step) (string, error) {
	switch s := s.(type) {
	case Mount:
		// The kernel command line was read before the plan ran, which may
		// have needed /proc already.
		if s.PhaseOf == PhaseEarly && isMountPoint(s.Target) {
			return "", nil
		}
		return "", doMount(s.Source, s.Target, s.FSType, s.Options)
	case Mkdir:
		for _, p := range s.Paths {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", err
			}
		}
		return "", nil
	case LoadModules:
		return loadModules(s)
	case Network:
		note, iface, err := bringUpNetwork(ctx, s)
		e.iface = iface
		return note, err
	case Download:
		return download(ctx, s, e.Client, e.progress)
	case LoopMount:
		return loopMount(s)
	case ISCSIAttach:
		return iscsiAttach(ctx, s)
	case IBFTAttach:
		return ibftAttach(ctx, s)
	case VerifyDevice:
		return verifyDevice(s)
	case FormatBlank:
		return formatBlank(s)
	case WriteFiles:
		return writeFiles(s)
	case HandOverNetwork:
		return handOverNetwork(s, e.iface)
	case CheckInit:
		return "", checkInit(s.Root, s.Init)
	case SwitchRoot:
		return "", switchRoot(s.Root, s.Init)
	}
	return "", fmt.Errorf("step %T cannot run here", s)
}

// Document implements Executor.
func (e *LinuxExecutor) Document(ctx context.Context, s FetchDocument) (boot.Document, error) {
	return fetchDocument(ctx, s, e.Client)
}

func (e *LinuxExecutor) progress(p Phase, line string) {
	if e.Progress != nil {
		e.Progress(p, line)
	}
}

// mountFlags splits mount(8)-style options into MS_* flags and the data
// string the filesystem reads.
func mountFlags(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "sync":
			flags |= unix.MS_SYNCHRONOUS
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

func doMount(source, target, fstype string, opts []string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	flags, data := mountFlags(opts)
	// The kernel shows the source as given: mount the device a link such
	// as /run/overboot/root.dev points to, so /proc/mounts names /dev/sdX.
	if strings.HasPrefix(source, RunDir+"/") {
		if dev, err := filepath.EvalSymlinks(source); err == nil {
			source = dev
		}
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		err = &os.PathError{Op: "mount " + fstype + " " + source + " on", Path: target, Err: err}
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("%w: the kernel does not know %s: is its module in the initramfs (overboot mkimage initramfs --modules)?", err, fstype)
		}
		return err
	}
	return nil
}

// isMountPoint reports whether dir is on another filesystem than its parent.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Join(dir, ".."), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// MountProc mounts /proc, for reading the kernel command line before the
// plan runs.
func MountProc() error {
	if isMountPoint("/proc") {
		return nil
	}
	return doMount("proc", "/proc", "proc", []string{"nosuid", "nodev", "noexec"})
}

// loadModules loads the initramfs's module list and any extra modules, with
// their dependencies from modules.dep, then the driver segments' modules
// (modules_linux.go).
func loadModules(s LoadModules) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	release := unix.ByteSliceToString(u.Release[:])
	note, err := loadListed(s, release)
	if err != nil {
		return "", err
	}
	seg, err := loadSegments(s.SegmentDir, release)
	if err != nil {
		return "", err
	}
	if seg != "" {
		note += "; " + seg
	}
	return note, nil
}

// loadListed loads the modules of ListFile and Extra with the prober.
func loadListed(s LoadModules, release string) (string, error) {
	names, err := readModuleList(s.ListFile)
	if err != nil {
		return "", err
	}
	names = append(names, s.Extra...)
	names = slices.DeleteFunc(names, func(n string) bool {
		return slices.Contains(s.Skip, strings.ReplaceAll(n, "-", "_"))
	})
	if len(names) == 0 {
		return "no modules listed", nil
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", release, "modules.dep")); err != nil {
		have, _ := filepath.Glob("/lib/modules/*/modules.dep")
		for i, h := range have {
			have[i] = filepath.Base(filepath.Dir(h))
		}
		return "", fmt.Errorf("no modules for the running kernel %s in this initramfs (it has: %s): rebuild it with overboot mkimage initramfs --kernel-release %s", release, strings.Join(have, ", "), release)
	}
	var skipped []string
	if f, err := os.Open(filepath.Join("/lib/modules", release, "modules.alias")); err == nil {
		aliases, err := ParseAliases(f)
		f.Close()
		if err == nil {
			skipped = aliases.WithoutHardware(names, pciModaliases())
			names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(skipped, n) })
		}
	}
	prober, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return "", fmt.Errorf("read modules.dep: %w", err)
	}
	// Modules without dependencies between them load concurrently; the
	// prober orders dependencies itself and is safe for concurrent use.
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := prober.Probe(n, ""); err != nil && !errors.Is(err, unix.EEXIST) {
				errs[i] = fmt.Errorf("load module %s: %w", n, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	note := fmt.Sprintf("%d modules for %s", len(names), release)
	if len(skipped) > 0 {
		note += fmt.Sprintf(" (no hardware for %s)", strings.Join(skipped, ", "))
	}
	return note, nil
}

// pciModaliases lists the modalias strings of the machine's PCI devices.
func pciModaliases() []string {
	files, _ := filepath.Glob("/sys/bus/pci/devices/*/modalias")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// readModuleList reads one module name per line; '#' starts a comment. A
// missing file means no modules.
func readModuleList(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, sc.Err()
}

// loopMount attaches the image to a read-only loop device (LOOP_CONFIGURE,
// Linux 5.8+) and mounts it read-only.
func loopMount(s LoopMount) (string, error) {
	f, err := os.Open(s.File)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var dev string
	var lf *os.File
	// Another process could take the free device first; retry a few times.
	for try := 0; ; try++ {
		dev, err = loop.FindDevice()
		if err != nil {
			return "", fmt.Errorf("find a free loop device: %w: is the loop module in the initramfs?", err)
		}
		lf, err = os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], s.File)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			break
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) || try == 4 {
			return "", &os.PathError{Op: "configure loop device", Path: dev, Err: err}
		}
	}
	// With AUTOCLEAR, the device detaches when the last user goes: keep our
	// fd until the mount holds it.
	defer lf.Close()
	if err := doMount(dev, s.Target, s.FSType, []string{"ro"}); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return "", fmt.Errorf("%w: the image is not a valid %s filesystem", err, s.FSType)
		}
		return "", err
	}
	return dev + " read-only", nil
}

// switchRoot makes root the new "/" and executes init as PID 1, like
// util-linux switch_root: move the kernel filesystems, move root over "/",
// chroot, delete the initramfs's files (they would hold RAM forever), exec.
func switchRoot(root, init string) error {
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		dst := filepath.Join(root, m)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return &os.PathError{Op: "move mount " + m + " to", Path: dst, Err: err}
		}
	}
	old, err := os.Open("/")
	if err != nil {
		return err
	}
	defer old.Close()
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return &os.PathError{Op: "move mount to /", Path: root, Err: err}
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(old.Fd()), &st); err == nil {
		// Best effort: a leftover file costs RAM, not correctness.
		_ = removeAllOnDevice(int(old.Fd()), st.Dev)
	}
	argv := append([]string{init}, os.Args[1:]...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UROOT_") {
			env = append(env, kv)
		}
	}
	return &os.PathError{Op: "exec", Path: init, Err: unix.Exec(init, argv, env)}
}

// removeAllOnDevice deletes everything below the directory dirfd that lives
// on device dev, without crossing into other filesystems.
func removeAllOnDevice(dirfd int, dev uint64) error {
	d := os.NewFile(uintptr(dirfd), "dir")
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			_ = removeAllOnDevice(fd, dev)
			unix.Close(fd)
			_ = unix.Unlinkat(dirfd, n, unix.AT_REMOVEDIR)
			continue
		}
		_ = unix.Unlinkat(dirfd, n, 0)
	}
	return nil
}

// Uptime returns the time since boot (CLOCK_BOOTTIME), which is what the
// kernel's own console timestamps count.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Apply carries out a failure outcome. It never returns: PID 1 must not exit.
func Apply(o Outcome, console io.Writer) {
	for _, l := range o.Lines {
		fmt.Fprintln(console, l)
	}
	if o.Action == boot.ActionShell {
		if err := rescueShell(console); err != nil {
			fmt.Fprintf(console, "overboot: no rescue shell: %v; rebooting in %v\n", err, o.Delay)
			time.Sleep(o.Delay)
		} else {
			fmt.Fprintln(console, "overboot: rescue shell exited; rebooting")
		}
		o.Action = boot.ActionReboot
	} else {
		time.Sleep(o.Delay)
	}
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if o.Action == boot.ActionPoweroff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	err := unix.Reboot(cmd)
	fmt.Fprintf(console, "overboot: %s failed: %v; halting here\n", o.Action, err)
	for {
		time.Sleep(time.Hour)
	}
}

// RescueShell is where mkimage initramfs puts u-root's gosh.
const RescueShell = "/" + boot.InitramfsShell

func rescueShell(console io.Writer) error {
	if _, err := os.Stat(RescueShell); err != nil {
		return fmt.Errorf("%s is not in this initramfs (build it with --rescue-shell)", RescueShell)
	}
	tty, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer tty.Close()
	cmd := exec.Command(RescueShell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = append(os.Environ(), "PS1=overboot-rescue# ", "HOME=/", "PATH=/bin:/sbin:/usr/bin:/usr/sbin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd.Run()
}

// download is a placeholder until initagent/fetch lands.
// download fetches the image into s.Dest (on the image tmpfs), verified.
// A failed download leaves nothing behind.
func download(ctx context.Context, s Download, client *http.Client, progress func(Phase, string)) (string, error) {
	if err := os.MkdirAll(filepath.Dir(s.Dest), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.Dest, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	res, err := fetch.Fetch(ctx, s.URL, s.Digest, s.Size, f, fetch.Options{
		Client:   client,
		Attempts: s.Attempts,
		Stall:    s.Stall,
		Progress: func(p fetch.Progress) { progress(PhaseLower, "fetch "+p.String()) },
	})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", s.Dest, cerr)
	}
	if err != nil {
		os.Remove(s.Dest)
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: the image does not fit in RAM: give the machine more memory", err)
		}
		return "", err
	}
	return res.String(), nil
}

// iscsiAttach logs in through the kernel initiator and links the device.
func iscsiAttach(ctx context.Context, s ISCSIAttach) (string, error) {
	src := s.Source
	if src.CHAP == nil {
		return "", fmt.Errorf("iscsi %s: no CHAP credentials in the boot document", src.Target)
	}
	a, err := login(ctx, src)
	if err != nil {
		return "", err
	}
	os.Remove(s.Link)
	if err := os.Symlink(a.Device, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s lun %d is %s (session %d)", src.Target, src.LUN, a.Device, a.SID), nil
}

// ibftAttach logs in to the disk the firmware booted from and links the
// root partition.
func ibftAttach(ctx context.Context, s IBFTAttach) (string, error) {
	src, err := iscsi.ParseIBFT(os.DirFS(s.Dir))
	if err != nil {
		return "", err
	}
	a, err := login(ctx, src)
	if err != nil {
		return "", err
	}
	// sd disks name their partitions sdX1, sdX2, ...; the kernel reads
	// the partition table while attaching the disk.
	part := fmt.Sprintf("%s%d", a.Device, s.Partition)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(part); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s has no partition %d (%s): check overboot.root=ibft:N against the disk's partition table", a.Device, s.Partition, part)
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(s.Link)
	if err := os.Symlink(part, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s lun %d at %s is %s (session %d), root %s", src.Target, src.LUN, src.Portal, a.Device, a.SID, part), nil
}

// login attaches an iSCSI LUN through the kernel initiator.
func login(ctx context.Context, src boot.ISCSISource) (iscsi.Attachment, error) {
	o := iscsi.Options{Initiator: src.Initiator, Target: src.Target}
	if src.CHAP == nil {
		return iscsi.Attachment{}, fmt.Errorf("iscsi %s: no CHAP credentials", src.Target)
	}
	o.CHAP = iscsiwire.CHAP{User: src.CHAP.User, Secret: iscsiwire.Secret(src.CHAP.Secret)}
	if src.CHAP.TargetUser != "" {
		o.TargetCHAP = &iscsiwire.CHAP{User: src.CHAP.TargetUser, Secret: iscsiwire.Secret(src.CHAP.TargetSecret)}
	}
	return iscsi.Attach(ctx, src.Portal, src.LUN, o, 20*time.Second)
}

// formatBlank makes ext4 on a blank device (go-diskfs: no mkfs binary in
// the initramfs).
func formatBlank(s FormatBlank) (string, error) {
	f, err := os.OpenFile(s.Device, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, BlankCheckBytes)
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("read %s: %w", s.Device, err)
	}
	switch ClassifyDisk(head) {
	case DiskExt4:
		return "ext4", nil
	case DiskOther:
		return "", fmt.Errorf("%s is neither ext4 nor blank: not formatting a disk that holds data (reset the machine's disk on the server to start over)", s.Device)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	start := time.Now()
	_, err = ext4.Create(diskfile.New(f, false), size, 0, 512, &ext4.Params{
		VolumeName: s.Label, SectorsPerBlock: 8,
		// e2fsck finds go-diskfs's resize inode invalid: no online growth.
		Features: []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)},
	})
	if err != nil {
		return "", fmt.Errorf("format %s: %w", s.Device, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("format %s: %w", s.Device, err)
	}
	return fmt.Sprintf("blank: formatted %d MiB ext4 in %.1fs", size>>20, time.Since(start).Seconds()), nil
}

// verifyDevice hashes the first Size bytes of the device.
func verifyDevice(v VerifyDevice) (string, error) {
	f, err := os.Open(v.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	start := time.Now()
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(f, v.Size), make([]byte, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", v.Path, err)
	}
	if n != v.Size {
		return "", fmt.Errorf("%s: %d bytes, the image has %d: is the LUN the right one?", v.Path, n, v.Size)
	}
	if got := boot.DigestFromSum(h.Sum(nil)); got != v.Digest {
		return "", fmt.Errorf("%s: sha256 is %s, expected %s: the LUN does not hold the image the document names", v.Path, got.Hex(), v.Digest.Hex())
	}
	return fmt.Sprintf("%d bytes verified in %.1fs", n, time.Since(start).Seconds()), nil
}
