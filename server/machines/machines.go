// Package machines keeps each machine's private state on the server: its
// CHAP secret (random, stored 0600, rotated on request) and its disks (a
// writable upper disk, created sparse on first boot; a copy-on-write
// layer over a shared base image for whole-disk sanboot). Reset and
// delete run after the caller has ended the machine's iSCSI sessions.
//
// Layout: DIR/<mac as aa-bb-cc-dd-ee-ff>/{secret, upper.img, cow.delta,
// cow.delta.log}, directories 0700, files 0600.
package machines

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// IQNPrefix names the per-machine targets.
const IQNPrefix = "iqn.2026-11.org.overboot:m-"

// ErrUnknown: no state for that machine.
var ErrUnknown = errors.New("no such machine")

// Store is the state directory.
type Store struct {
	dir string
	mu  sync.Mutex // serialises secret creation and rotation, reset and delete
}

// Open opens (creating, 0700) the state directory.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

func key(mac net.HardwareAddr) string { return strings.ReplaceAll(mac.String(), ":", "-") }

// Dir is a machine's directory.
func (s *Store) Dir(mac net.HardwareAddr) string { return filepath.Join(s.dir, key(mac)) }

// IQN is the machine's target name.
func IQN(mac net.HardwareAddr) string { return IQNPrefix + strings.ReplaceAll(mac.String(), ":", "") }

// CHAP returns the machine's credentials, creating a random secret on
// first use.
func (s *Store) CHAP(mac net.HardwareAddr) (iscsiwire.CHAP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	secret, err := os.ReadFile(filepath.Join(s.Dir(mac), "secret"))
	if errors.Is(err, os.ErrNotExist) {
		return s.rotateLocked(mac)
	}
	if err != nil {
		return iscsiwire.CHAP{}, err
	}
	return iscsiwire.CHAP{User: key(mac), Secret: iscsiwire.Secret(strings.TrimSpace(string(secret)))}, nil
}

// Rotate replaces the machine's secret; sessions logged in with the old
// one keep running until they end.
func (s *Store) Rotate(mac net.HardwareAddr) (iscsiwire.CHAP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotateLocked(mac)
}

func (s *Store) rotateLocked(mac net.HardwareAddr) (iscsiwire.CHAP, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return iscsiwire.CHAP{}, err
	}
	secret := base64.RawURLEncoding.EncodeToString(b) // 24 characters, 144 bits
	if err := os.MkdirAll(s.Dir(mac), 0o700); err != nil {
		return iscsiwire.CHAP{}, err
	}
	if err := writeFile0600(filepath.Join(s.Dir(mac), "secret"), []byte(secret+"\n")); err != nil {
		return iscsiwire.CHAP{}, err
	}
	return iscsiwire.CHAP{User: key(mac), Secret: iscsiwire.Secret(secret)}, nil
}

// UpperPath returns the machine's upper disk file, creating it sparse
// with size bytes (0600) and an empty ext4 filesystem (mkfs.ext4 from
// e2fsprogs) when missing. created says whether it was new.
func (s *Store) UpperPath(mac net.HardwareAddr, size int64) (path string, created bool, err error) {
	if size <= 0 || size%512 != 0 {
		return "", false, fmt.Errorf("upper disk size %d: want a positive multiple of 512", size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir(mac), 0o700); err != nil {
		return "", false, err
	}
	path = filepath.Join(s.Dir(mac), "upper.img")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return path, false, nil
	}
	if err != nil {
		return "", false, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return "", false, err
	}
	f.Close()
	// lazy_itable_init keeps the file sparse; the label says whose it is.
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "overboot-upper", "-E", "lazy_itable_init=1,lazy_journal_init=1", path).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return "", false, fmt.Errorf("format the upper disk of %s (mkfs.ext4, package e2fsprogs): %v: %s", mac, err, strings.TrimSpace(string(out)))
	}
	return path, true, nil
}

// ErrBaseChanged means a machine's copy-on-write layer was made over a
// base image that has changed since: its blocks no longer fit.
var ErrBaseChanged = errors.New("base image changed")

// CowPath is where the machine's copy-on-write layer over the raw disk
// image base lives. The layer records which base it was made over (path,
// size, modification time): a layer whose base has changed since is an
// error wrapping ErrBaseChanged, never a silently corrupt disk.
func (s *Store) CowPath(mac net.HardwareAddr, base string) (string, error) {
	fi, err := os.Stat(base)
	if err != nil {
		return "", err
	}
	want := fmt.Sprintf("%s %d %d\n", base, fi.Size(), fi.ModTime().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir(mac), 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(s.Dir(mac), "cow.delta")
	stamp := filepath.Join(s.Dir(mac), "cow.base")
	have, err := os.ReadFile(stamp)
	switch {
	case err == nil && string(have) == want:
		return path, nil
	case err == nil || !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s: its copy-on-write layer was made over %q, now %q: %w; overboot machine reset %s starts it over from the image", mac, strings.TrimSpace(string(have)), strings.TrimSpace(want), ErrBaseChanged, mac)
	}
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("%s: a copy-on-write layer without a record of its base: %w; overboot machine reset %s starts it over", mac, ErrBaseChanged, mac)
	}
	if err := writeFile0600(stamp, []byte(want)); err != nil {
		return "", err
	}
	return path, nil
}

// Reset removes the machine's disks (its next boot starts blank / from
// the base image) and keeps its secret.
func (s *Store) Reset(mac net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.Dir(mac)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", mac, ErrUnknown)
	}
	var errs []error
	for _, f := range []string{"upper.img", "cow.delta", "cow.delta.log", "cow.base"} {
		if err := os.Remove(filepath.Join(s.Dir(mac), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Delete removes everything the server keeps for the machine.
func (s *Store) Delete(mac net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.Dir(mac)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", mac, ErrUnknown)
	}
	return os.RemoveAll(s.Dir(mac))
}

// List returns the machines with state, by MAC.
func (s *Store) List() ([]net.HardwareAddr, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []net.HardwareAddr
	for _, e := range ents {
		if mac, err := net.ParseMAC(strings.ReplaceAll(e.Name(), "-", ":")); err == nil && e.IsDir() {
			out = append(out, mac)
		}
	}
	return out, nil
}

// writeFile0600 writes atomically: a temp file beside, fsync, rename.
func writeFile0600(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
