package main

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
)

// cli runs the command line against an in-process server whose data
// directory is data, and returns stdout.
func cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), err
}

// TestAdminCommands drives the admin commands against a real server: the
// first token from the data directory, users, machines, images, backup.
func TestAdminCommands(t *testing.T) {
	data := t.TempDir()
	dir := t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "hsqs-1"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	cfg, err := config.Parse("t.conf", strings.NewReader("[server]\ndata = "+data+"\n[profile default]\nkernel = "+dir+"/kernel\ninitramfs = "+dir+"/initramfs\nroot = "+dir+"/root\nupper = iscsi\nenroll = approve\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	t.Setenv("OVERBOOT_SERVER", hs.URL)
	t.Setenv("OVERBOOT_TOKEN", "")
	if _, err := cli(t, "", "machine", "ls"); err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Fatalf("without a token: %v", err)
	}
	tok, err := cli(t, "", "token", "create", "admin", "--data", data)
	if err != nil || !strings.HasPrefix(tok, "obt_") {
		t.Fatalf("token create: %q %v", tok, err)
	}
	t.Setenv("OVERBOOT_TOKEN", strings.TrimSpace(tok))
	if _, err := cli(t, "correct horse\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatalf("user add: %v", err)
	}
	if _, err := cli(t, "short\n", "user", "add", "bob", "--password-stdin"); !errors.As(err, new(usageError)) {
		t.Errorf("a short password: %v", err)
	}
	if out, err := cli(t, "", "user", "ls"); err != nil || !strings.Contains(out, "alice") || strings.Contains(out, "bob") {
		t.Errorf("user ls: %q %v", out, err)
	}
	// A machine asks to boot: pending; approve it from the command line.
	req := httptest.NewRequest(http.MethodGet, "/ipxe?mac=52-54-00-00-00-01", nil)
	req.RemoteAddr = "192.0.2.1:1000"
	s.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if out, err := cli(t, "", "machine", "ls"); err != nil || !strings.Contains(out, "52:54:00:00:00:01") || !strings.Contains(out, "pending") {
		t.Errorf("machine ls: %q %v", out, err)
	}
	// A second address asks too: approving must name one.
	req = httptest.NewRequest(http.MethodGet, "/ipxe?mac=52-54-00-00-00-01", nil)
	req.RemoteAddr = "192.0.2.66:1000"
	s.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if out, err := cli(t, "", "machine", "show", "52:54:00:00:00:01"); err != nil || !strings.Contains(out, "192.0.2.66") || !strings.Contains(out, "waits for approval") {
		t.Errorf("machine show: %q %v", out, err)
	}
	if _, err := cli(t, "", "machine", "approve", "52-54-00-00-00-01"); err == nil || !strings.Contains(err.Error(), "2 requests match; say which") || !strings.Contains(err.Error(), "from 192.0.2.66") {
		t.Errorf("approve of one of two: %v", err)
	}
	if out, err := cli(t, "", "machine", "approve", "52-54-00-00-00-01", "--address", "192.0.2.1"); err != nil || !strings.Contains(out, "approved for profile default at 192.0.2.1") {
		t.Errorf("approve: %q %v", out, err)
	}
	// A token file is written 0600, never over another file.
	tokFile := filepath.Join(dir, "read.token")
	if _, err := cli(t, "", "token", "create", "viewer", "--scope", "read", "--out", tokFile); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tokFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", fi, err)
	}
	if _, err := cli(t, "", "token", "create", "viewer2", "--out", tokFile); err == nil {
		t.Errorf("token create overwrote a file")
	}
	if _, err := cli(t, "", "token", "create", "x", "--scope", "root"); err == nil || !strings.Contains(err.Error(), "want read, operate or admin") {
		t.Errorf("bad scope: %v", err)
	}
	// A read token reads and may not act.
	t.Setenv("OVERBOOT_TOKEN_FILE", tokFile)
	if _, err := cli(t, "", "machine", "ls"); err != nil {
		t.Errorf("read token: machine ls: %v", err)
	}
	if _, err := cli(t, "", "machine", "rotate", "52:54:00:00:00:01"); err == nil || !strings.Contains(err.Error(), "needs a token of scope operate") {
		t.Errorf("read token rotated: %v", err)
	}
	if _, err := cli(t, "", "backup", filepath.Join(dir, "b.db")); err == nil || !strings.Contains(err.Error(), "scope admin") {
		t.Errorf("read token took a backup: %v", err)
	}
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	if _, err := cli(t, "", "machine", "approve", "52:54:00:00:00:99"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("approve unknown: %v", err)
	}
	if _, err := cli(t, "", "machine", "explode", "x"); err == nil {
		t.Errorf("unknown action accepted")
	}
	if out, err := cli(t, "", "machine", "explain", "52:54:00:00:00:01"); err != nil || !strings.Contains(out, "profile default because default at t.conf:3") || !strings.Contains(out, "enroll = approve") {
		t.Errorf("explain: %q %v", out, err)
	}
	// Publish a file as an image name; its history has it. A file that
	// is not what it is published as is refused, with the server's why.
	if _, err := cli(t, "", "image", "publish", "bookworm", filepath.Join(dir, "kernel"), "--kind", "root"); err == nil || !strings.Contains(err.Error(), "is text, not a root (squashfs)") {
		t.Errorf("publish a text file as a root: %v", err)
	}
	img := filepath.Join(dir, "v2.sqfs")
	sq := make([]byte, 4096) // a squashfs superblock: block size 128 KiB, version 4, 4096 bytes used
	copy(sq, "hsqs")
	binary.LittleEndian.PutUint32(sq[12:], 128<<10)
	binary.LittleEndian.PutUint16(sq[22:], 17)
	binary.LittleEndian.PutUint16(sq[28:], 4)
	binary.LittleEndian.PutUint64(sq[40:], 4096)
	os.WriteFile(img, sq, 0o644)
	if out, err := cli(t, "", "image", "publish", "bookworm", img); err != nil || !strings.Contains(out, "bookworm version 1") || !strings.Contains(out, "root") {
		t.Errorf("publish: %q %v", out, err)
	}
	if out, err := cli(t, "", "image", "history", "bookworm", "--json"); err != nil || !strings.Contains(out, `"version": 1`) {
		t.Errorf("history: %q %v", out, err)
	}
	dst := filepath.Join(t.TempDir(), "backup.db")
	if _, err := cli(t, "", "backup", dst); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v %v", fi, err)
	}
	if _, err := cli(t, "", "backup", dst); err == nil {
		t.Errorf("backup overwrote a file")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"machine", "approve"}, {"user", "add"}, {"image", "publish", "x"}, {"nope"}} {
		_, err := cli(t, "", args...)
		if err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	if out, err := cli(t, "", "--help"); err != nil || !strings.Contains(out, "machine") || !strings.Contains(out, "token") {
		t.Errorf("--help: %q %v", out, err)
	}
}
