package state

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestWriteLeases: a batch in one transaction; a put on an address
// another MAC holds is refused and reported, the rest applied; another
// MAC's expired lease on the address goes; a batch that fails part-way
// leaves nothing written.
func TestWriteLeases(t *testing.T) { eachStore(t, testWriteLeases) }

func testWriteLeases(t *testing.T, d *DB) {
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	live, past := now.Add(time.Hour), now.Add(-time.Hour)
	seed := []LeaseWrite{
		{Lease: Lease{MAC: "52:54:00:00:00:0a", IP: "192.0.2.100", Expires: live}},
		{Lease: Lease{MAC: "52:54:00:00:00:0b", IP: "192.0.2.101", Expires: past}},
		{Lease: Lease{MAC: "52:54:00:00:00:0c", IP: "192.0.2.102", Expires: live, Hostname: "c"}},
	}
	if cs, err := d.WriteLeases(ctx, seed, now); err != nil || len(cs) != 0 {
		t.Fatalf("seed: %v %v", cs, err)
	}
	cs, err := d.WriteLeases(ctx, []LeaseWrite{
		{Lease: Lease{MAC: "52:54:00:00:00:0d", IP: "192.0.2.101", Expires: live}},                // B's has expired: D takes it
		{Lease: Lease{MAC: "52:54:00:00:00:0e", IP: "192.0.2.102", Expires: live}},                // C's runs on: refused
		{Lease: Lease{MAC: "52:54:00:00:00:0a"}, Delete: true},                                    // A goes
		{Lease: Lease{MAC: "52:54:00:00:00:0c", IP: "192.0.2.102", Expires: live.Add(time.Hour)}}, // C renews
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Index != 1 || cs[0].Owner.MAC != "52:54:00:00:00:0c" || !cs[0].Owner.Expires.Equal(live) || cs[0].Owner.Hostname != "c" {
		t.Errorf("conflicts: %+v, want index 1 owned by C until %v", cs, live)
	}
	want := map[string]string{"52:54:00:00:00:0d": "192.0.2.101", "52:54:00:00:00:0c": "192.0.2.102"}
	all, err := d.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Errorf("leases %+v, want %v", all, want)
	}
	for _, l := range all {
		if want[l.MAC] != l.IP {
			t.Errorf("lease %+v, want %v", l, want)
		}
	}
	if err := d.PutLease(ctx, Lease{MAC: "52:54:00:00:00:0f", IP: "192.0.2.102", Expires: live}); !errors.Is(err, ErrExists) {
		t.Errorf("PutLease on C's address: %v, want ErrExists", err)
	}

	// A batch whose second write fails: its first, a delete that
	// succeeded in the transaction, is undone too.
	if _, err := d.w.ExecContext(ctx, `ALTER TABLE leases RENAME COLUMN hostname TO hn`); err != nil {
		t.Fatal(err)
	}
	_, err = d.WriteLeases(ctx, []LeaseWrite{
		{Lease: Lease{MAC: "52:54:00:00:00:0d"}, Delete: true},
		{Lease: Lease{MAC: "52:54:00:00:00:10", IP: "192.0.2.110", Expires: live}},
	}, now)
	if err == nil {
		t.Fatal("a batch against a broken table did not fail")
	}
	if _, err := d.w.ExecContext(ctx, `ALTER TABLE leases RENAME COLUMN hn TO hostname`); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.Lease(ctx, "52:54:00:00:00:0d"); !ok {
		t.Errorf("the failed batch's delete was kept")
	}
	if _, ok, _ := d.Lease(ctx, "52:54:00:00:00:10"); ok {
		t.Errorf("the failed batch's put was kept")
	}
}

// TestMigrateLeasesUnique: leases an older version kept on one address
// are cut to the one that expires last, and an address is unique from
// then on.
func TestMigrateLeasesUnique(t *testing.T) { eachStore(t, testMigrateLeasesUnique) }

func testMigrateLeasesUnique(t *testing.T, d *DB) {
	ctx := context.Background()
	for _, q := range []string{
		`DROP INDEX leases_by_ip`,
		`INSERT INTO leases (mac, ip, expires_at) VALUES ('52:54:00:00:00:01', '192.0.2.100', 1000)`,
		`INSERT INTO leases (mac, ip, expires_at) VALUES ('52:54:00:00:00:02', '192.0.2.100', 3000)`,
		`INSERT INTO leases (mac, ip, expires_at) VALUES ('52:54:00:00:00:03', '192.0.2.100', 2000)`,
		`INSERT INTO leases (mac, ip, expires_at) VALUES ('52:54:00:00:00:04', '192.0.2.101', 1000)`,
		// Steps after it run again: undo those that cannot.
		`ALTER TABLE images DROP COLUMN source`, `ALTER TABLE images DROP COLUMN source_digest`,
		`ALTER TABLE images DROP COLUMN own_kernel`, `ALTER TABLE images DROP COLUMN own_initramfs`, `ALTER TABLE images DROP COLUMN own_modules`,
		fmt.Sprintf(`UPDATE schema_version SET version = %d`, leasesUniqueStep-1),
	} {
		if _, err := d.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	d, err := reopen(t, d)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := d.Leases(ctx)
	if len(all) != 2 || all[0].MAC != "52:54:00:00:00:02" || all[1].MAC != "52:54:00:00:00:04" {
		t.Errorf("leases after the migration: %+v, want 02 on .100 and 04 on .101", all)
	}
	if _, err := d.w.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at) VALUES ('52:54:00:00:00:05', '192.0.2.101', 1)`); err == nil {
		t.Errorf("a second lease on one address was stored")
	}
}

// leasesUniqueStep is the schema step that makes an address unique.
const leasesUniqueStep = 11

// TestWriteLeasesRace: two servers (two handles on one store) put two
// MACs on one address at the same instant, many times: each time one
// wins and the other's put comes back as a conflict naming the winner,
// never as an error (on PostgreSQL the loser's transaction may be
// aborted, 40001 or 23505, and runs again, which then sees the winner).
func TestWriteLeasesRace(t *testing.T) { eachStore(t, testWriteLeasesRace) }

func testWriteLeasesRace(t *testing.T, a *DB) {
	ctx := context.Background()
	b, err := reopen(t, a)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_800_000_000_000).UTC()
	const rounds = 200
	for i := range rounds {
		ip := fmt.Sprintf("192.0.2.%d", 10+i)
		macs := []string{fmt.Sprintf("52:54:00:00:a%d:%02x", 0, i), fmt.Sprintf("52:54:00:00:a%d:%02x", 1, i)}
		start := make(chan struct{})
		type result struct {
			cs  []LeaseConflict
			err error
		}
		res := make([]result, 2)
		done := make(chan struct{})
		for k, d := range []*DB{a, b} {
			go func() {
				defer func() { done <- struct{}{} }()
				<-start
				// Two writes, as a batch has: another MAC's lease first,
				// then the contested one.
				res[k].cs, res[k].err = d.WriteLeases(ctx, []LeaseWrite{
					{Lease: Lease{MAC: fmt.Sprintf("52:54:00:01:%02x:%02x", k, i), IP: fmt.Sprintf("%s.%d", []string{"198.51.100", "203.0.113"}[k], i), Expires: now.Add(time.Hour)}},
					{Lease: Lease{MAC: macs[k], IP: ip, Expires: now.Add(time.Hour)}},
				}, now)
			}()
		}
		close(start)
		<-done
		<-done
		for k := range res {
			if res[k].err != nil {
				t.Fatalf("round %d: server %d: %v", i, k, res[k].err)
			}
		}
		l, ok, err := a.Lease(ctx, macs[0])
		if err != nil {
			t.Fatal(err)
		}
		winner := 1
		if ok && l.IP == ip {
			winner = 0
		}
		loser := 1 - winner
		if len(res[winner].cs) != 0 {
			t.Errorf("round %d: the winner %d got conflicts %+v", i, winner, res[winner].cs)
		}
		if cs := res[loser].cs; len(cs) != 1 || cs[0].Index != 1 || cs[0].Owner.MAC != macs[winner] || cs[0].Owner.IP != ip {
			t.Errorf("round %d: the loser %d got conflicts %+v, want index 1 owned by %s", i, loser, cs, macs[winner])
		}
		if _, ok, _ := a.Lease(ctx, macs[loser]); ok {
			t.Errorf("round %d: the loser's lease was stored", i)
		}
		// The loser's other write went in all the same.
		if _, ok, _ := a.Lease(ctx, fmt.Sprintf("52:54:00:01:%02x:%02x", loser, i)); !ok {
			t.Errorf("round %d: the loser's other write was not stored", i)
		}
	}
}

// TestWriteLeasesUniqueRetried: on PostgreSQL, a put that meets another
// transaction's insert of the same address (one that is not
// serializable, so PostgreSQL reports the unique index's 23505 rather
// than a serialization failure) runs again and reports the conflict,
// instead of failing the whole batch.
func TestWriteLeasesUniqueRetried(t *testing.T) {
	d := openPostgres(t)
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	other, err := d.wdb.BeginTx(ctx, nil) // READ COMMITTED
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname) VALUES ($1, $2, $3, '')`,
		"52:54:00:00:00:01", "192.0.2.50", now.Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		cs  []LeaseConflict
		err error
	}
	got := make(chan result, 1)
	go func() {
		cs, err := d.WriteLeases(ctx, []LeaseWrite{{Lease: Lease{MAC: "52:54:00:00:00:02", IP: "192.0.2.50", Expires: now.Add(time.Hour)}}}, now)
		got <- result{cs, err}
	}()
	// The put waits on the unique index for the other transaction; wait
	// until PostgreSQL says it does, then commit.
	for {
		var waiting int
		if err := d.sql.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-got:
			t.Fatalf("the put returned before the other insert committed: %+v %v", r.cs, r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("WriteLeases: %v, want the conflict reported", r.err)
	}
	if len(r.cs) != 1 || r.cs[0].Owner.MAC != "52:54:00:00:00:01" {
		t.Errorf("conflicts %+v, want one owned by 52:54:00:00:00:01", r.cs)
	}
}

// TestWriteLeasesPrev: a write with Prev is refused, and reported with
// the MAC's lease, when the MAC's live lease is not Prev and the write
// would move, shorten or delete it; a renewal on the same address, or a
// write over an expired lease, goes in.
func TestWriteLeasesPrev(t *testing.T) { eachStore(t, testWriteLeasesPrev) }

func testWriteLeasesPrev(t *testing.T, d *DB) {
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	a := Lease{MAC: "52:54:00:00:00:0a", IP: "192.0.2.100", Expires: now.Add(time.Hour)}
	b := Lease{MAC: "52:54:00:00:00:0b", IP: "192.0.2.101", Expires: now.Add(-time.Hour)}
	if cs, err := d.WriteLeases(ctx, []LeaseWrite{{Lease: a}, {Lease: b}}, now); err != nil || len(cs) != 0 {
		t.Fatalf("seed: %v %v", cs, err)
	}
	none := &Lease{}
	stale := &Lease{MAC: a.MAC, IP: a.IP, Expires: now.Add(time.Minute)}
	later := Lease{MAC: a.MAC, IP: a.IP, Expires: now.Add(2 * time.Hour)}
	for _, tc := range []struct {
		name     string
		w        LeaseWrite
		conflict bool
		after    Lease // a's or b's lease after the write
	}{
		{"a hold elsewhere from a server that knew no lease", LeaseWrite{Lease: Lease{MAC: a.MAC, IP: "192.0.2.150", Expires: now.Add(10 * time.Second)}, Prev: none}, true, a},
		{"a shorter hold on the same address", LeaseWrite{Lease: Lease{MAC: a.MAC, IP: a.IP, Expires: now.Add(10 * time.Second)}, Prev: none}, true, a},
		{"a delete from a server with a stale record", LeaseWrite{Lease: Lease{MAC: a.MAC}, Delete: true, Prev: stale}, true, a},
		{"a renewal on the same address", LeaseWrite{Lease: later, Prev: none}, false, later},
		{"over an expired lease", LeaseWrite{Lease: Lease{MAC: b.MAC, IP: "192.0.2.102", Expires: now.Add(time.Hour)}, Prev: none}, false, Lease{MAC: b.MAC, IP: "192.0.2.102", Expires: now.Add(time.Hour)}},
		{"a delete from the server that knows", LeaseWrite{Lease: Lease{MAC: a.MAC}, Delete: true, Prev: &later}, false, Lease{MAC: a.MAC}},
	} {
		cs, err := d.WriteLeases(ctx, []LeaseWrite{tc.w}, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := len(cs) > 0; got != tc.conflict {
			t.Errorf("%s: conflicts %+v, want a conflict: %v", tc.name, cs, tc.conflict)
		}
		if tc.conflict && len(cs) == 1 && (cs[0].Owner.MAC != a.MAC || cs[0].Owner.IP != a.IP || !cs[0].Owner.Expires.Equal(a.Expires)) {
			t.Errorf("%s: conflict owner %+v, want %+v", tc.name, cs[0].Owner, a)
		}
		l, ok, err := d.Lease(ctx, tc.after.MAC)
		if err != nil {
			t.Fatal(err)
		}
		if tc.after.IP == "" {
			if ok {
				t.Errorf("%s: %s still has %+v", tc.name, tc.after.MAC, l)
			}
			continue
		}
		if !ok || l.IP != tc.after.IP || !l.Expires.Equal(tc.after.Expires) {
			t.Errorf("%s: lease %+v (%v), want %+v", tc.name, l, ok, tc.after)
		}
	}
}
