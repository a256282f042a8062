package state

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLeases6: one lease per (DUID, IAID); an address is in one lease at
// most (putting it for another IA replaces that IA's); the leases are
// still there when the store is opened again.
func TestLeases6(t *testing.T) {
	eachStore(t, testLeases6)
}

func testLeases6(t *testing.T, d *DB) {
	ctx := context.Background()
	exp := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	if _, ok, err := d.Lease6(ctx, "0003000152540000000a", 1); ok || err != nil {
		t.Fatalf("lease of a new store: %v, %v", ok, err)
	}
	for _, l := range []Lease6{
		{DUID: "0003000152540000000a", IAID: 1, IP: "2001:db8::100", Expires: exp, MAC: "52:54:00:00:00:0a"},
		// The same DUID's second IA: its own lease.
		{DUID: "0003000152540000000a", IAID: 2, IP: "2001:db8::101", Expires: exp, MAC: "52:54:00:00:00:0a"},
		// The first IA moves to another address.
		{DUID: "0003000152540000000a", IAID: 1, IP: "2001:db8::102", Expires: exp.Add(time.Hour), MAC: "52:54:00:00:00:0a"},
		// Another client takes ::101 (its lease had expired): the second
		// IA's record goes.
		{DUID: "00040123", IAID: 7, IP: "2001:db8::101", Expires: exp},
	} {
		if err := d.PutLease6(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	want := []Lease6{
		{DUID: "00040123", IAID: 7, IP: "2001:db8::101", Expires: exp},
		{DUID: "0003000152540000000a", IAID: 1, IP: "2001:db8::102", Expires: exp.Add(time.Hour), MAC: "52:54:00:00:00:0a"},
	}
	all, err := d.Leases6(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	d.Close()

	d, err = reopen(t, d)
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := d.Lease6(ctx, "0003000152540000000a", 1)
	if !ok || err != nil || l != want[1] {
		t.Errorf("after reopening: %+v, %v, %v; want %+v", l, ok, err, want[1])
	}
	if err := d.DeleteLease6(ctx, "0003000152540000000a", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.Lease6(ctx, "0003000152540000000a", 1); ok {
		t.Error("deleted lease still there")
	}
	if err := d.DeleteLease6(ctx, "0003000152540000000a", 1); err != nil {
		t.Errorf("deleting no lease: %v", err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
