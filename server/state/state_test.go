package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T) *DB {
	t.Helper()
	d, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenPermissionsAndSchema(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.AddUser(ctx, "alice", "h"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	d.Close()
	// Reopening applies no step twice and keeps the data.
	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.User(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// A store from a newer overboot is refused, not damaged.
	d.sql.Exec(`UPDATE schema_version SET version = 999`)
	d.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("opened a store of a newer schema")
	}
}

func TestMachinesEnrolment(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	q := Quota{Machines: 2}
	m, err := d.SeeMachine(ctx, Machine{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, Pending, q)
	if err != nil || m.Enrolment != Pending || m.Address != "192.0.2.1" {
		t.Fatalf("see: %+v %v", m, err)
	}
	// A pending machine's address follows its requests.
	m, _ = d.SeeMachine(ctx, Machine{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.2"}, Pending, q)
	if m.Address != "192.0.2.2" {
		t.Errorf("pending address = %s", m.Address)
	}
	if m, err = d.Approve(ctx, "52:54:00:00:00:01"); err != nil || m.Enrolment != Enrolled {
		t.Fatalf("approve: %+v %v", m, err)
	}
	// Once approved the address is pinned.
	m, _ = d.SeeMachine(ctx, Machine{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.9"}, Pending, q)
	if m.Address != "192.0.2.2" || m.Enrolment != Enrolled {
		t.Errorf("enrolled machine moved: %+v", m)
	}
	if _, err := d.Approve(ctx, "52:54:00:00:00:99"); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve unknown: %v", err)
	}
	d.SeeMachine(ctx, Machine{MAC: "52:54:00:00:00:02", Profile: "lab"}, Pending, q)
	if _, err := d.SeeMachine(ctx, Machine{MAC: "52:54:00:00:00:03", Profile: "lab"}, Pending, q); !errors.Is(err, ErrQuota) {
		t.Errorf("third machine past a quota of 2: %v", err)
	}
	if _, err := d.Machine(ctx, "52:54:00:00:00:03"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused machine was recorded: %v", err)
	}
	n, err := d.PrunePending(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Errorf("prune: %d %v", n, err)
	}
}

func TestBootTokens(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	d.SetClock(func() time.Time { return now })
	tok := BootToken{Purpose: "doc", MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Expires: now.Add(time.Minute)}
	if err := d.PutBootToken(ctx, "h1", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TakeBootToken(ctx, "h1", "san", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("wrong purpose: %v", err)
	}
	if _, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.66"); !errors.Is(err, ErrWrongAddress) {
		t.Errorf("wrong address: %v", err)
	}
	got, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.1")
	if err != nil || got.MAC != tok.MAC {
		t.Fatalf("take: %+v %v", got, err)
	}
	if _, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("spent twice: %v", err)
	}
	d.PutBootToken(ctx, "h2", tok)
	now = now.Add(2 * time.Minute)
	if _, err := d.TakeBootToken(ctx, "h2", "doc", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired: %v", err)
	}
}

func TestDiskQuota(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	q := Quota{Disks: 2, DiskBytes: 3 << 30}
	path := func(id int64) string { return fmt.Sprintf("/d/%d", id) }
	k, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 2 << 30}, q, path)
	if err != nil || k.Status != DiskCreating || k.Path != fmt.Sprintf("/d/%d", k.ID) {
		t.Fatalf("begin: %+v %v", k, err)
	}
	if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 1}, Quota{}, path); !errors.Is(err, ErrExists) {
		t.Errorf("second disk of one owner and profile: %v", err)
	}
	if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "bob", Profile: "lab", Kind: DiskUpper, Size: 2 << 30}, q, path); !errors.Is(err, ErrQuota) {
		t.Errorf("past the bytes quota: %v", err)
	}
	if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "bob", Profile: "lab", Kind: DiskUpper, Size: 1 << 30}, q, path); err != nil {
		t.Errorf("within quota: %v", err)
	}
	if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "carol", Profile: "lab", Kind: DiskUpper, Size: 1}, q, path); !errors.Is(err, ErrQuota) {
		t.Errorf("past the count quota: %v", err)
	}
	n, bytes, _ := d.DiskUsage(ctx, "lab")
	if n != 2 || bytes != 3<<30 {
		t.Errorf("usage %d %d", n, bytes)
	}
}

