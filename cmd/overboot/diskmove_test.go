package main

import (
	"context"
	"crypto/sha256"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// TestDiskMoveCLI: two servers share a store; `disk move`, sent to the
// server that is not the disk's home, finds the home and has it move the
// disk; `disk ls` shows the new home; a move to an unknown server or of
// an unknown disk is refused naming it.
func TestDiskMoveCLI(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "hsqs-1"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := map[string]string{}
	for _, name := range []string{"alpha", "beta"} {
		iln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { iln.Close() })
		cfg, err := config.Parse(name+".conf", strings.NewReader("[server]\nname = "+name+"\ndata = "+dir+"/"+name+"\niscsi-portal = "+iln.Addr().String()+
			"\n[profile default]\nkernel = "+dir+"/kernel\ninitramfs = "+dir+"/initramfs\nroot = "+dir+"/root\nupper = iscsi\nenroll = approve\n"))
		if err != nil {
			t.Fatal(err)
		}
		blobs, err := blobstore.Open(cfg.Data)
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.New(ctx, cfg, blobs, db, nil)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(hs.Close)
		if _, err := s.Register(ctx, server.Announcement{HTTP: hs.Listener.Addr(), ISCSI: iln.Addr()}); err != nil {
			t.Fatal(err)
		}
		urls[name] = hs.URL
	}
	// A disk on alpha, as alpha makes one.
	path := filepath.Join(dir, "alpha", "disks", "1", "upper.img")
	os.MkdirAll(filepath.Dir(path), 0o700)
	content := []byte(strings.Repeat("the disk's bytes ", 1<<16))
	content = content[:1<<20]
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := db.AddDisk(ctx, state.Disk{OwnerKind: state.OwnerMachine, Owner: "52:54:00:00:00:01", Profile: "default", Kind: state.DiskUpper, Path: path, Size: int64(len(content)), Home: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := enroll.NewAPIToken(ctx, db, "admin", enroll.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OVERBOOT_TOKEN", tok)
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	t.Setenv("OVERBOOT_SERVER", urls["beta"])

	if _, err := cli(t, "", "disk", "move", "1", "--to", "gamma"); err == nil || !strings.Contains(err.Error(), "gamma") {
		t.Errorf("move to an unknown server: %v", err)
	}
	if _, err := cli(t, "", "disk", "move", "7", "--to", "beta"); err == nil || !strings.Contains(err.Error(), "no such disk") {
		t.Errorf("move of an unknown disk: %v", err)
	}
	if _, err := cli(t, "", "disk", "move", "1"); err == nil {
		t.Error("move without --to")
	}
	out, err := cli(t, "", "disk", "move", "1", "--to", "beta")
	if err != nil || !strings.Contains(out, "disk 1 moved from alpha to beta") {
		t.Fatalf("disk move: %q %v", out, err)
	}
	k, _ := db.DiskByID(ctx, id)
	got, _ := os.ReadFile(k.Path)
	if k.Home != "beta" || !strings.HasPrefix(k.Path, filepath.Join(dir, "beta")+"/") || sha256.Sum256(got) != sha256.Sum256(content) {
		t.Fatalf("after the move: %+v", k)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the old copy stays: %v", err)
	}
	out, err = cli(t, "", "disk", "ls")
	if err != nil || !strings.Contains(out, "HOME") || !strings.Contains(out, " beta ") {
		t.Errorf("disk ls: %v\n%s", err, out)
	}
	if _, err := cli(t, "", "disk", "move", "1", "--to", "beta"); err == nil || !strings.Contains(err.Error(), "lives on beta already") {
		t.Errorf("move to its home: %v", err)
	}
}
