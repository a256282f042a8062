package state

import (
	"context"
	"errors"
	"testing"
)

func TestDiskHomes(t *testing.T) { eachStore(t, testDiskHomes) }

func testDiskHomes(t *testing.T, d *DB) {
	ctx := context.Background()
	// Two disks of a store from before homes (no home), one under /srv/a's
	// data directory, one under /srv/ab (a name that only starts alike).
	a, err := d.AddDisk(ctx, Disk{OwnerKind: OwnerMachine, Owner: "52:54:00:00:00:01", Profile: "lab", Kind: DiskUpper, Path: "/srv/a/disks/1/upper.img", Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	ab, err := d.AddDisk(ctx, Disk{OwnerKind: OwnerMachine, Owner: "52:54:00:00:00:02", Profile: "lab", Kind: DiskUpper, Path: "/srv/ab/disks/2/upper.img", Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := d.AdoptDisks(ctx, "srv-a", "/srv/a/"); err != nil || n != 1 {
		t.Fatalf("adopt: %d %v, want 1", n, err)
	}
	if k, _ := d.DiskByID(ctx, a); k.Home != "srv-a" {
		t.Errorf("disk under /srv/a: home %q, want srv-a", k.Home)
	}
	if k, _ := d.DiskByID(ctx, ab); k.Home != "" {
		t.Errorf("disk under /srv/ab adopted by the server of /srv/a: home %q", k.Home)
	}
	// Adopting again changes nothing: a disk with a home keeps it.
	if n, _ := d.AdoptDisks(ctx, "srv-ab", "/srv"); n != 1 {
		t.Errorf("adopt under /srv: %d, want only the home-less disk", n)
	}
	if k, _ := d.DiskByID(ctx, a); k.Home != "srv-a" {
		t.Errorf("an adopted disk changed home: %q", k.Home)
	}
	k, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 1, Home: "srv-b"}, Quota{}, func(id int64) string { return "/srv/b/x" })
	if err != nil || k.Home != "srv-b" {
		t.Fatalf("a new disk's home: %+v %v", k, err)
	}
}

func TestDiskMoveStates(t *testing.T) { eachStore(t, testDiskMoveStates) }

func testDiskMoveStates(t *testing.T, d *DB) {
	ctx := context.Background()
	id, err := d.AddDisk(ctx, Disk{OwnerKind: OwnerMachine, Owner: "52:54:00:00:00:01", Profile: "lab", Kind: DiskUpper, Path: "/a/1", Size: 1, Home: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.BeginMove(ctx, id, "b", "c", "ss"); !errors.Is(err, ErrDiskBusy) {
		t.Fatalf("move from a server that is not its home: %v", err)
	}
	if err := d.BeginMove(ctx, id, "a", "a", "ss"); err == nil {
		t.Fatal("a move to its own home was begun")
	}
	if err := d.BeginMove(ctx, 999, "a", "b", "ss"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("move of no disk: %v", err)
	}
	if err := d.BeginMove(ctx, id, "a", "b", "ss"); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.SetMoveDigest(ctx, id, "a", "c", "dd"); ok || err != nil {
		t.Fatalf("digest of a move to another server: %v %v", ok, err)
	}
	if ok, err := d.SetMoveDigest(ctx, id, "a", "b", "dd"); !ok || err != nil {
		t.Fatalf("digest: %v %v", ok, err)
	}
	k, _ := d.DiskByID(ctx, id)
	if k.Status != DiskMoving || k.MoveTo != "b" || k.MoveDigest != "dd" || !k.MoveSecretIs("ss") || k.MoveSecretIs("s2") {
		t.Fatalf("moving: %+v", k)
	}
	if err := d.BeginMove(ctx, id, "a", "c", "s2"); !errors.Is(err, ErrDiskBusy) {
		t.Fatalf("a second move of a moving disk: %v", err)
	}
	// The wrong secret or destination finishes nothing.
	if ok, err := d.FinishMove(ctx, id, "a", "b", "s2", "/b/1"); ok || err != nil {
		t.Fatalf("finish with another secret: %v %v", ok, err)
	}
	if ok, _ := d.UndoMove(ctx, id, "a", "c"); ok {
		t.Fatal("undo of a move to another server")
	}
	if ok, err := d.UndoMove(ctx, id, "a", "b"); !ok || err != nil {
		t.Fatalf("undo: %v %v", ok, err)
	}
	if k, _ := d.DiskByID(ctx, id); k.Status != DiskReady || k.Home != "a" || k.MoveTo != "" || k.MoveDigest != "" || k.MoveSecretIs("ss") {
		t.Fatalf("undone: %+v", k)
	}
	// Undone, the old move's secret finishes nothing.
	if ok, _ := d.FinishMove(ctx, id, "a", "b", "ss", "/b/1"); ok {
		t.Fatal("an undone move finished")
	}
	if err := d.BeginMove(ctx, id, "a", "b", "s3"); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.FinishMove(ctx, id, "a", "b", "s3", "/b/1"); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if k, _ := d.DiskByID(ctx, id); k.Status != DiskReady || k.Home != "b" || k.Path != "/b/1" || k.MoveTo != "" {
		t.Fatalf("moved: %+v", k)
	}
	// Finished, it cannot be undone.
	if ok, _ := d.UndoMove(ctx, id, "a", "b"); ok {
		t.Fatal("a finished move was undone")
	}
}
