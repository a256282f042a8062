package machines

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMachineState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	c1, err := s.CHAP(mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Validate(); err != nil {
		t.Fatalf("generated credentials invalid: %v", err)
	}
	c2, _ := s.CHAP(mac)
	if c1.Secret != c2.Secret {
		t.Errorf("the secret changed without a rotation")
	}
	c3, _ := s.Rotate(mac)
	if c3.Secret == c1.Secret || c3.User != c1.User {
		t.Errorf("rotation kept the secret or changed the user")
	}
	for _, p := range []string{dir, s.Dir(mac), filepath.Join(s.Dir(mac), "secret")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
	path, created, err := s.UpperPath(mac, 1<<30)
	if err != nil || !created {
		t.Fatalf("first upper: %v %v", created, err)
	}
	sb := make([]byte, 2)
	if f, err := os.Open(path); err == nil {
		f.ReadAt(sb, 1024+56) // the ext4 superblock's magic
		f.Close()
	}
	if sb[0] != 0x53 || sb[1] != 0xef {
		t.Errorf("the new upper disk has no ext4 filesystem")
	}
	os.WriteFile(path, []byte("data"), 0o600)
	if _, created, _ := s.UpperPath(mac, 1<<30); created {
		t.Errorf("the upper disk was created again")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("upper mode %o", fi.Mode().Perm())
	}
	if err := s.Reset(mac); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reset kept the upper disk")
	}
	if c, _ := s.CHAP(mac); c.Secret != c3.Secret {
		t.Errorf("reset changed the secret")
	}
	if l, _ := s.List(); len(l) != 1 || l[0].String() != mac.String() {
		t.Errorf("list: %v", l)
	}
	if err := s.Delete(mac); err != nil {
		t.Fatal(err)
	}
	other, _ := net.ParseMAC("52:54:00:00:00:09")
	if err := s.Reset(other); !errors.Is(err, ErrUnknown) {
		t.Errorf("reset of an unknown machine: %v", err)
	}
	if IQN(mac) != "iqn.2026-11.org.overboot:m-525400123456" {
		t.Errorf("IQN %s", IQN(mac))
	}
	if _, _, err := s.UpperPath(mac, 1000); err == nil {
		t.Errorf("odd size accepted")
	}
}

func TestCowPathBase(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:00:00:09")
	base := filepath.Join(t.TempDir(), "base.raw")
	if err := os.WriteFile(base, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.CowPath(mac, base)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(filepath.Dir(p), "cow.base")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("base record: %v %v", fi, err)
	}
	os.WriteFile(p, []byte("delta"), 0o600)
	if _, err := s.CowPath(mac, base); err != nil {
		t.Fatalf("same base: %v", err)
	}
	// The image is replaced: the layer no longer fits it.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(base, later, later); err != nil {
		t.Fatal(err)
	}
	_, err = s.CowPath(mac, base)
	if !errors.Is(err, ErrBaseChanged) || !strings.Contains(err.Error(), "overboot machine reset 52:54:00:00:00:09") {
		t.Fatalf("changed base: %v", err)
	}
	if err := s.Reset(mac); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CowPath(mac, base); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}
