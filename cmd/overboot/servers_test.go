package main

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
)

// TestServerLs: a server registers in the store under its [server] name
// with its URL and iSCSI portal; `server ls` shows it up, `server forget`
// refuses a running one; once it stops, ls says stopped and forget works.
func TestServerLs(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "hsqs-1"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	cfg, err := config.Parse("t.conf", strings.NewReader("[server]\nname = alpha\nurl = http://192.0.2.7:8080\ndata = "+data+
		"\n[profile default]\nkernel = "+dir+"/kernel\ninitramfs = "+dir+"/initramfs\nroot = "+dir+"/root\nupper = iscsi\nenroll = approve\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	t.Setenv("OVERBOOT_SERVER", hs.URL)
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	adminToken(t, data)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	beat, err := s.Register(ctx, server.Announcement{HTTP: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, ISCSI: &net.TCPAddr{Port: 3260}, Version: "v9"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "alpha" {
		t.Fatalf("registered as %q", s.Name())
	}
	done := make(chan error, 1)
	go func() { done <- beat() }()
	out, err := cli(t, "", "server", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alpha", " up ", "http://192.0.2.7:8080", "192.0.2.7:3260", "v9"} {
		if !strings.Contains(out, want) {
			t.Errorf("server ls lacks %q:\n%s", want, out)
		}
	}
	if _, err := cli(t, "", "server", "forget", "alpha"); err == nil || !strings.Contains(err.Error(), "is running") {
		t.Errorf("forget a running server: %v", err)
	}
	if _, err := cli(t, "", "server", "forget", "a/b"); err == nil || !strings.Contains(err.Error(), `server name "a/b"`) {
		t.Errorf("forget a bad name: %v", err)
	}
	// A server on another data directory under the same name is refused
	// while alpha beats.
	otherData := t.TempDir()
	other, err := config.Parse("o.conf", strings.NewReader("[server]\nname = alpha\ndata = "+otherData+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := blobstore.Open(otherData)
	if err != nil {
		t.Fatal(err)
	}
	so, err := server.New(context.Background(), other, blobs, s.DB(), nil)
	if err == nil {
		if _, err := so.Register(ctx, server.Announcement{}); err == nil || !strings.Contains(err.Error(), "a server of that name is running") {
			t.Errorf("second registration under a live name: %v", err)
		}
	} else {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out, err = cli(t, "", "server", "ls"); err != nil || !strings.Contains(out, "stopped") {
		t.Fatalf("after stop: %v\n%s", err, out)
	}
	if _, err := cli(t, "", "server", "forget", "alpha"); err != nil {
		t.Fatal(err)
	}
	if out, _ = cli(t, "", "server", "ls"); strings.Contains(out, "alpha") {
		t.Errorf("forgotten server listed:\n%s", out)
	}
}
