package dhcp

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestTokenBucket(t *testing.T) {
	b := &tokenBucket{burst: 3, rate: 2}
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // the burst
		{250 * time.Millisecond, false},                         // half a token
		{500 * time.Millisecond, true},                          // one
		{500 * time.Millisecond, false},                         //
		{400 * time.Millisecond, false},                         // the clock went back: nothing added
		{time.Second, true},                                     // one more
		{time.Hour, true}, {time.Hour, true}, {time.Hour, true}, // idle: full again, no more than the burst
		{time.Hour, false},                         //
		{time.Hour + 1500*time.Millisecond, true},  // three tokens, then
		{time.Hour + 1500*time.Millisecond, true},  //
		{time.Hour + 1500*time.Millisecond, true},  //
		{time.Hour + 1500*time.Millisecond, false}, // none
	}
	for i, s := range steps {
		if got := b.take(t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d at %v: take = %v, want %v", i, s.at, got, s.want)
		}
	}
	if b.full(t0.Add(time.Hour + 1500*time.Millisecond)) {
		t.Errorf("an empty bucket is full")
	}
	if !b.full(t0.Add(time.Hour + 3*time.Second)) {
		t.Errorf("a bucket idle long enough is not full")
	}
}

func TestHoldLimits(t *testing.T) {
	for _, tc := range []struct {
		start, end    string
		all, perRelay int
	}{
		{"192.0.2.100", "192.0.2.100", 1, 1},
		{"192.0.2.100", "192.0.2.103", 1, 1},
		{"192.0.2.100", "192.0.2.199", 25, 12},
		{"192.0.2.1", "192.0.2.254", 63, 31},
		{"10.0.0.1", "10.255.255.254", maxHoldsCap, maxHoldsCap / 2},
	} {
		all, per := holdLimits(addr(tc.start), addr(tc.end))
		if all != tc.all || per != tc.perRelay {
			t.Errorf("holdLimits(%s, %s) = %d, %d, want %d, %d", tc.start, tc.end, all, per, tc.all, tc.perRelay)
		}
	}
}

// TestFullHoldBounds: at most maxRelayHolds offers through one relay
// hold an address at once, at most maxHolds in all, and new MACs get
// holds at the rate of their relay's bucket; an offer taken, or lapsed,
// frees its place.
func TestFullHoldBounds(t *testing.T) {
	cfg := testNet()
	cfg.Start, cfg.End = addr("192.0.2.100"), addr("192.0.2.199") // 25 holds, 12 per relay
	h := newHarness(t, cfg, nil)
	mac := func(relay, i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, byte(relay), byte(i)} }
	via := func(relay int) dhcpv4.Modifier {
		return dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, byte(240+relay)))
	}
	held := func(m net.HardwareAddr) bool {
		_, ok, _ := h.leases.Get(m)
		return ok
	}
	count := func() (n int) {
		for r := range 4 {
			for i := range 20 {
				if held(mac(r, i)) {
					n++
				}
			}
		}
		return n
	}
	// Relay 0: a burst of 16 new MACs, 12 of them held.
	for i := range 16 {
		if offer := h.send(mac(0, i), dhcpv4.MessageTypeDiscover, via(0)); offer == nil {
			t.Fatalf("no offer to %s", mac(0, i))
		}
		if want := i < 12; held(mac(0, i)) != want {
			t.Errorf("offer %d through relay 0 holds: %v, want %v", i, !want, want)
		}
	}
	// Relays 1 and 2: 12 and 1, then the 25 are out.
	for r := 1; r <= 2; r++ {
		for i := range 12 {
			h.send(mac(r, i), dhcpv4.MessageTypeDiscover, via(r))
		}
	}
	if n := count(); n != 25 {
		t.Errorf("%d offers hold, want 25", n)
	}
	// One is taken: relay 2 may hold another, for a known MAC too.
	h.send(mac(0, 0), dhcpv4.MessageTypeRequest, via(0), selecting(h.send(mac(0, 0), dhcpv4.MessageTypeDiscover, via(0)).YourIPAddr.String()))
	h.send(mac(2, 19), dhcpv4.MessageTypeDiscover, via(2))
	if !held(mac(2, 19)) {
		t.Errorf("no hold after one was taken")
	}
	// They lapse, and relay 3 may hold 12 again.
	h.now = h.now.Add(offerHold)
	for i := range 20 {
		h.send(mac(3, i), dhcpv4.MessageTypeDiscover, via(3))
	}
	for i := range 20 {
		if want := i < 12; held(mac(3, i)) != want {
			t.Errorf("offer %d through relay 3 after the others lapsed holds: %v, want %v", i, !want, want)
		}
	}
	// New MACs that take their offers at once, so that holds stay few:
	// newMACBurst of them hold, then one each 1/newMACRate s; a MAC the
	// leases know holds all the same.
	h = newHarness(t, cfg, nil)
	known := []net.HardwareAddr{{2, 0, 0, 0, 8, 0}, {2, 0, 0, 0, 8, 1}}
	for i, m := range known {
		h.leases.Put(Lease{MAC: m, IP: addr(fmt.Sprintf("192.0.2.%d", 100+i)), Expires: t0.Add(-time.Hour)})
	}
	h.restart()
	var holds []bool
	for i := range newMACBurst + 2 {
		m := net.HardwareAddr{2, 0, 0, 0, 9, byte(i)}
		offer := h.send(m, dhcpv4.MessageTypeDiscover)
		holds = append(holds, held(m))
		h.send(m, dhcpv4.MessageTypeRequest, selecting(offer.YourIPAddr.String()))
	}
	want := make([]bool, newMACBurst+2)
	for i := range newMACBurst {
		want[i] = true
	}
	if fmt.Sprint(holds) != fmt.Sprint(want) {
		t.Errorf("new MACs hold: %v, want %v", holds, want)
	}
	for i, m := range known {
		if offer := h.send(m, dhcpv4.MessageTypeDiscover); offer == nil || offer.YourIPAddr.String() != fmt.Sprintf("192.0.2.%d", 100+i) {
			t.Errorf("known MAC %s offered %v, want its old address", m, offer)
		}
		if l, _, _ := h.leases.Get(m); !l.Expires.Equal(h.now.Add(offerHold)) {
			t.Errorf("known MAC %s: no hold with the bucket empty: %+v", m, l)
		}
	}
	h.now = h.now.Add(time.Second / newMACRate)
	m := net.HardwareAddr{2, 0, 0, 0, 9, 99}
	if h.send(m, dhcpv4.MessageTypeDiscover); !held(m) {
		t.Errorf("a new MAC a token later holds nothing")
	}
}

