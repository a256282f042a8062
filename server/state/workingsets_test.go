package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

func TestWorkingSets(t *testing.T) { eachStore(t, testWorkingSets) }

// testWorkingSets: a boot reports once; the next boots get the union of
// the image's last KeepWorkingSets sets, and nothing of another image's.
func testWorkingSets(t *testing.T, d *DB) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000).UTC()
	d.SetClock(func() time.Time { return now })
	const img, other = "sha256:aa", "sha256:bb"
	const cs = 256 << 10

	if _, n, err := d.WorkingSet(ctx, img); err != nil || n != 0 {
		t.Fatalf("before any report: %d boots, %v", n, err)
	}
	a := boot.WorkingSet{ChunkSize: cs, Image: ranges("0-3,10"), Tree: ranges("0")}
	b := boot.WorkingSet{ChunkSize: cs, Image: ranges("2-5"), Tree: ranges("1")}
	if err := d.AddWorkingSet(ctx, 1, img, a); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if err := d.AddWorkingSet(ctx, 2, img, b); err != nil {
		t.Fatal(err)
	}
	if err := d.AddWorkingSet(ctx, 3, other, boot.WorkingSet{ChunkSize: cs, Image: ranges("100-200")}); err != nil {
		t.Fatal(err)
	}
	// Boot 1 again, with another set: refused, and nothing changes.
	err := d.AddWorkingSet(ctx, 1, img, boot.WorkingSet{ChunkSize: cs, Image: ranges("50-60")})
	if !errors.Is(err, ErrExists) {
		t.Errorf("a second report of boot 1: %v, want ErrExists", err)
	}
	if err := d.AddWorkingSet(ctx, 4, img, boot.WorkingSet{ChunkSize: 3}); err == nil {
		t.Errorf("an invalid set was stored")
	}
	got, n, err := d.WorkingSet(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	want := boot.WorkingSet{ChunkSize: cs, Image: ranges("0-5,10"), Tree: ranges("0-1")}
	if diff := cmp.Diff(want, got); diff != "" || n != 2 {
		t.Errorf("union of %d boots (-want +got):\n%s", n, diff)
	}

	// Past KeepWorkingSets boots the oldest go: boot 1's chunk 10 and
	// tree chunk 0 leave the union.
	for i := range KeepWorkingSets - 1 {
		now = now.Add(time.Second)
		if err := d.AddWorkingSet(ctx, int64(10+i), img, b); err != nil {
			t.Fatal(err)
		}
	}
	got, n, err = d.WorkingSet(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" || n != KeepWorkingSets {
		t.Errorf("after %d more boots, a union of %d (-want +got):\n%s", KeepWorkingSets-1, n, diff)
	}
	var rows int
	if err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM working_sets WHERE image = ?`, img).Scan(&rows); err != nil || rows != KeepWorkingSets {
		t.Errorf("%d rows kept for the image (%v), want %d", rows, err, KeepWorkingSets)
	}
}

func TestUnionWorkingSets(t *testing.T) {
	const cs = 4096
	sets := []boot.WorkingSet{
		{ChunkSize: cs, Image: ranges("0-1,7"), Tree: ranges("0")},
		{ChunkSize: cs, Image: ranges("1-2"), Tree: ranges("0")},
		{ChunkSize: cs, Image: ranges("1,9")},
		{ChunkSize: 2 * cs, Image: ranges("40")}, // another chunk size: left out
	}
	got, n := UnionWorkingSets(sets, 100)
	want := boot.WorkingSet{ChunkSize: cs, Image: ranges("0-2,7,9"), Tree: ranges("0")}
	if diff := cmp.Diff(want, got); diff != "" || n != 3 {
		t.Errorf("union of %d (-want +got):\n%s", n, diff)
	}
	// Three chunks at most: image chunk 1 (3 boots), tree chunk 0 (2),
	// then of those one boot read, the lowest: image chunk 0.
	got, _ = UnionWorkingSets(sets, 3)
	want = boot.WorkingSet{ChunkSize: cs, Image: ranges("0-1"), Tree: ranges("0")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("capped at 3 (-want +got):\n%s", diff)
	}
	if got, n := UnionWorkingSets(nil, 3); n != 0 || got.Count() != 0 {
		t.Errorf("no sets: %+v, %d", got, n)
	}
}

// ranges reads chunk ranges in their text form ("0-3,17").
func ranges(s string) boot.ChunkRanges {
	var r boot.ChunkRanges
	if err := r.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return r
}
