package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LockFile is the file under DATA that a running server holds an exclusive
// flock on, with its PID inside, so that a second server on the same data
// directory refuses to start. Commands that only read or add to the data
// directory (token create, mkimage --store) do not take it.
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

// cleanTmp removes every entry of tmp (DATA/tmp) that no running process
// holds: each is locked (an exclusive flock, not waiting) and removed while
// locked, so a process cannot take it meanwhile; one that another process
// holds stays. Files and directories are locked by their own descriptor;
// anything else (a symlink, a FIFO) is nobody's work and goes. Where the
// lock cannot be tried (not ours to open, no flock on this system), the
// rule of older versions applies: removed when older than a day.
func cleanTmp(tmp string, log *slog.Logger) {
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		held, err := removeUnheld(p, e.Type())
		switch {
		case err == nil && held:
			log.Debug("keeping a work file a running process holds", "path", p)
		case err == nil:
			log.Info("removed a work file no running process holds", "path", p)
		case errors.Is(err, errRemove):
			log.Warn("work file no running process holds not removed", "path", p, "err", err)
		default:
			fi, ierr := e.Info()
			if ierr != nil || time.Since(fi.ModTime()) <= 24*time.Hour {
				log.Info("keeping a work file: cannot tell whether a process holds it", "path", p, "err", err)
				continue
			}
			log.Info("removing an old work file", "path", p)
			os.RemoveAll(p)
		}
	}
}

// errRemove marks removeUnheld's failures to remove (as opposed to
// failures to try the lock).
var errRemove = errors.New("remove")

// removeUnheld removes p, an entry of DATA/tmp of type typ, unless a
// process holds a lock on it, and says whether one does.
func removeUnheld(p string, typ fs.FileMode) (held bool, err error) {
	if !typ.IsDir() && !typ.IsRegular() {
		if err := os.Remove(p); err != nil {
			return false, fmt.Errorf("%w: %w", errRemove, err)
		}
		return false, nil
	}
	f, err := openNoFollow(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil
	}
	if err := os.RemoveAll(p); err != nil {
		return false, fmt.Errorf("%w: %w", errRemove, err)
	}
	return false, nil
}
