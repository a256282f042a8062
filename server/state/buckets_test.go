package state

import (
	"context"
	"testing"
	"time"
)

// TestTakeTokenShared: a bucket in the store is one bucket for every
// handle on it (two servers): burst tokens in all, then one per every;
// a full bucket is pruned.
func TestTakeTokenShared(t *testing.T) { eachStore(t, testTakeTokenShared) }

func testTakeTokenShared(t *testing.T, a *DB) {
	b, err := reopen(t, a)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	a.SetClock(clock)
	b.SetClock(clock)
	ctx := context.Background()
	const every, burst = 20 * time.Second, 5
	took := 0
	for i := range 2 * burst {
		d := a
		if i%2 == 1 {
			d = b
		}
		ok, err := d.TakeToken(ctx, "login:alice", every, burst)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			took++
		}
	}
	if took != burst {
		t.Fatalf("two servers took %d tokens of a bucket of %d", took, burst)
	}
	if ok, _ := b.TakeToken(ctx, "login:bob", every, burst); !ok {
		t.Fatal("another key's bucket is empty")
	}
	now = now.Add(every)
	if ok, _ := b.TakeToken(ctx, "login:alice", every, burst); !ok {
		t.Fatal("no token one period later")
	}
	if ok, _ := a.TakeToken(ctx, "login:alice", every, burst); ok {
		t.Fatal("two tokens one period later")
	}
	// bob's bucket (one token taken a period ago) is full again, alice's
	// is empty.
	if n, err := a.PruneBuckets(ctx); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want bob's full bucket only", n, err)
	}
	now = now.Add(burst * every)
	if n, err := a.PruneBuckets(ctx); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want alice's bucket, full again", n, err)
	}
}

func TestRefill(t *testing.T) {
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		tokens float64
		after  time.Duration
		want   float64
		ok     bool
	}{
		{5, 0, 4, true},
		{0.5, 0, 0.5, false},
		{0.5, 10 * time.Second, 0, true},
		{0, time.Hour, 4, true},    // capped at burst before taking
		{3, -time.Second, 2, true}, // a clock going back adds nothing
	} {
		got, ok := Refill(tc.tokens, t0, t0.Add(tc.after), 20*time.Second, 5)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Refill(%v, +%v) = %v %v, want %v %v", tc.tokens, tc.after, got, ok, tc.want, tc.ok)
		}
	}
}
