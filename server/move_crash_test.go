package server

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overboot/overboot/server/state"
)

// moveChildEnv makes the test binary a move crash child (see TestMain).
const moveChildEnv = "OVERBOOT_MOVE_CRASH_CHILD"

const moveDisks = 3

// moveChild runs servers a and b over the store in dir and moves every
// disk back and forth between them, each disk in a loop of its own,
// until the parent kills it.
func moveChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "move crash child:", err)
		os.Exit(3)
	}
	db, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		fail(err)
	}
	ps := map[string]*peer{}
	for _, name := range []string{"a", "b"} {
		p, err := startPeer(dir, db, name)
		if err != nil {
			fail(err)
		}
		ps[name] = p
	}
	ks, err := db.Disks(context.Background())
	if err != nil || len(ks) != moveDisks {
		fail(fmt.Errorf("disks: %d %v", len(ks), err))
	}
	fmt.Println("ready")
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Add(1)
		go func() {
			for {
				cur, err := db.DiskByID(context.Background(), k.ID)
				if err != nil {
					fail(err)
				}
				to := map[string]string{"a": "b", "b": "a"}[cur.Home]
				if err := ps[cur.Home].s.disks.Move(context.Background(), k.ID, to); err != nil {
					fail(fmt.Errorf("move disk %d %s -> %s: %w", k.ID, cur.Home, to, err))
				}
			}
		}()
	}
	wg.Wait()
}

// TestMoveCrashRecovery kills (SIGKILL) a process that moves disks
// between two servers at random moments, restarts both servers, and
// checks after each round that every disk is whole in exactly one place:
// its row ready at one home, its file there with the SHA-256 it had, no
// copy or partial copy on the other server.
func TestMoveCrashRecovery(t *testing.T) {
	dir, db := sharedStore(t)
	ctx := context.Background()
	ps := newPeers(t, dir, db, "a", "b")
	sums := map[int64]string{}
	for i := 0; i < moveDisks; i++ {
		mac := fmt.Sprintf("52-54-00-00-00-%02x", i+1)
		if code, why, _ := ps[i%2].boot(t, mac, fmt.Sprintf("192.0.2.%d", i+1)); code != 200 {
			t.Fatalf("boot %s: %d %s", mac, code, why)
		}
		k, err := db.Disk(ctx, state.OwnerMachine, strings.ReplaceAll(mac, "-", ":"), "default")
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(k.Path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte(fmt.Sprintf("disk %d's own bytes", k.ID)), int64(1+i)<<20)
		f.Close()
		sums[k.ID] = fileDigest(t, k.Path)
	}
	for _, p := range ps {
		p.stop()
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	const rounds = 8
	recovered := 0
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), moveChildEnv+"="+dir)
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
		time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if strings.Contains(stderr.String(), "move crash child:") {
			t.Fatalf("round %d: %s", round, stderr.String())
		}
		recovered += checkMovesAfterCrash(t, dir, db, sums, round)
	}
	t.Logf("%d interrupted moves finished or called off in %d rounds", recovered, rounds)
}

// checkMovesAfterCrash restarts a and b as a restarted site would (the
// killed process's registrations recorded stopped first, as its
// heartbeats would have run out), lets each sweep once more (what their
// sweepers do within SweepEvery), and checks the disks.
func checkMovesAfterCrash(t *testing.T, dir string, db *state.DB, sums map[int64]string, round int) int {
	t.Helper()
	ctx := context.Background()
	moving := 0
	ks, _ := db.Disks(ctx)
	for _, k := range ks {
		if k.Status == state.DiskMoving {
			moving++
		}
	}
	for _, name := range []string{"a", "b"} {
		if info, err := db.Server(ctx, name); err == nil {
			db.Unregister(ctx, name, info.Instance)
		}
	}
	var ps []*peer
	for _, name := range []string{"a", "b"} {
		p, err := startPeer(dir, db, name)
		if err != nil {
			t.Fatalf("round %d: restart %s: %v", round, name, err)
		}
		defer p.stop()
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.s.disks.Sweep(ctx); err != nil {
			t.Fatalf("round %d: sweep %s: %v", round, p.name, err)
		}
	}
	ks, err := db.Disks(ctx)
	if err != nil || len(ks) != len(sums) {
		t.Fatalf("round %d: disks %+v %v", round, ks, err)
	}
	where := map[string]int{}
	for _, k := range ks {
		var home, other *peer
		for _, p := range ps {
			if p.name == k.Home {
				home = p
			} else {
				other = p
			}
		}
		if k.Status != state.DiskReady || home == nil {
			t.Fatalf("round %d: disk %d is %s at %q", round, k.ID, k.Status, k.Home)
		}
		if !strings.HasPrefix(k.Path, home.data+"/") {
			t.Errorf("round %d: disk %d at %s has its path %s elsewhere", round, k.ID, k.Home, k.Path)
		}
		if got := fileDigest(t, k.Path); got != sums[k.ID] {
			t.Errorf("round %d: disk %d at %s: SHA-256 %s, want %s", round, k.ID, k.Home, got, sums[k.ID])
		}
		if ents, _ := os.ReadDir(filepath.Dir(k.Path)); len(ents) != 1 {
			t.Errorf("round %d: disk %d's directory at %s holds %d files, want its file alone", round, k.ID, k.Home, len(ents))
		}
		if _, err := os.Stat(filepath.Join(other.data, "disks", fmt.Sprint(k.ID))); !os.IsNotExist(err) {
			t.Errorf("round %d: disk %d lives at %s, and %s still has a copy (%v)", round, k.ID, k.Home, other.name, err)
		}
		where[k.Home]++
	}
	for _, p := range ps {
		if ents, _ := os.ReadDir(filepath.Join(p.data, "disks", "orphans")); len(ents) > 0 {
			t.Errorf("round %d: %s moved disk directories aside as orphans: %d", round, p.name, len(ents))
		}
	}
	t.Logf("round %d: %d disks at a, %d at b, %d moves in flight at the kill: consistent", round, where["a"], where["b"], moving)
	return moving
}
