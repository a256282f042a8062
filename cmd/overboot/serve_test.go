package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/tftp"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls out until it holds want (a generous bound: no timing
// assertion, only a hang guard).
func waitFor(t *testing.T, out *lockedBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(out.String(), want) {
			return
		}
	}
	t.Fatalf("no %q in:\n%s", want, out.String())
}

// TestServeReloadOnHUP: SIGHUP reloads the configuration; a bad one is
// refused with FILE:LINE and the running one stays; SIGTERM's context
// ends the server cleanly.
func TestServeReloadOnHUP(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("K"), 0o644)
	conf := filepath.Join(dir, "overboot.conf")
	base := "[server]\nlisten = 127.0.0.1:0\ndata = " + dir + "/data\n[profile default]\nkernel = " + k + "\ninitramfs = " + k + "\nroot = " + k + "\n"
	os.WriteFile(conf, []byte(base), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", conf}, strings.NewReader(""), out, out) }()
	waitFor(t, out, "serving on http://127.0.0.1:")

	os.WriteFile(conf, []byte(base+"upper = floppy\n"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, out, "reload of "+conf+" refused")
	if !strings.Contains(out.String(), conf+":8: upper:") {
		t.Errorf("the refusal does not name FILE:LINE:\n%s", out.String())
	}
	os.WriteFile(conf, []byte(base+"[profile two]\nkernel = "+k+"\ninitramfs = "+k+"\nroot = "+k+"\n"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, out, "reloaded "+conf+" (2 profiles")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// TestServeTFTP: serve answers TFTP with the files of tftp-root, a
// symlinked one included (as Debian's ipxe.efi is), and nothing else: not
// a symlink to a file not every user may read.
func TestServeTFTP(t *testing.T) {
	dir := t.TempDir()
	// Only what every user may read is served: t.TempDir's own parent is
	// 0700 (/tmp above it is 1777).
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("K"), 0o644)
	root := filepath.Join(dir, "ipxe")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), []byte("BIOS iPXE"), 0o644)
	os.WriteFile(filepath.Join(dir, "real.efi"), []byte("EFI iPXE"), 0o644)
	os.Symlink(filepath.Join(dir, "real.efi"), filepath.Join(root, "ipxe.efi"))
	os.WriteFile(filepath.Join(dir, "secret"), []byte("owner only"), 0o600)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "secret.efi"))
	conf := filepath.Join(dir, "overboot.conf")
	os.WriteFile(conf, []byte("[server]\nlisten = 127.0.0.1:0\ndata = "+dir+"/data\ntftp = 127.0.0.1:0\ntftp-root = "+root+"\n[profile default]\nkernel = "+k+"\ninitramfs = "+k+"\nroot = "+k+"\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", conf}, strings.NewReader(""), out, out) }()
	waitFor(t, out, "TFTP on 127.0.0.1:")
	addr := regexp.MustCompile(`TFTP on (127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String())[1]
	for name, want := range map[string]string{"undionly.kpxe": "BIOS iPXE", "ipxe.efi": "EFI iPXE"} {
		var b bytes.Buffer
		if _, err := (&tftp.Client{}).Get(ctx, addr, name, &b); err != nil || b.String() != want {
			t.Errorf("%s: %q %v", name, b.String(), err)
		}
	}
	var b bytes.Buffer
	if _, err := (&tftp.Client{}).Get(ctx, addr, "../overboot.conf", &b); err == nil {
		t.Error("a file outside the TFTP root was served")
	}
	if _, err := (&tftp.Client{}).Get(ctx, addr, "secret.efi", &b); err == nil {
		t.Errorf("a symlink to a 0600 file was served: %q", b.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestServeCheckConfig: serve --check-config resolves the profiles against
// the data directory while a server holds it (no lock taken), prints what
// would be served, and fails with serve's FILE:LINE errors; it creates
// nothing, not even a missing data directory.
func TestServeCheckConfig(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("K"), 0o644)
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	out, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--store", data, "--name", "initrd")
	if err != nil {
		t.Fatalf("mkimage: %v", err)
	}
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(out)
	conf := filepath.Join(dir, "overboot.conf")
	good := "[server]\nlisten = 127.0.0.1:8099\ndata = " + data + "\n" +
		"[profile default]\nkernel = " + k + "\ninitramfs = initrd\nroot = " + digest + "\n" +
		"[profile lab]\nkernel = " + k + "\ninitramfs = initrd\nroot = " + k + "\nupper = iscsi\nenroll = approve\n"
	os.WriteFile(conf, []byte(good), 0o644)

	// A server holds the data directory: the check runs beside it.
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out, err = cli(t, "", "serve", "--config", conf, "--check-config")
	if err != nil {
		t.Fatalf("check of a good configuration: %v\n%s", err, out)
	}
	for _, want := range []string{
		"listen      http://127.0.0.1:8099",
		"iscsi       127.0.0.1:3260 (for lab",
		"tftp        off", "proxy-dhcp  off", "dhcp        off", "dhcpv6      off",
		"profile default (" + conf + ":4): enroll open",
		"  initramfs  initrd: image version 1, " + digest,
		"  root       " + digest + ": blob,",
		"profile lab (" + conf + ":8): enroll approve, upper iscsi",
		"  kernel     " + k + ": file, 1 bytes",
		"ok: serve would start",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	// --listen overrides the file's, as for serve.
	if out, err := cli(t, "", "serve", "--config", conf, "--check-config", "--listen", "127.0.0.1:9"); err != nil || !strings.Contains(out, "http://127.0.0.1:9 ") {
		t.Errorf("--listen: %v\n%s", err, out)
	}

	// Profiles that do not resolve: serve's errors, FILE:LINE first.
	os.WriteFile(conf, []byte(good+"[profile bad]\nkernel = nope\ninitramfs = initrd\nroot = "+dir+"/missing\n"), 0o644)
	_, err = cli(t, "", "serve", "--config", conf, "--check-config")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("bad profile: %v", err)
	}
	if want := conf + ":14: profile bad: root " + dir + "/missing: open"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), conf+":14: profile bad: kernel nope: no image of that name") {
		t.Errorf("bad profile: %v, want %q first", err, want)
	}
	// A file that does not parse: the parser's FILE:LINE, as serve says it.
	os.WriteFile(conf, []byte(good+"lower-mode = floppy\n"), 0o644)
	_, want := config.Load(conf)
	if _, err := cli(t, "", "serve", "--config", conf, "--check-config"); err == nil || err.Error() != want.Error() || !strings.Contains(err.Error(), conf+":14: lower-mode") {
		t.Errorf("parse error: %v, want %v", err, want)
	}

	// No data directory yet: file references still check, and nothing
	// is created.
	other := filepath.Join(dir, "nodata")
	os.WriteFile(conf, []byte("[server]\ndata = "+other+"\n[profile default]\nkernel = "+k+"\ninitramfs = "+k+"\nroot = "+k+"\n"), 0o644)
	if out, err := cli(t, "", "serve", "--config", conf, "--check-config"); err != nil || !strings.Contains(out, "does not exist yet") {
		t.Errorf("no data directory: %v\n%s", err, out)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("the check created %s", other)
	}
}
