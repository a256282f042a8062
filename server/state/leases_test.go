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
