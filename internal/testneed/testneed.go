// Package testneed says what a test needs from the machine it runs on: a
// tool, a kernel module, a file, root, or the QEMU tier. Each need is one
// call at the top of the test:
//
//	testneed.Root(t, "loop mounts")
//	mksquashfs := testneed.Tool(t, "mksquashfs")
//	testneed.Module(t, "dm_verity")
//
// What is missing skips the test, naming what to install (the Debian
// package). With OVERBOOT_STRICT=1, which make unit, make vmtest and make
// test set, it fails the test instead: make deps has installed everything,
// so a need still missing is a broken machine or a broken Makefile, and a
// skip would hide a test that never ran.
//
// The QEMU tier is a choice, not a need: VM skips a test unless
// OVERBOOT_VMTEST=1 (make vmtest), strict or not, with a message that
// starts with LeftToVM, which the test summary (internal/testsummary)
// counts apart from the skips.
package testneed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The environment variables: StrictEnv=1 makes a missing need a failure;
// VMEnv=1 runs the QEMU tier.
const (
	StrictEnv = "OVERBOOT_STRICT"
	VMEnv     = "OVERBOOT_VMTEST"
)

// LeftToVM starts the message of a test VM skipped: it runs in the QEMU
// tier (make vmtest), so it is not counted as skipped.
const LeftToVM = "left to the QEMU tier"

// Strict reports whether a missing need fails the test (OVERBOOT_STRICT=1).
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// VMTier reports whether the QEMU tier runs (OVERBOOT_VMTEST=1).
func VMTier() bool { return os.Getenv(VMEnv) == "1" }

// Missing ends the test for a need the machine lacks, what saying which
// and what to install: a failure when Strict, else a skip.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s (%s=1: a missing need fails the test)", msg, StrictEnv)
	}
	t.Skipf("%s (a failure with %s=1, as under make test)", msg, StrictEnv)
}

// Root needs the test to run as root; why says what for.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (%s): run as root, as make test does in CI", why)
	}
}

// packages maps the tools Tool knows to the Debian package that has them.
// A tool missing here is a mistake in the test: add it.
var packages = map[string]string{
	"busybox":              "busybox-static",
	"chromium":             "chromium",
	"debootstrap":          "debootstrap",
	"grub-script-check":    "grub-common",
	"dnsmasq":              "dnsmasq-base",
	"ip":                   "iproute2",
	"iscsi-inq":            "libiscsi-bin",
	"iscsi-ls":             "libiscsi-bin",
	"iscsi-perf":           "libiscsi-bin",
	"iscsi-readcapacity16": "libiscsi-bin",
	"iscsi-swp":            "libiscsi-bin",
	"iscsi-test-cu":        "libiscsi-bin",
	"mkfs.ext4":            "e2fsprogs",
	"mksquashfs":           "squashfs-tools",
	"modprobe":             "kmod",
	"nginx":                "nginx",
	"osslsigncode":         "osslsigncode",
	"perfdhcp":             "kea-admin",
	"qemu-system-x86_64":   "qemu-system-x86",
	"swtpm":                "swtpm",
	"systemd-analyze":      "systemd",
	"tftp":                 "tftp-hpa",
	"tpm2_createek":        "tpm2-tools",
	"tpm2_readpublic":      "tpm2-tools",
	"tgtadm":               "tgt",
	"tgtd":                 "tgt",
	"unsquashfs":           "squashfs-tools",
	"veritysetup":          "cryptsetup-bin",
	"zstd":                 "zstd",
}

// sbin is where root's tools are, for a PATH without them.
var sbin = []string{"/usr/sbin", "/sbin"}

// Tool needs the program name (looked up in PATH, then in /usr/sbin and
// /sbin) and returns its path.
func Tool(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := packages[name]
	if !ok {
		t.Fatalf("testneed.Tool(%q): no Debian package known for it: add it to testneed's packages", name)
	}
	if p, err := lookTool(name); err == nil {
		return p
	}
	Missing(t, "needs %s: apt-get install %s (make deps does)", name, pkg)
	return ""
}

func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, d := range sbin {
		if q, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return q, nil
		}
	}
	return "", err
}

// File needs path (a file or a directory) to exist; pkg is the Debian
// package that has it.
func File(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "needs %s (%v): apt-get install %s (make deps does)", path, err, pkg)
	}
}

// Glob needs at least one file to match pattern and returns the matches,
// sorted; pkg is the Debian package that has them.
func Glob(t testing.TB, pattern, pkg string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatalf("testneed.Glob(%q): %v", pattern, err)
	}
	if len(m) == 0 {
		Missing(t, "needs a file matching %s: apt-get install %s (make deps does)", pattern, pkg)
	}
	return m
}

// Module needs the kernel modules loaded (or built in), loading them with
// modprobe when the test runs as root. Names may use - or _.
func Module(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := LoadModule(name); err != nil {
			Missing(t, "needs kernel module %s: %v", name, err)
		}
	}
}

// ErrNoModule: the running kernel cannot have the module (it is neither
// built in nor loadable), or it cannot be loaded from here.
var ErrNoModule = errors.New("module not available")

// LoadModule makes sure the running kernel has the module: loaded or built
// in, or loaded now with modprobe when root. Its error says why not and
// what to do.
func LoadModule(name string) error {
	name = strings.ReplaceAll(name, "-", "_")
	if loaded(name) {
		return nil
	}
	rel := release()
	if builtin(rel, name) {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: %s is not loaded, and only root may load it (modprobe %s)", ErrNoModule, name, name)
	}
	modprobe, err := lookTool("modprobe")
	if err != nil {
		return fmt.Errorf("%w: %s is not loaded, and there is no modprobe to load it: apt-get install kmod", ErrNoModule, name)
	}
	out, err := exec.Command(modprobe, name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: modprobe %s: %v: %s (this kernel is %s; Debian's kernel and its modules: apt-get install linux-image-amd64)",
			ErrNoModule, name, err, bytes.TrimSpace(out), rel)
	}
	if !loaded(name) {
		return fmt.Errorf("%w: modprobe %s succeeded, and /sys/module/%[2]s is still missing", ErrNoModule, name)
	}
	return nil
}

// loaded: /sys/module/NAME is there for a loaded module (and for a
// built-in one with parameters).
func loaded(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/module", name))
	return err == nil
}

func builtin(rel, name string) bool {
	b, err := os.ReadFile(filepath.Join("/lib/modules", rel, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		base := strings.TrimSuffix(filepath.Base(strings.TrimSpace(l)), ".ko")
		if strings.ReplaceAll(base, "-", "_") == name {
			return true
		}
	}
	return false
}

// release is the running kernel's release (uname -r).
func release() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// VM runs the test only in the QEMU tier (OVERBOOT_VMTEST=1, as make
// vmtest and make test set); elsewhere it is skipped with a message
// starting with LeftToVM. It is the tier, not a need: strict or not, the
// unit tier skips it.
func VM(t testing.TB) {
	t.Helper()
	if !VMTier() {
		t.Skipf("%s: boots QEMU; set %s=1 to run it (make vmtest and make test do)", LeftToVM, VMEnv)
	}
}
