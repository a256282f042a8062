package vmtest

import (
	"bytes"
	"context"
	"fmt"
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
)

// The Debian package (make deb, dist/deb): TestDebPackage checks the
// package and installs it with dpkg into a debootstrap tree.

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
	if os.Getenv("OVERBOOT_VMTEST") != "1" {
		t.Skip("package test: set OVERBOOT_VMTEST=1 (make vmtest and make test do)")
	}
	if os.Getuid() != 0 {
		t.Fatal("the package tests need root: chroot, dpkg and apt-get in a debootstrap tree (CI runs as root)")
	}
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
