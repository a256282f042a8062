package main

import (
	"bytes"
	"regexp"

	"context"
	"github.com/overboot/overboot/server/tftp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
