package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server/config"
)

// publicTempDir is a t.TempDir every user may enter. t.TempDir makes its
// directory under a 0700 one of its own: both are opened up (0755), and
// every directory above them must already be (/tmp is 1777, / 0755). If
// one is not (a TMPDIR in a private home), the test cannot say anything:
// a missing need (testneed), naming it.
func publicTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := filepath.Dir(filepath.Dir(dir)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o001 == 0 {
			testneed.Missing(t, "needs a TMPDIR every user may enter: %s (above the test's directory) is mode %v; set TMPDIR elsewhere", d, fi.Mode().Perm())
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return dir
}

// TestPrepareTFTPReadableOnly: from tftp-root, only files any user could
// read are copied: a 0644 file, a symlink to a 0644 file in a 0755
// directory (as Debian's ipxe.efi is) or in a 0711 one. Not a 0640 file, a symlink to a 0600
// file, to a 0644 file in a 0700 directory, to /etc/shadow, to nothing, a
// FIFO; each of those is one warning naming it and why. A subdirectory is
// skipped quietly; what is no longer served is removed from DATA/tftp.
func TestPrepareTFTPReadableOnly(t *testing.T) {
	dir := publicTempDir(t)
	src, pub, priv, dst := filepath.Join(dir, "ipxe"), filepath.Join(dir, "pub"), filepath.Join(dir, "priv"), filepath.Join(dir, "data", TFTPDir)
	unlisted := filepath.Join(dir, "unlisted") // 0711: others may enter, not list
	for d, mode := range map[string]os.FileMode{src: 0o755, pub: 0o755, priv: 0o700, unlisted: 0o711, filepath.Join(src, "qemu"): 0o755} {
		os.Mkdir(d, mode)
		os.Chmod(d, mode) // whatever the umask
	}
	write := func(p, body string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "undionly.kpxe"), "BIOS iPXE", 0o644)
	write(filepath.Join(src, "private.bin"), "group only", 0o640)
	write(filepath.Join(pub, "ipxe.efi"), "EFI iPXE", 0o644)
	link(filepath.Join(pub, "ipxe.efi"), "ipxe.efi")
	write(filepath.Join(unlisted, "snponly.efi"), "SNP iPXE", 0o644)
	link(filepath.Join(unlisted, "snponly.efi"), "snponly.efi")
	write(filepath.Join(pub, "secret"), "owner only", 0o600)
	link(filepath.Join(pub, "secret"), "secret.efi")
	write(filepath.Join(priv, "inner.efi"), "in a private directory", 0o644)
	link("../priv/inner.efi", "inner.efi") // relative, as well
	link(filepath.Join(dir, "nothing"), "dangling.efi")
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	skipped := []string{"private.bin", "secret.efi", "inner.efi", "dangling.efi", "fifo"}
	if fi, err := os.Stat("/etc/shadow"); err == nil && fi.Mode()&0o004 == 0 {
		link("/etc/shadow", "shadow")
		skipped = append(skipped, "shadow")
	}
	// Served before: removed now that it is not.
	os.MkdirAll(dst, 0o755)
	write(filepath.Join(dst, "secret.efi"), "copied by an older version", 0o644)

	logs := &syncBuffer{}
	n, err := prepareTFTP(src, dst, nil, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dst)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	if n != 3 || fmt.Sprint(got) != "[ipxe.efi snponly.efi undionly.kpxe]" {
		t.Errorf("copied %d: %v, want ipxe.efi, snponly.efi and undionly.kpxe", n, got)
	}
	for name, want := range map[string]string{"undionly.kpxe": "BIOS iPXE", "ipxe.efi": "EFI iPXE", "snponly.efi": "SNP iPXE"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	out := logs.String()
	if c := strings.Count(out, "level=WARN"); c != len(skipped) {
		t.Errorf("%d warnings, want one for each of %v:\n%s", c, skipped, out)
	}
	for _, name := range skipped {
		if c := strings.Count(out, "tftp-root: skipping "+filepath.Join(src, name)+":"); c != 1 {
			t.Errorf("%d warnings for %s, want 1:\n%s", c, name, out)
		}
	}
	for _, want := range []string{
		"tftp-root: skipping " + filepath.Join(src, "secret.efi") + ": it points to " + filepath.Join(pub, "secret") + ", which not every user may read",
		"tftp-root: skipping " + filepath.Join(src, "inner.efi") + ": it points to " + filepath.Join(priv, "inner.efi") + ", which not every user may read",
		"directory " + priv + " is mode 0700",
		"tftp-root: skipping " + filepath.Join(src, "private.bin") + ": not every user may read it",
		"is mode 0640",
		"is not a regular file",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the log:\n%s", want, out)
		}
	}
	if strings.Contains(out, "qemu") {
		t.Errorf("a subdirectory was warned about:\n%s", out)
	}
}