func TestImagesHistory(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	for _, dg := range []string{"sha256:aa", "sha256:bb"} {
		if _, err := d.PublishImage(ctx, Image{Name: "bookworm", Digest: dg, Size: 1, Kind: "root"}); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := d.Image(ctx, "bookworm")
	if err != nil || cur.Version != 2 || cur.Digest != "sha256:bb" {
		t.Fatalf("current: %+v %v", cur, err)
	}
	h, _ := d.ImageHistory(ctx, "bookworm")
	if len(h) != 2 || h[0].Version != 2 || h[1].Version != 1 {
		t.Errorf("history: %+v", h)
	}
	all, _ := d.ImageDigests(ctx)
	if !all["sha256:aa"] || !all["sha256:bb"] {
		t.Errorf("digests: %v", all)
	}
	if _, err := d.Image(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown name: %v", err)
	}
}

func TestBootsKeptAndEvents(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	var last Boot
	for i := 0; i < KeepBoots+5; i++ {
		b, err := d.StartBoot(ctx, Boot{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, BootEvent{Source: "server", Phase: "script", Outcome: "ok"})
		if err != nil {
			t.Fatal(err)
		}
		last = b
	}
	bs, _ := d.Boots(ctx, "52:54:00:00:00:01", 1000)
	if len(bs) != KeepBoots {
		t.Errorf("kept %d boots, want %d", len(bs), KeepBoots)
	}
	b, err := d.AddBootEvent(ctx, last.ID, BootEvent{Source: "agent", Phase: "lower", Outcome: "failed", Message: "digest mismatch"})
	if err != nil || b.Phase != "lower" || b.Outcome != "failed" {
		t.Fatalf("event: %+v %v", b, err)
	}
	ev, _ := d.BootEvents(ctx, last.ID)
	if len(ev) != 2 || ev[1].Message != "digest mismatch" {
		t.Errorf("events: %+v", ev)
	}
	if _, err := d.AddBootEvent(ctx, 999999, BootEvent{Phase: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("event for no boot: %v", err)
	}
}

// TestConcurrentWriters: many goroutines writing at once all succeed
// (BEGIN IMMEDIATE and busy_timeout serialise them).
func TestConcurrentWriters(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
			if _, err := d.SeeMachine(ctx, Machine{MAC: mac, Profile: "lab"}, Enrolled, Quota{}); err != nil {
				errs <- err
				return
			}
			if _, err := d.StartBoot(ctx, Boot{MAC: mac, Profile: "lab"}, BootEvent{Phase: "script", Outcome: "ok"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBackup(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	d.AddUser(ctx, "alice", "hash")
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := d.Backup(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	if err := d.Backup(ctx, dst); err == nil {
		t.Error("backup overwrote an existing file")
	}
	c, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.User(ctx, "alice"); err != nil {
		t.Errorf("backup lacks the user: %v", err)
	}
}

func TestLeases(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	if _, ok, err := d.Lease(ctx, "52:54:00:00:00:01"); ok || err != nil {
		t.Fatalf("no lease yet: %v %v", ok, err)
	}
	exp := time.UnixMilli(1_800_000_000_000).UTC()
	d.PutLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.100", Expires: exp})
	d.PutLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.101", Expires: exp, Hostname: "pc1"})
	l, ok, err := d.Lease(ctx, "52:54:00:00:00:01")
	if !ok || err != nil || l.IP != "192.0.2.101" || l.Hostname != "pc1" || !l.Expires.Equal(exp) {
		t.Errorf("lease: %+v %v %v", l, ok, err)
	}
	all, _ := d.Leases(ctx)
	if len(all) != 1 {
		t.Errorf("all: %+v", all)
	}
	d.DeleteLease(ctx, "52:54:00:00:00:01")
	if _, ok, _ := d.Lease(ctx, "52:54:00:00:00:01"); ok {
		t.Error("deleted lease kept")
	}
}
