package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/tftp"
)

// The Debian package (make deb, dist/deb): TestDebPackage checks the
// package and installs it with dpkg into a debootstrap tree;
// TestDebSystemdService boots that tree in QEMU with systemd starting the
// packaged unit, and asks the server inside for a script, a DHCP answer
// on a LAN of the test's own, a file over TFTP and a driver segment.

var (
	debOnce sync.Once
	debFile string
	debErr  error
)

// needDeb returns the package, built once per test process with `make
// deb BUILD=DIR` (DIR in the vmtest cache). Like needVM, it skips without
// OVERBOOT_VMTEST=1 and fails when a tool is missing.
func needDeb(t *testing.T) string {
	t.Helper()
	testneed.VM(t) // the QEMU tier's, like the other tests here
	testneed.Root(t, "the package tests run chroot, dpkg and apt-get in a debootstrap tree")
	for _, tool := range [][2]string{
		{"make", "make"}, {"git", "git"}, {"dpkg-deb", "dpkg"}, {"chroot", "coreutils"},
		{"debootstrap", "debootstrap"}, {"lintian", "lintian"}, {"mksquashfs", "squashfs-tools"},
	} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Fatalf("%s (package %s; make deps installs it) is needed: %v", tool[0], tool[1], err)
		}
	}
	debOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			debErr = err
			return
		}
		dir := filepath.Join(vmtestCache(), "deb-build")
		os.RemoveAll(dir)
		t0 := time.Now()
		cmd := exec.Command("make", "-C", root, "--no-print-directory", "deb", "BUILD="+dir)
		// A make of its own, not a part of the make that may run the tests.
		cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
			return strings.HasPrefix(e, "MAKEFLAGS=") || strings.HasPrefix(e, "MFLAGS=") || strings.HasPrefix(e, "MAKELEVEL=")
		})
		if out, err := cmd.CombinedOutput(); err != nil {
			debErr = fmt.Errorf("make deb: %w\n%s", err, out)
			return
		}
		m, _ := filepath.Glob(filepath.Join(dir, "overboot_*_amd64.deb"))
		if len(m) != 1 {
			debErr = fmt.Errorf("make deb made %q in %s, want one overboot_VERSION_amd64.deb", m, dir)
			return
		}
		debFile = m[0]
		fmt.Fprintf(testLogWriter{}, "vmtest: make deb: %s in %.1fs\n", filepath.Base(debFile), time.Since(t0).Seconds())
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debFile
}

// debRootPackages are the packages the cached tree gets (DebRoot): the
// package's dependencies, and squashfs-tools (a recommendation) for the
// install guide's mkimage root.
func debRootPackages(t *testing.T, deb string) []string {
	t.Helper()
	pkgs, err := DebDepends(deb)
	if err != nil {
		t.Fatal(err)
	}
	return append(pkgs, "squashfs-tools")
}

