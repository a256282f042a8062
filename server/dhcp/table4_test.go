package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestTableUnused: the lowest pool address never used, skipping the
// leased and the skipped ones; an address whose lease goes is the lowest
// again.
func TestTableUnused(t *testing.T) {
	skip := func(ip netip.Addr) bool { return ip == addr("192.0.2.101") }
	tb := newTable(addr("192.0.2.100"), addr("192.0.2.104"), skip, []Lease{{MAC: macA, IP: addr("192.0.2.102"), Expires: t0}})
	var got []string
	for {
		ip, ok := tb.unused(true)
		if !ok {
			break
		}
		got = append(got, ip.String())
		tb.set(Lease{MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(len(got))}, IP: ip, Expires: t0})
	}
	if fmt.Sprint(got) != "[192.0.2.100 192.0.2.103 192.0.2.104]" {
		t.Errorf("unused in turn: %v", got)
	}
	tb.remove(net.HardwareAddr{2, 0, 0, 0, 0, 2}.String()) // 192.0.2.103's
	tb.remove(macA.String())                               // 192.0.2.102's
	if ip, _ := tb.unused(false); ip != addr("192.0.2.102") {
		t.Errorf("after two leases went: %v, want the lower, 192.0.2.102", ip)
	}
	// A lease moved to another address frees the old one.
	tb.set(Lease{MAC: macB, IP: addr("192.0.2.102"), Expires: t0})
	tb.set(Lease{MAC: macB, IP: addr("192.0.2.103"), Expires: t0})
	if ip, _ := tb.unused(false); ip != addr("192.0.2.102") {
		t.Errorf("after B moved: %v, want 192.0.2.102", ip)
	}
	if l, ok := tb.onIP(addr("192.0.2.103")); !ok || l.MAC.String() != macB.String() {
		t.Errorf("on 192.0.2.103: %v %v, want B's", l, ok)
	}
}

// TestTableOldest: expired leases by age, oldest first (the lower
// address on a tie), never a live one, a renewed one by its new expiry,
// and none the caller cannot use; declined addresses' marks end by
// endMarks.
func TestTableOldest(t *testing.T) {
	all := []Lease{
		{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(-time.Minute)},
		{MAC: macB, IP: addr("192.0.2.101"), Expires: t0.Add(-time.Hour)},
		{MAC: macC, IP: addr("192.0.2.102"), Expires: t0.Add(-time.Hour)},
		{MAC: macD, IP: addr("192.0.2.103"), Expires: t0.Add(time.Hour)},
		{MAC: declinedMAC(addr("192.0.2.104")), IP: addr("192.0.2.104"), Expires: t0.Add(-2 * time.Hour)},
	}
	tb := newTable(addr("192.0.2.100"), addr("192.0.2.104"), func(netip.Addr) bool { return false }, all)
	any := func(netip.Addr) bool { return true }
	if l, _ := tb.oldest(t0, any); l.IP != addr("192.0.2.101") {
		t.Errorf("oldest: %v, want B's 192.0.2.101 (the lower of the two oldest)", l.IP)
	}
	tb.set(Lease{MAC: macB, IP: addr("192.0.2.101"), Expires: t0.Add(time.Hour)}) // B renews
	if l, _ := tb.oldest(t0, any); l.IP != addr("192.0.2.102") {
		t.Errorf("oldest after B renewed: %v, want C's", l.IP)
	}
	notC := func(ip netip.Addr) bool { return ip != addr("192.0.2.102") }
	if l, _ := tb.oldest(t0, notC); l.IP != addr("192.0.2.100") {
		t.Errorf("oldest but C's: %v, want A's", l.IP)
	}
	if _, ok := tb.oldest(t0.Add(-2*time.Hour), any); ok {
		t.Errorf("a lease expired before any had")
	}
	ended := tb.endMarks(t0)
	if len(ended) != 1 || ended[0].IP != addr("192.0.2.104") {
		t.Errorf("ended marks: %v, want 192.0.2.104's", ended)
	}
	if ip, _ := tb.unused(false); ip != addr("192.0.2.104") {
		t.Errorf("a declined address whose mark ended is unused again: got %v", ip)
	}
}

// TestFullOfferSurvivesRestart: the crash rule. An offer is stored
// before it is sent, so a restarted Full (a new one from the same store)
// never offers the address to another MAC while the hold lasts, refuses
// another's REQUEST of it, and gives it to the client it was offered to.
func TestFullOfferSurvivesRestart(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	offer := h.send(macA, dhcpv4.MessageTypeDiscover)
	if offer == nil {
		t.Fatal("no offer")
	}
	ip := offer.YourIPAddr.String()
	h.restart()
	h.now = h.now.Add(offerHold / 2)
	if o := h.send(macB, dhcpv4.MessageTypeDiscover, requested(ip)); o == nil || o.YourIPAddr.String() == ip {
		t.Errorf("B after the restart offered %v, want another address than A's offered %s", o, ip)
	}
	if r := h.send(macC, dhcpv4.MessageTypeRequest, selecting(ip)); kind(r) != "NAK" {
		t.Errorf("C requesting A's offered address after the restart: %s, want a NAK", kind(r))
	}
	if r := h.send(macA, dhcpv4.MessageTypeRequest, selecting(ip)); kind(r) != "ACK" || r.YourIPAddr.String() != ip {
		t.Errorf("A requesting its offer after the restart: %s %v, want an ACK of %s", kind(r), r, ip)
	}
}

// TestFullLearnsOwner: a put the store refuses (another server gave the
// address meanwhile) is not answered, and the address is the owner's
// in memory from then on: the client is offered another.
func TestFullLearnsOwner(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	// Another server leases 192.0.2.100 to E behind this one's back.
	h.leases.Put(Lease{MAC: macE, IP: addr("192.0.2.100"), Expires: t0.Add(time.Hour)})
	if r := h.send(macA, dhcpv4.MessageTypeDiscover); r != nil {
		t.Errorf("offer of an address the store refused: %s", r.Summary())
	}
	if h.log.find(slog.LevelInfo, "another server", macE.String()) == "" {
		t.Errorf("no record naming the owner; the log:\n%s", h.log.all())
	}
	if r := h.send(macA, dhcpv4.MessageTypeDiscover); r == nil || r.YourIPAddr.String() != "192.0.2.101" {
		t.Errorf("A's next offer: %v, want 192.0.2.101", r)
	}
	if r := h.send(macB, dhcpv4.MessageTypeRequest, selecting("192.0.2.100")); kind(r) != "NAK" {
		t.Errorf("B requesting E's address: %s, want a NAK", kind(r))
	}
}
