package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LockFile is the file under DATA that a running server holds an exclusive
// flock on, with its PID inside, so that a second server on the same data
// directory refuses to start. Commands that only read or add to the data
// directory (token create, mkimage -store) do not take it.
const LockFile = "lock"

// lockWait is how long Open waits for the lock of a data directory another
// process holds before it fails. A server killed a moment ago can hold it
// for a few milliseconds more: a child it was starting shares its
// descriptors between fork and exec.
var lockWait = 2 * time.Second

// dataLock is a server's hold on its data directory.
type dataLock struct {
	f *os.File
}

// lockDataDir takes the lock of the data directory dir (creating dir and
// DATA/lock, 0600, if missing) and writes this process's PID into it. If
// another process holds it (still after lockWait), the error names dir and
// that process.
func lockDataDir(dir string) (*dataLock, error) {
	if dir == "" {
		return nil, errors.New("no data directory given")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	p := filepath.Join(dir, LockFile)
	f, err := openLockFile(p)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	ok, err := tryLock(f)
	for deadline := time.Now().Add(lockWait); err == nil && !ok && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		ok, err = tryLock(f)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		ok, err = true, nil // no flock here: run unguarded
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s: lock %s: %w", dir, p, err)
	}
	if !ok {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		who := "another process"
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
			who = "process " + strconv.Itoa(pid)
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		return nil, fmt.Errorf("data directory %s is in use by %s (another overboot serve?)", dir, who)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return &dataLock{f: f}, nil
}

// release empties the lock file (the PID in it would be stale) and lets go
// of the lock. A nil lock (a server made by New) holds nothing.
func (l *dataLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	l.f.Close()
	l.f = nil
}
