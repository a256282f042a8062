package dhcp

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestMemLeases(t *testing.T) {
	eq := cmpopts.EquateComparable(netip.Addr{})
	var s MemLeases // the zero value is ready
	if _, ok, err := s.Get(macA); ok || err != nil {
		t.Fatalf("Get on an empty store = %v, %v", ok, err)
	}
	if err := s.Delete(macA); err != nil {
		t.Fatalf("Delete of nothing: %v", err)
	}
	a := Lease{MAC: macA, IP: addr("192.0.2.101"), Expires: t0, Hostname: "a"}
	b := Lease{MAC: macB, IP: addr("192.0.2.100"), Expires: t0.Add(time.Hour)}
	for _, l := range []Lease{a, b} {
		if err := s.Put(l); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Get(macA)
	if !ok || err != nil {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if diff := cmp.Diff(a, got, eq); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	// What it returns and what it was given are copies.
	got.MAC[5] = 0xff
	all, _ := s.All()
	if diff := cmp.Diff([]Lease{b, a}, all, eq); diff != "" {
		t.Errorf("All, sorted by address (-want +got):\n%s", diff)
	}
	// Put replaces the MAC's lease.
	a2 := Lease{MAC: macA, IP: addr("192.0.2.102"), Expires: t0.Add(time.Minute)}
	if err := s.Put(a2); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(macB); err != nil {
		t.Fatal(err)
	}
	all, _ = s.All()
	if diff := cmp.Diff([]Lease{a2}, all, eq); diff != "" {
		t.Errorf("All after Put and Delete (-want +got):\n%s", diff)
	}
}

func TestMemLeasesConcurrent(t *testing.T) {
	var s MemLeases
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				l := Lease{MAC: []byte{0x52, 0x54, 0, 0, byte(i), byte(j)}, IP: addr("192.0.2.1")}
				_ = s.Put(l)
				_, _, _ = s.Get(l.MAC)
				_, _ = s.All()
				if j%2 == 0 {
					_ = s.Delete(l.MAC)
				}
			}
		})
	}
	wg.Wait()
	if all, _ := s.All(); len(all) != 400 {
		t.Errorf("%d leases, want 400", len(all))
	}
}
