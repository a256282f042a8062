package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/mkimage"
)

// vmtestCache is where slow, reusable inputs (the debootstrap tree) are
// kept between runs.
func vmtestCache() string {
	if d := os.Getenv("OVERBOOT_VMTEST_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "overboot-vmtest")
}

// TestSystemdISCSIUpper boots a Debian image whose init is systemd, with
// the upper layer on the machine's private iSCSI disk, through the
// server's document path (the command line comes from the server's
// script). Once systemd reports the system up, the test service counts
// the boot in /var without sync and powers off through systemd; the
// second boot finds the count: the kernel's iSCSI session outlived
// switch_root, all of systemd's start-up and its shutdown (which wrote
// the counter to the disk), and the keeper that logs the session in
// again when its connection fails is still running once systemd is up.
func TestSystemdISCSIUpper(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	img := systemdImage(t, dir)
	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://%[2]s\niscsi-portal = %[2]s:3260\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nupper = iscsi\nenroll = open-insecure\nupper-disk-size = 512M\nonfail = poweroff\nonfail-delay = 1s\n",
		filepath.Join(dir, "data"), GuestServer, a.Kernel, a.Initramfs, img)
	_, httpAddr, iscsiAddr := startServer(t, conf, filepath.Join(dir, "data"))

	const mac = "52:54:00:0b:00:07"
	line := regexp.MustCompile(MarkerSystemd + ` boots=(\d+) pid1=(\S+) state=(\S+) sessions=\[(.*)\] upper=\[(.*)\] keeper=\[(.*)\]`)
	for n := 1; n <= 2; n++ {
		// The server's script for this machine, as iPXE would get it; its
		// kernel arguments (with a fresh single-use document URL) go to a
		// direct kernel boot.
		vm := startVM(t, Options{
			Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 1024, CPUs: 2,
			Append:   directCmdline(serverScriptArgs(t, httpAddr, mac)),
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
		})
		l, i, err := vm.ExpectAny(2*bootTimeout, MarkerSystemd, "overboot: BOOT FAILED")
		if err != nil || i != 0 {
			t.Fatalf("boot %d: systemd did not report: %v %s", n, err, l.Text)
		}
		t.Logf("boot %d: %s", n, l)
		f := line.FindStringSubmatch(l.Text)
		switch {
		case f == nil:
			t.Fatalf("boot %d: unreadable report %q", n, l.Text)
		case f[1] != fmt.Sprint(n):
			t.Errorf("boot %d: the counter says %s: the previous boot's write did not reach the iSCSI disk", n, f[1])
		case f[2] != "systemd":
			t.Errorf("boot %d: pid 1 is %s, not systemd", n, f[2])
		case f[3] != "running" && f[3] != "degraded":
			t.Errorf("boot %d: systemd state %s", n, f[3])
		case !strings.HasPrefix(f[4], "session"):
			t.Errorf("boot %d: no iSCSI session once systemd is up: %q", n, f[4])
		case !regexp.MustCompile(`^/dev/sd[a-z]+ ext4$`).MatchString(f[5]):
			t.Errorf("boot %d: the upper is %q, not the iSCSI disk", n, f[5])
		case strings.TrimSpace(f[6]) == "":
			t.Errorf("boot %d: no @overboot-keeper once systemd is up: nothing would log the session in again", n)
		}
		if f != nil && f[3] == "degraded" {
			for _, l := range vm.Lines() {
				if strings.Contains(l.Text, "FAILED") {
					t.Logf("boot %d: %s", n, l)
				}
			}
		}
		if _, err := vm.Wait(2 * time.Minute); err != nil {
			t.Fatalf("boot %d: systemd did not power off: %v", n, err)
		}
	}
}

// TestSystemdLazyRoot boots the Debian image with systemd from a lazy
// root: the keeper, started by the agent, serves the root through all of
// systemd's start-up (it is still there, one of it, once the system is
// up) and its shutdown, which leaves '@' processes alone: the machine
// powers off with no read of the root failing on the way.
func TestSystemdLazyRoot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	img := systemdImage(t, dir)
	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://%s\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = lazy\nonfail = poweroff\nonfail-delay = 1s\n",
		filepath.Join(dir, "data"), GuestServer, a.Kernel, a.Initramfs, img)
	_, httpAddr, _ := startServer(t, conf, filepath.Join(dir, "data"))
	const mac = "52:54:00:0b:00:08"
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 1024, CPUs: 2,
		Append:   directCmdline(serverScriptArgs(t, httpAddr, mac)),
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}},
	})
	l, i, err := vm.ExpectAny(2*bootTimeout, MarkerSystemd, "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("systemd did not report: %v %s", err, l.Text)
	}
	t.Logf("%s", l)
	f := regexp.MustCompile(MarkerSystemd + ` .*pid1=(\S+) state=(\S+) .* keeper=\[([^\]]*)\]`).FindStringSubmatch(l.Text)
	switch {
	case f == nil:
		t.Fatalf("unreadable report %q", l.Text)
	case f[1] != "systemd":
		t.Errorf("pid 1 is %s, not systemd", f[1])
	case f[2] != "running" && f[2] != "degraded":
		t.Errorf("systemd state %s", f[2])
	case len(strings.Fields(f[3])) != 1:
		t.Errorf("keepers [%s] once systemd is up, want one", f[3])
	}
	if _, err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("systemd did not power off: %v", err)
	}
	for _, l := range vm.Lines() {
		for _, bad := range []string{"I/O error", "SQUASHFS error", "overboot-keeper: stopped", "is corrupted"} {
			if strings.Contains(l.Text, bad) {
				t.Errorf("console: %s", l)
			}
		}
	}
	if !vm.Contains("reboot: Power down") {
		t.Errorf("no clean power-off on the console")
	}
}

// systemdImage builds the systemd test root's squashfs in dir.
func systemdImage(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	tree, err := SystemdRoot(ctx, vmtestCache(), testLogWriter{})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "systemd.squashfs")
	if _, err := mkimage.BuildRoot(ctx, img, mkimage.RootOptions{Source: tree}); err != nil {
		t.Fatal(err)
	}
	return img
}
