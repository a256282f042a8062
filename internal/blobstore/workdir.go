package blobstore

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// workDirs are this process's work directories, by the tmp directory of
// their store (all Stores of one directory share one).
var workDirs struct {
	sync.Mutex
	m map[string]*heldDir
}

// heldDir is a directory and the open descriptor holding its flock (nil
// where there is no flock).
type heldDir struct {
	path string
	f    *os.File
}

// workDir returns this process's work directory in the store's tmp
// directory: DIR/tmp/pidPID-RANDOM, made on first use and held (an
// exclusive flock on its descriptor, kept open) until the process exits.
// A server starting removes what it can lock there, so the lock is taken
// before the directory is used, and a directory removed by someone else
// meanwhile is replaced.
func (s *Store) workDir() (string, error) {
	tmp := filepath.Join(s.dir, "tmp")
	workDirs.Lock()
	defer workDirs.Unlock()
	if w := workDirs.m[tmp]; w != nil {
		if stillThere(w) {
			return w.path, nil
		}
		if w.f != nil {
			w.f.Close()
		}
		delete(workDirs.m, tmp)
	}
	// Between making the directory and locking it, a starting server may
	// lock and remove it: then make another.
	for range 10 {
		p, err := os.MkdirTemp(tmp, fmt.Sprintf("pid%d-*", os.Getpid()))
		if err != nil {
			return "", err
		}
		w, err := holdDir(p)
		if err != nil {
			os.Remove(p)
			return "", err
		}
		if w == nil {
			continue
		}
		if workDirs.m == nil {
			workDirs.m = map[string]*heldDir{}
		}
		workDirs.m[tmp] = w
		return p, nil
	}
	return "", fmt.Errorf("no work directory in %s: each one made was removed before it could be locked", tmp)
}

// stillThere reports whether w's path is still the directory w holds.
func stillThere(w *heldDir) bool {
	fi, err := os.Stat(w.path)
	if err != nil || !fi.IsDir() {
		return false
	}
	if w.f == nil {
		return true
	}
	held, err := w.f.Stat()
	return err == nil && os.SameFile(fi, held)
}
