package server

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// crashChildEnv makes the test binary a crash child (see TestMain).
const crashChildEnv = "OVERBOOT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(moveChildEnv); dir != "" {
		moveChild(dir)
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

func crashConf(dir string) string {
	return "[server]\ndata = " + dir + "/data\niscsi-portal = 10.0.2.100:3260\n[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\nupper = iscsi\nupper-disk-size = 16M\nenroll = login\n"
}

// crashChild runs the server on dir and does, over and over, what a kill
// -9 must not break: publishing image versions, users' first logins (disk
// creation), resets, and backups. The parent kills it at a random moment.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	cfg, err := config.Parse("crash.conf", strings.NewReader(crashConf(dir)))
	if err != nil {
		fail(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		fail(err)
	}
	tok, _, err := enroll.NewAPIToken(context.Background(), s.db, "crash", enroll.ScopeAdmin)
	if err != nil {
		fail(err)
	}
	h := s.Handler()
	do := func(method, target, remote string, body io.Reader) (int, string) {
		req := httptest.NewRequest(method, target, body)
		req.Host = "10.0.2.100"
		req.RemoteAddr = remote + ":1"
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	fmt.Println("ready")
	docRE := regexp.MustCompile(`http://10\.0\.2\.100(/doc/[0-9a-f]{64})`)
	loginRE := regexp.MustCompile(`(/login/[0-9a-f]{64})\?`)
	digestRE := regexp.MustCompile(`"digest": "(sha256:[0-9a-f]{64})"`)
	// Each kind of change in a loop of its own, all at once, so a kill
	// lands in the middle of some of them.
	go func() { // publishing image versions
		for i := 0; ; i++ {
			if c, b := do(http.MethodPost, "/api/v1/blobs", "127.0.0.1", strings.NewReader(squashfsBlob(fmt.Sprintf("%d-%d", os.Getpid(), i)))); c == 201 {
				if c, b := do(http.MethodPost, "/api/v1/images", "127.0.0.1", strings.NewReader(`{"name":"crash","digest":"`+digestRE.FindStringSubmatch(b)[1]+`"}`)); c != 201 {
					fail(fmt.Errorf("publish: %d %s", c, b))
				}
			}
		}
	}()
	go func() { // backups
		for {
			do(http.MethodGet, "/api/v1/backup", "127.0.0.1", nil)
		}
	}()
	go func() { // users' disks: created as a login's document creates them, and reset
		p := s.sets.Load().Profile("default")
		// The machine is admitted as a login's menu admits it.
		if _, err := s.db.Enter(context.Background(), state.Machine{MAC: "02:00:00:00:01:01", Profile: "default"}, "login", state.Quota{}); err != nil {
			fail(err)
		}
		for i := 0; ; i++ {
			user := fmt.Sprintf("u%d", i%6)
			if _, err := s.attach(context.Background(), state.BootToken{MAC: "02:00:00:00:01:01", User: user, Profile: "default"}, p); err != nil {
				fail(err)
			}
			do(http.MethodPost, fmt.Sprintf("/api/v1/users/u%d/reset", (i+3)%6), "127.0.0.1", nil)
		}
	}()
	for i := 0; ; i++ { // whole logins, through the menu
		user := fmt.Sprintf("u%d", i%6)
		remote := fmt.Sprintf("192.0.2.%d", 1+i%200)
		_, menu := do(http.MethodGet, fmt.Sprintf("/ipxe?mac=02-00-00-00-00-%02x", i%200), remote, nil)
		if m := loginRE.FindStringSubmatch(menu); m != nil {
			q := url.Values{"username": {hex.EncodeToString([]byte(user))}, "password": {hex.EncodeToString([]byte("crash password"))}}
			_, ok := do(http.MethodGet, m[1]+"?"+q.Encode(), remote, nil)
			if d := docRE.FindStringSubmatch(ok); d != nil {
				do(http.MethodGet, d[1], remote, nil)
			}
		}
	}
}

// TestCrashRecovery kills the server with SIGKILL at random moments while
// it publishes, creates users' disks, resets them and takes backups; after
// each kill the store is consistent and no disk is lost or orphaned.
func TestCrashRecovery(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatalf("mkfs.ext4 (e2fsprogs) is needed: %v", err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "hsqs"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	// Users first, with one hash (argon2id costs tens of ms each).
	cfg, err := config.Parse("crash.conf", strings.NewReader(crashConf(dir)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := enroll.HashPassword("crash password")
	for i := 0; i < 6; i++ {
		s.db.AddUser(context.Background(), fmt.Sprintf("u%d", i), hash)
	}
	s.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 10
	versions := 0
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Wait()
			t.Fatalf("round %d: the child did not start: %q %s", round, line, stderr.String())
		}
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if strings.Contains(stderr.String(), "crash child:") {
			t.Fatalf("round %d: %s", round, stderr.String())
		}
		versions = checkAfterCrash(t, dir, round)
	}
	if versions == 0 {
		t.Error("no image version was published in any round: the test did not test publishing")
	}
}

// checkAfterCrash opens the data directory as a restarted server would and
// checks it.
func checkAfterCrash(t *testing.T, dir string, round int) (versions int) {
	t.Helper()
	ctx := context.Background()
	cfg, _ := config.Parse("crash.conf", strings.NewReader(crashConf(dir)))
	var logs syncBuffer
	s, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("round %d: restart: %v", round, err)
	}
	defer s.Close()
	if err := s.db.Check(ctx); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	ks, err := s.db.Disks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, k := range ks {
		rows[fmt.Sprint(k.ID)] = true
		fi, err := os.Stat(k.Path)
		if k.Status != state.DiskReady || err != nil || fi.Size() != k.Size {
			t.Errorf("round %d: disk %d (%s %s) is %s, file %v %v", round, k.ID, k.OwnerKind, k.Owner, k.Status, fi, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "data", "disks"))
	for _, e := range ents {
		if !rows[e.Name()] {
			t.Errorf("round %d: %s in the disks directory has no row (orphan)", round, e.Name())
		}
	}
	ims, err := s.db.ImageHistory(ctx, "crash")
	if err == nil {
		for i, im := range ims {
			if im.Version != len(ims)-i {
				t.Errorf("round %d: image versions %d at %d: a gap", round, im.Version, i)
			}
			if _, err := os.Stat(s.blobs.BlobPath(boot.Digest(im.Digest))); err != nil {
				t.Errorf("round %d: image version %d's blob is gone: %v", round, im.Version, err)
			}
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "data", ".backup-*"))
	if len(left) > 0 {
		t.Errorf("round %d: backup leftovers after restart: %v", round, left)
	}
	t.Logf("round %d: %d disks, %d image versions, %d interrupted disk changes finished, %d backups cleaned: consistent", round, len(ks), len(ims),
		strings.Count(logs.String(), "finishing an interrupted change"), strings.Count(logs.String(), "interrupted backup"))
	return len(ims)
}