// TestPrepareTFTPSecureBoot: a secure-boot profile's signed shim and
// GRUB are copied beside the iPXE binaries under the names shim and the
// firmware ask for, byte for byte; a missing one, or one not every user
// may read, is an error naming its [server] key; without a secure-boot
// profile nothing more is copied.
func TestPrepareTFTPSecureBoot(t *testing.T) {
	dir := publicTempDir(t)
	src, dst := filepath.Join(dir, "ipxe"), filepath.Join(dir, "data", TFTPDir)
	os.Mkdir(src, 0o755)
	for p, body := range map[string]string{filepath.Join(src, "ipxe.efi"): "EFI iPXE", filepath.Join(dir, "shimx64.efi.signed"): "signed shim", filepath.Join(dir, "grubnetx64.efi.signed"): "signed GRUB", filepath.Join(dir, "mmx64.efi.signed"): "signed MokManager"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Shim, cfg.GRUBNet, cfg.MokManager = filepath.Join(dir, "shimx64.efi.signed"), filepath.Join(dir, "grubnetx64.efi.signed"), filepath.Join(dir, "mmx64.efi.signed")
	cfg.Profiles["sb"] = &config.Profile{Name: "sb", SecureBoot: true}
	cfg.URL = "http://192.0.2.1:8080"
	log := slog.New(slog.NewTextHandler(&syncBuffer{}, nil))
	n, err := prepareTFTP(src, dst, secureBootFiles(cfg), log)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"ipxe.efi": "EFI iPXE", ShimFile: "signed shim", GRUBFile: "signed GRUB", MokManagerFile: "signed MokManager"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	if n != 5 {
		t.Errorf("%d files served, want 5", n)
	}
	// GRUB's prefix is /grub: its grub.cfg asks the server at url.
	if b, err := os.ReadFile(filepath.Join(dst, "grub", "grub.cfg")); err != nil || !strings.Contains(string(b), "configfile '/grub'\"?mac=${net_default_mac}") {
		t.Errorf("grub/grub.cfg: %s %v", b, err)
	}

	// mok-manager = none: not served.
	cfg.MokManager = ""
	if n, err := prepareTFTP(src, dst, secureBootFiles(cfg), log); err != nil || n != 4 {
		t.Errorf("mok-manager none: %d files, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dst, MokManagerFile)); err == nil {
		t.Error("mok-manager none, and mmx64.efi is still served")
	}

	os.Chmod(cfg.GRUBNet, 0o600)
	if _, err := prepareTFTP(src, dst, secureBootFiles(cfg), log); err == nil || !strings.Contains(err.Error(), "grub-net "+cfg.GRUBNet) || !strings.Contains(err.Error(), "not every user may read") {
		t.Errorf("a private grub-net: %v", err)
	}
	cfg.Shim = filepath.Join(dir, "missing.efi")
	if _, err := prepareTFTP(src, dst, secureBootFiles(cfg), log); err == nil || !strings.Contains(err.Error(), "shim "+cfg.Shim) {
		t.Errorf("a missing shim: %v", err)
	}

	delete(cfg.Profiles, "sb")
	if _, err := prepareTFTP(src, dst, secureBootFiles(cfg), log); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ShimFile, GRUBFile, "grub"} {
		if _, err := os.Stat(filepath.Join(dst, name)); err == nil {
			t.Errorf("no secure-boot profile, and %s is still served", name)
		}
	}
}