// TestFullBootStorm: a lab powered on at once, 90 machines for a pool of
// 100, all DISCOVER before any REQUESTs: most offers hold nothing, and
// still name addresses no other offer names, so every REQUEST is granted.
func TestFullBootStorm(t *testing.T) {
	cfg := testNet()
	cfg.Start, cfg.End = addr("192.0.2.100"), addr("192.0.2.199")
	h := newHarness(t, cfg, nil)
	offered := map[string]string{}
	macs := make([]net.HardwareAddr, 90)
	for i := range macs {
		macs[i] = net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}
		h.now = h.now.Add(10 * time.Millisecond)
		offer := h.send(macs[i], dhcpv4.MessageTypeDiscover)
		if offer == nil {
			t.Fatalf("no offer to %s", macs[i])
		}
		offered[macs[i].String()] = offer.YourIPAddr.String()
	}
	bound := map[string]bool{}
	for _, m := range macs {
		ack := h.send(m, dhcpv4.MessageTypeRequest, selecting(offered[m.String()]))
		if kind(ack) != "ACK" {
			t.Errorf("%s: %s for %s", m, kind(ack), offered[m.String()])
			continue
		}
		if ip := ack.YourIPAddr.String(); bound[ip] {
			t.Errorf("%s bound twice", ip)
		} else {
			bound[ip] = true
		}
	}
}

// TestFullUnheldOfferToKnownClient: a client whose old address went to
// another, offered a spare address by an offer that holds nothing (the
// holds all taken), gets it when it asks: its old record, ended, does
// not make its REQUEST a NAK, which it would get again and again.
func TestFullUnheldOfferToKnownClient(t *testing.T) {
	h := newHarness(t, testNet(), nil) // one hold at most
	h.dora(macA)
	h.now = t0.Add(2 * time.Hour)
	if got := h.dora(macC, requested("192.0.2.100")); got != "192.0.2.100" {
		t.Fatalf("C got %s, want A's ended 192.0.2.100", got)
	}
	h.send(macD, dhcpv4.MessageTypeDiscover) // holds .101
	offer := h.send(macA, dhcpv4.MessageTypeDiscover)
	if offer == nil {
		t.Fatalf("no offer to A")
	}
	if l, _, _ := h.leases.Get(macA); l.IP.String() == offer.YourIPAddr.String() {
		t.Fatalf("A's offer holds its address: the test needs one that does not")
	}
	if r := h.send(macA, dhcpv4.MessageTypeRequest, selecting(offer.YourIPAddr.String())); kind(r) != "ACK" {
		t.Errorf("A asking for its offer of %s: %s (%s), want an ACK", offer.YourIPAddr, kind(r), r.Message())
	}
	// A client with a live lease selecting another address is still
	// refused.
	if r := h.send(macC, dhcpv4.MessageTypeRequest, selecting("192.0.2.102")); kind(r) != "NAK" {
		t.Errorf("C, bound to .100, selecting .102: %s, want a NAK", kind(r))
	}
}
