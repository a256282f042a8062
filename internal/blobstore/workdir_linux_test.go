package blobstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// lockedByOther reports whether a new descriptor of p cannot take an
// exclusive flock on it (someone holds one).
func lockedByOther(t *testing.T, p string) bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatal(err)
	}
	return err != nil
}

// TestTempFileWorkDir: work files are made in one directory of this
// process, DIR/tmp/pidPID-*, which stays locked after the files are
// closed; a work directory removed under the process is replaced.
func TestTempFileWorkDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.TempFile("a-*")
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	s2, _ := Open(dir) // another Store of the same directory shares it
	b, err := s2.TempFile("b-*")
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	work := filepath.Dir(a.Name())
	if filepath.Dir(b.Name()) != work {
		t.Errorf("two work directories: %s, %s", work, filepath.Dir(b.Name()))
	}
	if filepath.Dir(work) != filepath.Join(dir, "tmp") || !strings.HasPrefix(filepath.Base(work), fmt.Sprintf("pid%d-", os.Getpid())) {
		t.Errorf("work directory %s, want %s/pid%d-*", work, filepath.Join(dir, "tmp"), os.Getpid())
	}
	if !lockedByOther(t, work) {
		t.Error("the work directory is not locked")
	}
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}
	c, err := s.TempFile("c-*")
	if err != nil {
		t.Fatalf("after the work directory was removed: %v", err)
	}
	c.Close()
	if w := filepath.Dir(c.Name()); w == work || !lockedByOther(t, w) {
		t.Errorf("new work directory %s (old %s) not replaced or not locked", w, work)
	}
	d, n, err := s.Commit(c.Name())
	if err != nil || n != 0 {
		t.Fatalf("Commit from the work directory: %s %d %v", d, n, err)
	}
}