// installDeb copies the cached tree into the test's temp dir and installs
// the package there with dpkg -i (no --force: the dependencies must be
// there), and returns the tree and dpkg's output.
func installDeb(t *testing.T, deb string) (root, out string) {
	t.Helper()
	tree, err := DebRoot(context.Background(), vmtestCache(), debRootPackages(t, deb), testLogWriter{})
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", tree, root).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s: %v: %s", tree, err, out)
	}
	os.Remove(filepath.Join(root, ".overboot-packages"))
	if err := copyFile(deb, filepath.Join(root, "tmp/overboot.deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = inChroot(t, root, "", "dpkg", "-i", "/tmp/overboot.deb")
	os.Remove(filepath.Join(root, "tmp/overboot.deb"))
	return root, out
}

// chrootCmd is a command run in root with chroot, as user ("" = root).
func chrootCmd(root, user string, args ...string) *exec.Cmd {
	argv := []string{root}
	if user != "" {
		argv = []string{"--userspec=" + user + ":" + user, root}
	}
	cmd := exec.Command("chroot", append(argv, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/root", "DEBIAN_FRONTEND=noninteractive"}
	return cmd
}

// inChroot runs a command in root and returns its output; it fails the
// test when the command fails.
func inChroot(t *testing.T, root, user string, args ...string) string {
	t.Helper()
	out, err := chrootCmd(root, user, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebPackage: make deb builds overboot_VERSION_amd64.deb with a
// version dpkg accepts, the files the package promises, its conffile and
// dependencies; lintian finds no error in it. Installed with dpkg -i into
// a debootstrap tree (Debian's systemd root with the package's Depends),
// the postinst makes the system user and the data directory and enables
// the unit, which systemd-analyze verifies; `overboot serve
// --check-config` run as that user passes on the shipped configuration,
// and on one with a profile whose images were built as the install guide
// says (as root, then chown). Removal keeps the configuration, purge
// removes it and the unit's enablement, and neither touches the data.
func TestDebPackage(t *testing.T) {
	t.Parallel()
	deb := needDeb(t)
	t0 := time.Now()

	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(deb), "overboot_"), "_amd64.deb")
	if out, err := exec.Command("dpkg", "--validate-version", version).CombinedOutput(); err != nil {
		t.Errorf("version %q: %v %s", version, err, out)
	}
	fields, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", filepath.Base(deb), fields)
	for _, want := range []string{"Package: overboot\n", "Version: " + version + "\n", "Architecture: amd64\n"} {
		if !strings.Contains(string(fields), want) {
			t.Errorf("control lacks %q", want)
		}
	}
	deps, err := DebDepends(deb)
	if err != nil {
		t.Fatal(err)
	}
	// What serve runs or reads at run time (mkfs.ext4, /usr/lib/ipxe),
	// what the unit runs (/bin/kill) and what the postinst runs.
	for _, want := range []string{"adduser", "e2fsprogs", "ipxe", "procps"} {
		if !slices.Contains(deps, want) {
			t.Errorf("Depends lacks %s: %q", want, deps)
		}
	}
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"./usr/bin/overboot", "./usr/lib/overboot/overboot-init", "./lib/systemd/system/overboot.service",
		"./etc/overboot/overboot.conf", "./usr/share/man/man1/overboot.1.gz", "./usr/share/man/man1/overboot-serve.1.gz",
		"./usr/share/doc/overboot/copyright", "./usr/share/doc/overboot/changelog.Debian.gz",
		"./usr/share/doc/overboot/README.md.gz", "./usr/share/doc/overboot/examples/overboot.conf",
		"./usr/share/bash-completion/completions/overboot",
	} {
		if !regexp.MustCompile(`(?m) root/root .* ` + regexp.QuoteMeta(want) + `$`).Match(list) {
			t.Errorf("the package lacks %s (or it is not root's)", want)
		}
	}
	if conf, err := exec.Command("dpkg-deb", "-I", deb, "conffiles").Output(); err != nil || string(conf) != "/etc/overboot/overboot.conf\n" {
		t.Errorf("conffiles: %q %v", conf, err)
	}

	lint := exec.Command("lintian", "--fail-on", "error", deb)
	out, err := lint.CombinedOutput()
	t.Logf("lintian:\n%s", out)
	if err != nil || regexp.MustCompile(`(?m)^E: `).Match(out) {
		t.Errorf("lintian finds errors: %v", err)
	}

	root, dpkgOut := installDeb(t, deb)
	t.Logf("dpkg -i:\n%s", dpkgOut)
	pw := strings.Split(strings.TrimSpace(inChroot(t, root, "", "getent", "passwd", "overboot")), ":")
	if len(pw) != 7 || pw[5] != "/var/lib/overboot" || pw[6] != "/usr/sbin/nologin" || len(pw[2]) > 3 {
		t.Errorf("the user overboot: %q, want a system user with home /var/lib/overboot and no shell", pw)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/overboot")); err != nil || fi.Mode().Perm() != 0o700 || len(pw) < 3 ||
		fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid) != pw[2] {
		t.Errorf("/var/lib/overboot: %v %v, want overboot's, 0700", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/overboot.service")); err != nil || l != "/lib/systemd/system/overboot.service" {
		t.Errorf("the unit is not enabled: %q %v", l, err)
	}
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/overboot.service"))
	for _, want := range []string{"\nExecStart=/usr/bin/overboot serve --config /etc/overboot/overboot.conf\n", "\nUser=overboot\n", "\nStateDirectory=overboot\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the installed unit lacks %q", strings.TrimSpace(want))
		}
	}
	if out := inChroot(t, root, "", "systemd-analyze", "verify", "/lib/systemd/system/overboot.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %s", out)
	}
	t.Logf("%s", inChroot(t, root, "", "overboot", "version"))

	// The shipped configuration, checked as the service's user.
	out = []byte(inChroot(t, root, "overboot", "overboot", "serve", "--check-config", "--config", "/etc/overboot/overboot.conf"))
	t.Logf("check-config of the shipped configuration:\n%s", out)
	if !bytes.Contains(out, []byte("ok: serve would start")) || !bytes.Contains(out, []byte("config      /etc/overboot/overboot.conf")) {
		t.Errorf("check-config did not pass")
	}

	// The install guide: images built into the data directory as root,
	// handed to the user, a profile naming them.
	kernel, _, err := FindKernel()
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(kernel, filepath.Join(root, "boot/vmlinuz-test"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "srv/tiny/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "srv/tiny/etc/hostname"), []byte("tiny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inChroot(t, root, "", "overboot", "mkimage", "initramfs", "--agent", "/usr/lib/overboot/overboot-init", "--modules", "",
		"--store", "/var/lib/overboot", "--name", "initramfs")
	inChroot(t, root, "", "overboot", "mkimage", "root", "/srv/tiny", "-q", "--store", "/var/lib/overboot", "--name", "tiny")
	conf := "[server]\ndata = /var/lib/overboot\n\n[profile default]\nkernel = /boot/vmlinuz-test\ninitramfs = initramfs\nroot = tiny\n"
	if err := os.WriteFile(filepath.Join(root, "etc/overboot/overboot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Before the chown the store is root's: the service's user cannot
	// read it, and check-config says so.
	if out, err := chrootCmd(root, "overboot", "overboot", "serve", "--check-config", "--config", "/etc/overboot/overboot.conf").CombinedOutput(); err == nil {
		t.Errorf("check-config passed on a store only root can read:\n%s", out)
	}
	inChroot(t, root, "", "chown", "-R", "overboot:overboot", "/var/lib/overboot")
	out = []byte(inChroot(t, root, "overboot", "overboot", "serve", "--check-config", "--config", "/etc/overboot/overboot.conf"))
	t.Logf("check-config with a profile:\n%s", out)
	for _, want := range []string{"initramfs  initramfs: image version 1", "root       tiny: image version 1", "ok: serve would start"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check-config output lacks %q", want)
		}
	}

	// Remove keeps the (changed) conffile, purge removes it and the
	// unit's enablement; the data and the user stay.
	inChroot(t, root, "", "dpkg", "-r", "overboot")
	for path, want := range map[string]bool{"usr/bin/overboot": false, "etc/overboot/overboot.conf": true} {
		if _, err := os.Lstat(filepath.Join(root, path)); (err == nil) != want {
			t.Errorf("after dpkg -r: /%s exists: %v, want %v", path, err == nil, want)
		}
	}
	inChroot(t, root, "", "dpkg", "-P", "overboot")
	for path, want := range map[string]bool{
		"etc/overboot": false, "etc/systemd/system/multi-user.target.wants/overboot.service": false,
		"var/lib/overboot/state.db": true,
	} {
		if _, err := os.Lstat(filepath.Join(root, path)); (err == nil) != want {
			t.Errorf("after dpkg -P: /%s exists: %v, want %v", path, err == nil, want)
		}
	}
	inChroot(t, root, "", "getent", "passwd", "overboot")
	t.Logf("checked in %.1fs", time.Since(t0).Seconds())
}

// MarkerDeb starts the line the packaged server's guest prints once
// systemd is up: "OVERBOOT-TEST-DEB state=... active=... enabled=...
// user=... reload=...".
const MarkerDeb = "OVERBOOT-TEST-DEB"

// debReport replaces the systemd root's test service: once systemd is up
// and the server has opened its sockets, it reloads overboot (the unit's
// ExecReload), reports the service on the console and follows its journal
// there; it does not power off (the test stops the machine). It waits for
// the server first because serve handles SIGHUP only from then on: a
// reload while it still copies the profiles' files into its store (7 s
// under TCG) kills it, and systemd counts a death by SIGHUP as a clean
// exit, so Restart=on-failure does not bring it back.
const debReport = `#!/bin/sh
state=$(systemctl is-system-running --wait)
i=0
until journalctl -b -u overboot -o cat | grep -q '^overboot: DHCP on' || [ $i -ge 120 ]; do sleep 1; i=$((i + 1)); done
reload=failed
systemctl reload overboot && reload=ok
sleep 2
systemctl --failed --no-legend --plain | sed 's/^/failed unit: /' > /dev/ttyS0
journalctl -b -u overboot -o cat --no-pager | sed 's/^/journal: /' > /dev/ttyS0
pid=$(systemctl show -p MainPID --value overboot)
echo "` + MarkerDeb + ` state=$state active=$(systemctl is-active overboot) enabled=$(systemctl is-enabled overboot) user=$(stat -c %U /proc/$pid 2>/dev/null) reload=$reload" > /dev/ttyS0
journalctl -u overboot -o cat --no-pager -f -n 0 | sed -u 's/^/journal: /' > /dev/ttyS0
`

// The guest's addresses on the test's LAN (NewNetNS's bridge is
// 192.0.2.1) and its NICs: the first boots it (user networking, the
// test's server through a guestfwd), the second is on the LAN.
const (
	debGuestAddr = "192.0.2.10"
	debBootMAC   = "52:54:00:0d:00:01"
	debLANMAC    = "52:54:00:0d:00:02"
)

// TestDebSystemdService boots Debian's systemd root with the package
// installed by dpkg (the unit enabled by its postinst, nothing else done
// to start it) and a configuration serving a profile, as a QEMU machine
// with a second NIC on a LAN of the test's own. systemd starts overboot
// as the user overboot in the unit's sandbox; `systemctl reload` works;
// and from the LAN the server inside answers: /boot.ipxe and a machine's
// script over HTTP, a DHCP answer (full mode: an address from its range
// and the boot URL), undionly.kpxe over TFTP (Debian's ipxe package), and
// the driver segment of a NIC the base initramfs lacks (rtl8139's 8139cp
// and 8139too, built from the guest's /lib/modules). The machine itself
// boots from the test's in-process server: a network-booted overboot
// server, which is also a use.
func TestDebSystemdService(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	deb := needDeb(t)
	for _, m := range []string{"8139cp", "8139too"} {
		if slices.Contains(initramfs.DefaultModules, m) {
			t.Fatalf("%s is in the base initramfs (DefaultModules): the segment would be empty; choose another NIC", m)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	root, _ := installDeb(t, deb)

	// What the guest's server serves: the test kernel and initramfs, a
	// tiny root, and of its kernel's modules the driver's (with
	// modules.dep, .alias, .builtin: what server/drivers reads).
	srv := filepath.Join(root, "srv/overboot")
	if err := os.MkdirAll(filepath.Join(dir, "tiny/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tiny/etc/hostname"), []byte("tiny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(srv, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := mkimage.BuildRoot(ctx, filepath.Join(srv, "root.squashfs"), mkimage.RootOptions{Source: filepath.Join(dir, "tiny")}); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{a.Kernel: "vmlinuz", a.Initramfs: "initramfs.img"} {
		if err := copyFile(src, filepath.Join(srv, dst), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mt, err := initramfs.OpenModuleTree("", a.Release)
	if err != nil {
		t.Fatal(err)
	}
	files, err := mt.LoadOrder([]string{"8139cp", "8139too"})
	if err != nil {
		t.Fatal(err)
	}
	// Not modules.devname: with it kmod-static-nodes.service would run
	// kmod, which this root has not.
	files = append(files, "modules.dep", "modules.alias", "modules.builtin")
	for _, f := range files {
		dst := filepath.Join(root, "lib/modules", a.Release, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(filepath.Join(mt.Dir, f), dst, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The administrator's part: the configuration, a static address on
	// the LAN NIC (named lan0 by its MAC) with systemd-networkd, and the
	// report in place of the systemd root's.
	guestConf := fmt.Sprintf(`[server]
listen = 0.0.0.0:80
url = http://%[1]s
data = /var/lib/overboot
tftp = %[1]s:69
dhcp = lan0
dhcp-range = 192.0.2.100-192.0.2.109
dhcp-router = %[1]s

[profile default]
kernel = /srv/overboot/vmlinuz
initramfs = /srv/overboot/initramfs.img
root = /srv/overboot/root.squashfs
cmdline = console=ttyS0
`, debGuestAddr)
	for path, f := range map[string]struct {
		data string
		mode os.FileMode
	}{
		"etc/overboot/overboot.conf":                       {guestConf, 0o644},
		"etc/systemd/network/10-overboot-test-lan.link":    {"[Match]\nMACAddress=" + debLANMAC + "\n\n[Link]\nNamePolicy=\nName=lan0\n", 0o644},
		"etc/systemd/network/20-overboot-test-lan.network": {"[Match]\nName=lan0\n\n[Network]\nAddress=" + debGuestAddr + "/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n", 0o644},
		"usr/local/sbin/overboot-test":                     {debReport, 0o755},
	} {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	inChroot(t, root, "", "systemctl", "enable", "systemd-networkd.service")

	// A quicker image: no translations, and zstd's level 3 (not 15).
	for _, d := range []string{"usr/share/locale", "usr/share/man"} {
		if err := os.RemoveAll(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	img := filepath.Join(dir, "deb.squashfs")
	res, err := mkimage.BuildRoot(ctx, img, mkimage.RootOptions{Source: root, Compression: "zstd", Level: 3})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(root)
	t.Logf("image %d bytes in %.1fs", res.Size, time.Since(t0).Seconds())

	// The LAN, and the test's server the machine boots from, inside the
	// namespace (QEMU runs there: its guestfwd relay reaches the
	// namespace's loopback).
	ns := NewNetNS(t)
	conf := fmt.Sprintf("[server]\nurl = http://%s\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		GuestServer, a.Kernel, a.Initramfs, img)
	s := configServer(t, conf, filepath.Join(dir, "data"))
	ln := ns.Listen(t, "127.0.0.1:0")
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	client := nsHTTPClient(ns)
	resp, err := client.Get("http://" + ln.Addr().String() + "/ipxe?mac=" + strings.ReplaceAll(debBootMAC, ":", "-"))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`initrd=overboot-initrd0 (.*) \|\| goto`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no kernel arguments in the script:\n%s", script)
	}

	tap := ns.Tap(t)
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MAC: debBootMAC, MemoryMB: 1536, CPUs: 2,
		Append:   directCmdline(string(m[1]), "overboot.iface=eth0"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: ln.Addr().String()}},
		NetNS:    ns.Name,
		Extra: []string{"-netdev", "tap,id=lan,ifname=" + tap + ",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=lan,mac=" + debLANMAC + ",romfile="},
	})
	l, i, err := vm.ExpectAny(2*bootTimeout, MarkerDeb, "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("the guest did not report: %v %s", err, l.Text)
	}
	t.Logf("%s", l)
	f := regexp.MustCompile(MarkerDeb + ` state=(\S+) active=(\S+) enabled=(\S+) user=(\S*) reload=(\S+)`).FindStringSubmatch(l.Text)
	switch {
	case f == nil:
		t.Fatalf("unreadable report %q", l.Text)
	case f[1] != "running" && f[1] != "degraded":
		t.Errorf("systemd state %s", f[1])
	case f[2] != "active" || f[3] != "enabled":
		t.Errorf("overboot.service is %s, %s: want active, enabled", f[2], f[3])
	case f[4] != "overboot":
		t.Errorf("the server runs as %q, not overboot", f[4])
	case f[5] != "ok":
		t.Errorf("systemctl reload overboot: %s", f[5])
	}
	guest := "http://" + debGuestAddr

	// HTTP: the bootstrap script, and a machine's script with the driver
	// segment of the NIC its query names.
	body := func(url string) []byte {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
		}
		return b
	}
	if b := body(guest + "/boot.ipxe"); !bytes.HasPrefix(b, []byte("#!ipxe\n")) || !bytes.Contains(b, []byte("imgfetch --name overboot-script "+guest+"/ipxe?mac=")) {
		t.Errorf("/boot.ipxe from the guest:\n%s", b)
	}
	script = body(guest + "/ipxe?mac=52-54-00-0d-00-03&buildarch=x86_64&platform=pcbios&pcivendor=10ec&pcidevice=8139")
	seg := regexp.MustCompile(`initrd --name overboot-initrd1 (` + regexp.QuoteMeta(guest) + `/blobs/sha256/[0-9a-f]{64}) `).FindSubmatch(script)
	if seg == nil || !bytes.Contains(script, []byte("kernel --name overboot-kernel "+guest+"/blobs/sha256/")) {
		t.Fatalf("the guest's script for an rtl8139 machine has no driver segment:\n%s", script)
	}
	archives, err := initramfs.List(bytes.NewReader(body(string(seg[1]))))
	if err != nil {
		t.Fatalf("the driver segment: %v", err)
	}
	var names []string
	for _, ar := range archives {
		for _, e := range ar.Entries {
			names = append(names, e.Name)
		}
	}
	for _, want := range []string{"8139cp.ko", "8139too.ko", "mii.ko"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, "/"+want) }) {
			t.Errorf("the driver segment lacks %s: %q", want, names)
		}
	}

	// DHCP on the LAN, as iPXE on a BIOS machine asks.
	var dc *nclient4.Client
	if err := ns.Do(func() (err error) {
		dc, err = nclient4.New(ns.Bridge, nclient4.WithTimeout(5*time.Second), nclient4.WithRetry(5))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lease, err := dc.Request(dctx,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
	if err != nil {
		t.Fatalf("DHCP on the LAN: %v", err)
	}
	ack := lease.ACK
	t.Logf("DHCP: %s", ack.Summary())
	if ip := ack.YourIPAddr.To4(); ip == nil || !bytes.Equal(ip[:3], []byte{192, 0, 2}) || ip[3] < 100 || ip[3] > 109 ||
		!ack.ServerIdentifier().Equal(net.ParseIP(debGuestAddr)) || ack.BootFileName != guest+"/boot.ipxe" {
		t.Errorf("the DHCP answer: address %v from %v, boot file %q; want one of 192.0.2.100-109 from %s, %s/boot.ipxe",
			ack.YourIPAddr, ack.ServerIdentifier(), ack.BootFileName, debGuestAddr, guest)
	}

	// TFTP: Debian's undionly.kpxe, copied from /usr/lib/ipxe at start.
	var kpxe bytes.Buffer
	if err := ns.Do(func() error {
		_, err := (&tftp.Client{BlockSize: 1456}).Get(ctx, debGuestAddr+":69", "undionly.kpxe", &kpxe)
		return err
	}); err != nil || kpxe.Len() < 1000 {
		t.Errorf("TFTP undionly.kpxe from the guest: %d bytes, %v", kpxe.Len(), err)
	}
	// What the server said in its journal (stdout: the services it
	// opened, the reload).
	for _, want := range []string{
		"journal: overboot: serving on http://", // [::]:80 or 0.0.0.0:80
		"journal: overboot: TFTP on " + debGuestAddr + ":69 (files of /usr/lib/ipxe)",
		"journal: overboot: DHCP on lan0 (" + debGuestAddr + "/24), addresses 192.0.2.100-192.0.2.109",
		"journal: overboot: reloaded /etc/overboot/overboot.conf (1 profiles, 0 machines)",
	} {
		if !vm.Contains(want) {
			t.Errorf("the console lacks %q", want)
		}
	}
}

// nsHTTPClient is an HTTP client whose connections are made inside ns.
func nsHTTPClient(ns *NetNS) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}},
	}
}
