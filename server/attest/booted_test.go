package attest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
)

// TestCheckBooted: GRUB's log as Debian's GRUB 2.06 wrote it in the
// vmtest TestLANAttested (linux command, kernel, kernel_cmdline, initrd
// command, initrd, boot), and what an attacker on the path could make
// of it while keeping every served file among PCR 9's measurements.
func TestCheckBooted(t *testing.T) {
	sum := func(b string) []byte { h := sha256.Sum256([]byte(b)); return h[:] }
	dig := func(b string) boot.Digest { d, _ := boot.ParseDigest(fmt.Sprintf("sha256:%x", sum(b))); return d }
	file := func(name, content string) attest.Event {
		return attest.Event{Index: 9, Type: evIPL, Data: []byte(name + "\x00"), Digest: sum(content)}
	}
	str := func(prefix, s string) attest.Event {
		return attest.Event{Index: 8, Type: evIPL, Data: []byte(prefix + s + "\x00"), Digest: sum(s)}
	}
	const cmdline = "/blobs/k console=ttyS0"
	served := Served{Kernel: dig("kernel"), Initrds: []boot.Digest{dig("initramfs")}, Cmdline: cmdline}
	linux := []attest.Event{str("grub_cmd: ", "linux "+cmdline), file("/blobs/k", "kernel"), str("kernel_cmdline: ", cmdline)}
	boot := []attest.Event{str("grub_cmd: ", "echo booting"), str("grub_cmd: ", "boot")}
	seq := func(parts ...[]attest.Event) []attest.Event {
		var out []attest.Event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	initrd := func(names ...string) []attest.Event {
		cmd := "initrd"
		var files []attest.Event
		for _, n := range names {
			cmd += " /" + n
			files = append(files, file("/"+n, n))
		}
		return append([]attest.Event{str("grub_cmd: ", cmd)}, files...)
	}
	if err := checkGRUB(seq(linux, initrd("initramfs"), boot), served); err != nil {
		t.Fatalf("what was served: %v", err)
	}
	evil := []attest.Event{str("grub_cmd: ", "linux /evil "+cmdline), file("/evil", "evil kernel"), str("kernel_cmdline: ", cmdline)}
	for _, tc := range []struct {
		name string
		ev   []attest.Event
		want error
	}{
		{"an extra initrd", seq(linux, initrd("initramfs", "evil.cpio"), boot), ErrExtraFile},
		{"a second initrd command", seq(linux, initrd("initramfs"), initrd("evil.cpio"), boot), ErrExtraFile},
		{"a config read after the kernel", seq(linux, initrd("initramfs"), []attest.Event{str("grub_cmd: ", "source /evil.cfg"), file("/evil.cfg", "evil")}, boot), ErrExtraFile},
		// Anything read after the served kernel that was not served is
		// refused as soon as it shows (checkGRUB's first rule).
		{"the served kernel, then another", seq(linux, evil, initrd("initramfs"), boot), ErrExtraFile},
		// Only served files, but the initramfs booted as the kernel:
		// what GRUB booted is the last file before the last command line.
		{"the initramfs booted as the kernel", seq(linux, initrd("initramfs"), []attest.Event{str("grub_cmd: ", "linux /initramfs "+cmdline), file("/initramfs", "initramfs"), str("kernel_cmdline: ", cmdline)}, boot), ErrKernel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkGRUB(tc.ev, served); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Another kernel first, the served one last: the served one boots.
	if err := checkGRUB(seq(evil, linux, initrd("initramfs"), boot), served); err != nil {
		t.Errorf("the served kernel loaded last: %v", err)
	}
}

// TestRefusalHidesTokens: a changed command line's refusal names both
// command lines without the attest token (it goes to the log and the
// status page).
func TestRefusalHidesTokens(t *testing.T) {
	tok := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	served := "/blobs/k console=ttyS0 overboot.attest=http://10.0.2.100/attest/" + tok
	err := checkCmdlines([]string{served + " init=/bin/sh"}, served)
	if !errors.Is(err, ErrCmdline) || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "/attest/… init=/bin/sh") {
		t.Errorf("refusal %v", err)
	}
}

// TestCheckLoaders: PCR 4's EFI applications are the served shim and
// GRUB (and the kernel, when started by LoadImage); another application,
// or a served loader missing, is refused; a boot served without loader
// hashes (an older server) is not checked by content.
func TestCheckLoaders(t *testing.T) {
	h := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	hx := func(s string) string { return fmt.Sprintf("%x", h(s)) }
	app := func(s string) attest.Event { return attest.Event{Index: 4, Type: evEFIBootApp, Digest: h(s)} }
	action := attest.Event{Index: 4, Type: 0x80000007, Digest: h("Calling EFI Application from Boot Option")}
	served := Served{Loaders: []string{hx("shim"), hx("grub")}, KernelPE: hx("kernel")}
	for _, tc := range []struct {
		name string
		ev   []attest.Event
		want error
	}{
		{"shim and GRUB", []attest.Event{action, app("shim"), app("grub")}, nil},
		{"and the kernel", []attest.Event{action, app("shim"), app("grub"), app("kernel")}, nil},
		{"an older GRUB", []attest.Event{action, app("shim"), app("old grub")}, ErrLoader},
		{"another application first", []attest.Event{app("an EFI shell"), app("shim"), app("grub")}, ErrLoader},
		{"GRUB missing", []attest.Event{action, app("shim")}, ErrLoaderGone},
	} {
		if err := checkLoaders(tc.ev, served); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := checkLoaders([]attest.Event{app("anything")}, Served{}); err != nil {
		t.Errorf("no loaders served (an older server's session): %v", err)
	}
}
