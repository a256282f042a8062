package dhcp

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Two Full servers on one link and one store (refresh.go's case), driven
// by hand: each sees only the messages a test sends it.

// twoServers returns harnesses a (192.0.2.1) and b (192.0.2.2) on one
// MemLeases, with one clock (a's: set a.now, b follows), pool
// 192.0.2.100-120.
func twoServers(t *testing.T) (a, b *harness, store *MemLeases) {
	t.Helper()
	store = &MemLeases{}
	cfg := testNet()
	cfg.End = addr("192.0.2.120")
	a = newHarnessOn(t, cfg, nil, store)
	a.leases = store
	cfg.ServerIP = addr("192.0.2.2")
	b = newHarnessOn(t, cfg, nil, store)
	b.leases = store
	b.f.now = func() time.Time { return a.now }
	return a, b, store
}

func selectingAt(server, ip string) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP(server)))
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
}

// waitRefresh waits until h's Full has done n refreshes.
func waitRefresh(t *testing.T, h *harness, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for h.f.stats.Refreshes.Load() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("no refresh %d", n)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestFullsShareLeases: both servers answer a client's DISCOVER; the
// client takes A's offer; B, withdrawing its own offer, and later its
// hold lapsing, never deletes or moves the lease A gave (LeaseWrite.Prev).
// A client B alone served is not given to another by A: A's put is
// refused, not answered, and A learns the lease and then (refresh) the
// other leases B gave meanwhile, so that its next offer skips them all.
func TestFullsShareLeases(t *testing.T) {
	a, b, store := twoServers(t)
	oa, ob := a.send(macA, dhcpv4.MessageTypeDiscover), b.send(macA, dhcpv4.MessageTypeDiscover)
	if oa == nil || ob == nil {
		t.Fatalf("offers %v %v, want one from each server", oa, ob)
	}
	ip := oa.YourIPAddr.String()
	if r := a.send(macA, dhcpv4.MessageTypeRequest, selectingAt("192.0.2.1", ip)); kind(r) != "ACK" {
		t.Fatalf("A's ACK: %s", kind(r))
	}
	if r := b.send(macA, dhcpv4.MessageTypeRequest, selectingAt("192.0.2.1", ip)); r != nil {
		t.Fatalf("B answered a REQUEST naming A: %s", kind(r))
	}
	a.now = a.now.Add(2 * offerHold) // B's hold, had it one, lapses
	b.send(macE, dhcpv4.MessageTypeInform, ciaddr("192.0.2.200"))
	if l, ok, _ := store.Get(macA); !ok || l.IP.String() != ip || !l.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("A's lease of %s in the store: %+v %v, want %s until %v", macA, l, ok, ip, t0.Add(time.Hour))
	}

	// B alone serves C, D and E (A misses their DISCOVERs).
	given := map[string]bool{ip: true}
	for _, mac := range []net.HardwareAddr{macC, macD, macE} {
		o := b.send(mac, dhcpv4.MessageTypeDiscover)
		if o == nil {
			t.Fatalf("B: no offer to %s", mac)
		}
		got := o.YourIPAddr.String()
		if r := b.send(mac, dhcpv4.MessageTypeRequest, selectingAt("192.0.2.2", got)); kind(r) != "ACK" {
			t.Fatalf("B: %s for %s", kind(r), mac)
		}
		given[got] = true
	}
	refreshes := a.f.stats.Refreshes.Load()
	// A, not knowing, picks its next free address for B: one of B's.
	if r := a.send(macB, dhcpv4.MessageTypeDiscover); r != nil {
		t.Errorf("A offered %s to B: that address is B's server's client's", r.YourIPAddr)
	}
	waitRefresh(t, a, refreshes+1)
	o := a.send(macB, dhcpv4.MessageTypeDiscover)
	if o == nil || given[o.YourIPAddr.String()] {
		t.Fatalf("A's offer to B after the refresh: %v, want an address none of %v", o, given)
	}
	if r := a.send(macB, dhcpv4.MessageTypeRequest, selectingAt("192.0.2.1", o.YourIPAddr.String())); kind(r) != "ACK" {
		t.Errorf("A's ACK to B: %s", kind(r))
	}
	wantUnique(t, store, a.now)
}

// wantUnique fails the test when two MACs hold one address live at now.
func wantUnique(t *testing.T, store Leases, now time.Time) {
	t.Helper()
	all, err := store.All()
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, l := range all {
		if !l.Expires.After(now) {
			continue
		}
		if o, dup := held[l.IP.String()]; dup {
			t.Errorf("%v held by %s and %s", l.IP, o, l.MAC)
		}
		held[l.IP.String()] = l.MAC.String()
	}
}
