package main

import (
	"context"
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
	go func() { done <- runServe(ctx, []string{"-config", conf}, out, out) }()
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
