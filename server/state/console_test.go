package state

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestConsoleSessionLife: a session put is read back as stored, is
// ErrNotFound once expired by the store's clock, and after its deletion
// (a second deletion is no error).
func TestConsoleSessionLife(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0).UTC()
		d.SetClock(func() time.Time { return now })
		want := ConsoleSession{Hash: "h1", TokenID: "tok1", Created: now, Expires: now.Add(time.Hour), Seen: now}
		if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: "h1", TokenID: "tok1", Expires: want.Expires}, 10); err != nil {
			t.Fatal(err)
		}
		got, err := d.ConsoleSession(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("session (-want +got):\n%s", diff)
		}
		if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: "h1", TokenID: "tok2", Expires: want.Expires}, 10); !errors.Is(err, ErrExists) {
			t.Errorf("a hash stored twice: %v, want ErrExists", err)
		}
		if _, err := d.ConsoleSession(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("an absent session: %v, want ErrNotFound", err)
		}

		now = want.Expires.Add(-time.Millisecond)
		if _, err := d.ConsoleSession(ctx, "h1"); err != nil {
			t.Errorf("a millisecond before it expires: %v", err)
		}
		now = want.Expires
		if _, err := d.ConsoleSession(ctx, "h1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired: %v, want ErrNotFound", err)
		}

		if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: "h2", TokenID: "tok1", Expires: now.Add(time.Hour)}, 10); err != nil {
			t.Fatal(err)
		}
		if n := countSessions(t, d); n != 1 {
			t.Errorf("%d sessions after a put, want 1: the expired one stays", n)
		}
		if err := d.DeleteConsoleSession(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ConsoleSession(ctx, "h2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted: %v, want ErrNotFound", err)
		}
		if err := d.DeleteConsoleSession(ctx, "h2"); err != nil {
			t.Errorf("deleting an absent session: %v", err)
		}
	})
}

// TestConsoleSessionRefused: a session without hash, token or future
// expiry, or with no room, is refused and nothing is stored.
func TestConsoleSessionRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		for _, tc := range []struct {
			name string
			s    ConsoleSession
			max  int
		}{
			{"no hash", ConsoleSession{TokenID: "t", Expires: exp}, 1},
			{"no token", ConsoleSession{Hash: "h", Expires: exp}, 1},
			{"expired", ConsoleSession{Hash: "h", TokenID: "t", Expires: time.Now().Add(-time.Second)}, 1},
			{"no expiry", ConsoleSession{Hash: "h", TokenID: "t"}, 1},
			{"max 0", ConsoleSession{Hash: "h", TokenID: "t", Expires: exp}, 0},
		} {
			if err := d.PutConsoleSession(ctx, tc.s, tc.max); err == nil {
				t.Errorf("%s: stored", tc.name)
			}
		}
		if n := countSessions(t, d); n != 0 {
			t.Errorf("%d sessions stored, want 0", n)
		}
	})
}

// TestConsoleSessionsBounded: with max sessions live, a new one evicts
// the oldest; expired ones go first and count for nothing.
func TestConsoleSessionsBounded(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0).UTC()
		d.SetClock(func() time.Time { return now })
		const max = 3
		put := func(hash string, life time.Duration) {
			t.Helper()
			now = now.Add(time.Second)
			if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: hash, TokenID: "tok", Expires: now.Add(life)}, max); err != nil {
				t.Fatal(err)
			}
		}
		put("short", 1500*time.Millisecond) // expired by the third put
		put("a", time.Hour)
		put("b", time.Hour)
		put("c", time.Hour)
		// short expired and a, b, c are max: short goes, then a.
		put("d", time.Hour)
		live := func() []string {
			var out []string
			for _, h := range []string{"short", "a", "b", "c", "d"} {
				if _, err := d.ConsoleSession(ctx, h); err == nil {
					out = append(out, h)
				} else if !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			return out
		}
		if diff := cmp.Diff([]string{"b", "c", "d"}, live()); diff != "" {
			t.Errorf("live sessions (-want +got):\n%s", diff)
		}
		if n := countSessions(t, d); n != max {
			t.Errorf("%d rows, want %d", n, max)
		}
		if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: "e", TokenID: "tok", Expires: now.Add(time.Hour)}, 1); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"e"}, liveOf(t, d, "b", "c", "d", "e")); diff != "" {
			t.Errorf("max 1: live sessions (-want +got):\n%s", diff)
		}
		if n := countSessions(t, d); n != 1 {
			t.Errorf("max 1: %d rows, want 1", n)
		}
	})
}

func liveOf(t *testing.T, d *DB, hashes ...string) []string {
	t.Helper()
	var out []string
	for _, h := range hashes {
		if _, err := d.ConsoleSession(context.Background(), h); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// TestConsoleSessionsOfToken: DeleteConsoleSessionsOf and DeleteAPIToken
// delete a token's sessions and no other's.
func TestConsoleSessionsOfToken(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		for _, id := range []string{"aaaa", "bbbb", "cccc"} {
			if err := d.AddAPIToken(ctx, APIToken{ID: id, Name: id, Scope: "read", Hash: "h" + id}); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := d.PutConsoleSession(ctx, ConsoleSession{Hash: fmt.Sprintf("%s%d", id, i), TokenID: id, Expires: exp}, 100); err != nil {
					t.Fatal(err)
				}
			}
		}
		n, err := d.DeleteConsoleSessionsOf(ctx, "aaaa")
		if err != nil || n != 2 {
			t.Errorf("DeleteConsoleSessionsOf: %d, %v; want 2", n, err)
		}
		if n, err := d.DeleteConsoleSessionsOf(ctx, "aaaa"); err != nil || n != 0 {
			t.Errorf("DeleteConsoleSessionsOf again: %d, %v; want 0", n, err)
		}
		if err := d.DeleteAPIToken(ctx, "bbbb"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteAPIToken(ctx, "bbbb"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting a deleted token: %v, want ErrNotFound", err)
		}
		got := liveOf(t, d, "aaaa0", "aaaa1", "bbbb0", "bbbb1", "cccc0", "cccc1")
		if diff := cmp.Diff([]string{"cccc0", "cccc1"}, got); diff != "" {
			t.Errorf("live sessions (-want +got):\n%s", diff)
		}
		if _, err := d.APITokenByID(ctx, "cccc"); err != nil {
			t.Errorf("the other token: %v", err)
		}
	})
}

func countSessions(t *testing.T, d *DB) int {
	t.Helper()
	var n int
	if err := d.sql.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM console_sessions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
