package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
)

// helperEnv makes the test binary a helper process (see helperMain).
const helperEnv = "OVERBOOT_DATADIR_HELPER"

// init makes the test binary, started by helperProcess with helperEnv
// set, the helper before any test runs (crash_test.go's TestMain is the
// package's).
func init() {
	if what := os.Getenv(helperEnv); what != "" {
		helperMain(what)
	}
}

// helperMain runs in a child started by helperProcess: it does what
// OVERBOOT_DATADIR_HELPER says on the data directory
// OVERBOOT_DATADIR_DATA, prints "ready" and waits for its stdin to close,
// then exits.
func helperMain(what string) {
	data := os.Getenv("OVERBOOT_DATADIR_DATA")
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
	info := ""
	switch what {
	case "lock":
		if _, err := lockDataDir(data); err != nil {
			fail(err)
		}
	case "work": // as mkimage root -store does: a work file, closed, and a work directory beside it
		st, err := blobstore.Open(data)
		if err != nil {
			fail(err)
		}
		f, err := st.TempFile("root-*.sqfs")
		if err != nil {
			fail(err)
		}
		f.Close()
		work, err := os.MkdirTemp(filepath.Dir(f.Name()), ".mkimage-root-*")
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(filepath.Join(work, "image.sqfs"), make([]byte, 1<<20), 0o644); err != nil {
			fail(err)
		}
		info = f.Name()
	default:
		fail(fmt.Errorf("unknown helper %q", what))
	}
	fmt.Println("ready", info)
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// helperProcess starts the test binary as a helper doing what on data and
// waits for it to be ready. Closing the returned writer ends it; the
// cleanup does too. info is what the helper said after "ready".
func helperProcess(t *testing.T, what, data string) (cmd *exec.Cmd, stop io.WriteCloser, info string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+what, "OVERBOOT_DATADIR_DATA="+data)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	info, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ready ")
	if !ok {
		in.Close()
		cmd.Wait()
		t.Fatalf("helper %s: %q %s", what, line, stderr.String())
	}
	return cmd, in, info
}

// lockConf is a configuration with data in dir/data.
func lockConf(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"kernel", "initramfs", "root"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse("test.conf", strings.NewReader("[server]\ndata = "+dir+"/data\n[profile default]\nkernel = "+dir+"/kernel\ninitramfs = "+dir+"/initramfs\nroot = "+dir+"/root\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDataDirLock: a second Open of a data directory a server holds fails
// naming the directory and the holder's PID; after Close it opens again.
func TestDataDirLock(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = 50 * time.Millisecond
	cfg := lockConf(t)
	ctx := context.Background()
	s, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.Data, LockFile)); err != nil || string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("lock file: %q %v, want our PID", b, err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Data, LockFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v %v, want 0600", fi.Mode(), err)
	}
	want := fmt.Sprintf("data directory %s is in use by process %d (another overboot serve?)", cfg.Data, os.Getpid())
	if s2, err := Open(ctx, cfg, nil); err == nil {
		s2.Close()
		t.Fatal("a second server opened the same data directory")
	} else if err.Error() != want {
		t.Errorf("second Open: %v\nwant %s", err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}

// TestDataDirLockOtherProcess: a data directory another process holds
// cannot be opened, the error names that process; an Open waiting
// (lockWait) while it exits gets it.
func TestDataDirLockOtherProcess(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = 50 * time.Millisecond
	cfg := lockConf(t)
	cmd, stop, _ := helperProcess(t, "lock", cfg.Data)
	want := fmt.Sprintf("data directory %s is in use by process %d (another overboot serve?)", cfg.Data, cmd.Process.Pid)
	if s, err := Open(context.Background(), cfg, nil); err == nil {
		s.Close()
		t.Fatal("opened a data directory another process holds")
	} else if err.Error() != want {
		t.Errorf("Open: %v\nwant %s", err, want)
	}
	lockWait = time.Minute
	done := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), cfg, nil)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	stop.Close()
	cmd.Wait()
	if err := <-done; err != nil {
		t.Fatalf("Open while the holder exited: %v", err)
	}
}

// TestCleanLeftovers: at start, what no running process holds in DATA/tmp
// goes whatever its age (a stray file, a work directory, a symlink, work
// files a killed process left), what a running process holds stays (a work
// file open in this process, one closed by another process still
// running).
func TestCleanLeftovers(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	st, err := blobstore.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.TempFile("held-*")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldClosed, err := st.TempFile("closed-*") // closed, not yet committed
	if err != nil {
		t.Fatal(err)
	}
	heldClosed.Close()
	tmp := filepath.Join(data, "tmp")
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("not to be removed"), 0o644)
	stray := []string{filepath.Join(tmp, "root-123.sqfs"), filepath.Join(tmp, ".mkimage-root-456"), filepath.Join(tmp, "link")}
	os.WriteFile(stray[0], nil, 0o600)
	os.MkdirAll(filepath.Join(stray[1], "sub"), 0o700)
	os.WriteFile(filepath.Join(stray[1], "image.sqfs"), make([]byte, 1<<20), 0o644)
	os.Symlink(target, stray[2])
	cmd, _, childFile := helperProcess(t, "work", data)

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cleanLeftovers(data, log)
	for _, p := range stray {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was left", p)
		}
	}
	for _, p := range []string{held.Name(), heldClosed.Name(), childFile, target} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("removed what is held: %v", err)
		}
	}
	childWork, _ := filepath.Glob(filepath.Join(filepath.Dir(childFile), ".mkimage-root-*", "image.sqfs"))
	if len(childWork) != 1 {
		t.Errorf("the running process's work directory was removed: %v", childWork)
	}

	// Killed as mkimage was: nothing holds its files any more.
	cmd.Process.Kill()
	cmd.Wait()
	cleanLeftovers(data, log)
	if _, err := os.Stat(filepath.Dir(childFile)); err == nil {
		t.Errorf("the killed process's work directory %s was left", filepath.Dir(childFile))
	}
	if _, err := os.Stat(held.Name()); err != nil {
		t.Errorf("removed what is held: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
		t.Errorf("left in tmp: %v, want only this process's work directory", ents)
	}
	if !strings.Contains(logs.String(), "removed a work file no running process holds") {
		t.Errorf("no log of the removals:\n%s", logs.String())
	}
}
