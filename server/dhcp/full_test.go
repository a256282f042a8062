package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	macA = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0b}
	macC = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0c}
	macD = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0d}
	macE = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0e}
	macR = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x99} // has a reservation

	t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testNet is a /24 with a pool of four and one reservation outside it.
func testNet() FullConfig {
	return FullConfig{
		Interface:    "eth1",
		ServerIP:     addr("192.0.2.1"),
		Subnet:       netip.MustParsePrefix("192.0.2.0/24"),
		Start:        addr("192.0.2.100"),
		End:          addr("192.0.2.103"),
		Router:       addr("192.0.2.254"),
		DNS:          []netip.Addr{addr("192.0.2.53"), addr("192.0.2.54")},
		LeaseTime:    time.Hour,
		Reservations: []Reservation{{MAC: macR, IP: addr("192.0.2.10")}},
	}
}

// harness drives a Full through handle with a clock of its own.
type harness struct {
	t      *testing.T
	f      *Full
	leases *MemLeases // the store, when it is a MemLeases
	store  Leases
	cfg    FullConfig
	booter Booter
	now    time.Time
	log    *logRecorder
}

func newHarness(t *testing.T, cfg FullConfig, booter Booter) *harness {
	t.Helper()
	m := &MemLeases{}
	h := newHarnessOn(t, cfg, booter, m)
	h.leases = m
	return h
}

// newHarnessOn is a harness whose Full keeps its leases in store.
func newHarnessOn(t *testing.T, cfg FullConfig, booter Booter, store Leases) *harness {
	t.Helper()
	h := &harness{t: t, now: t0, log: &logRecorder{}, cfg: cfg, booter: booter, store: store}
	h.restart()
	return h
}

// restart replaces h's Full by a new one on the same store, as a server
// restart does: it reads the leases afresh.
func (h *harness) restart() {
	h.t.Helper()
	f, err := NewFull(h.cfg, h.store, h.booter, h.log.logger())
	if err != nil {
		h.t.Fatal(err)
	}
	f.now = func() time.Time { return h.now }
	h.f = f
}

// send handles a message of type typ from mac, sent from 0.0.0.0:68, and
// returns the reply or nil.
func (h *harness) send(mac net.HardwareAddr, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	h.t.Helper()
	reply, _ := h.sendFrom(&net.UDPAddr{IP: net.IPv4zero, Port: 68}, mac, typ, mods...)
	return reply
}

// sendFrom handles a message of type typ from mac, sent from peer, and
// returns the reply and where it goes, or nil and nil.
func (h *harness) sendFrom(peer *net.UDPAddr, mac net.HardwareAddr, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	h.t.Helper()
	req := pkt(h.t, typ, append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...)
	reply, dst := h.f.handle(context.Background(), req.ToBytes(), peer)
	if (reply == nil) != (dst == nil) {
		h.t.Fatalf("reply %v to %v", reply, dst)
	}
	return reply, dst
}

// dora runs DISCOVER, then REQUEST of the offered address, and returns
// the address.
func (h *harness) dora(mac net.HardwareAddr, mods ...dhcpv4.Modifier) string {
	h.t.Helper()
	offer := h.send(mac, dhcpv4.MessageTypeDiscover, mods...)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		h.t.Fatalf("%s: no offer (%v); the log:\n%s", mac, offer, h.log.all())
	}
	ack := h.send(mac, dhcpv4.MessageTypeRequest, append(mods, selecting(offer.YourIPAddr.String()))...)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		h.t.Fatalf("%s: no ACK for %s (%v); the log:\n%s", mac, offer.YourIPAddr, ack, h.log.all())
	}
	return ack.YourIPAddr.String()
}

func (h *harness) wantLeases(want ...Lease) {
	h.t.Helper()
	got, err := h.leases.All()
	if err != nil {
		h.t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
		h.t.Errorf("leases (-want +got):\n%s", diff)
	}
}

// selecting is a REQUEST in SELECTING state: our server identifier and
// the offered address.
func selecting(ip string) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1")))
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
}

// kind is r's message type, "none" for no reply.
func kind(r *dhcpv4.DHCPv4) string {
	if r == nil {
		return "none"
	}
	return r.MessageType().String()
}

func requested(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
}

func ciaddr(ip string) dhcpv4.Modifier { return dhcpv4.WithClientIP(net.ParseIP(ip)) }

func serverID(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip)))
}

func TestFullDORA(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	offer := h.send(macA, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptHostName("node1")))
	want := view{
		Type: "OFFER", XID: "0xdeadbeef", CIAddr: "0.0.0.0", YIAddr: "192.0.2.100", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0",
		ServerID: "192.0.2.1", Mask: "255.255.255.0", Router: "192.0.2.254", DNS: "192.0.2.53,192.0.2.54",
		LeaseSeconds: 3600, T1: 1800, T2: 3150,
	}
	if diff := cmp.Diff(want, viewOf(t, offer)); diff != "" {
		t.Errorf("offer (-want +got):\n%s", diff)
	}
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(offerHold), Hostname: "node1"})

	h.now = t0.Add(2 * time.Second)
	ack := h.send(macA, dhcpv4.MessageTypeRequest, selecting("192.0.2.100"), dhcpv4.WithOption(dhcpv4.OptHostName("node1")))
	want.Type = "ACK"
	if diff := cmp.Diff(want, viewOf(t, ack)); diff != "" {
		t.Errorf("ack (-want +got):\n%s", diff)
	}
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: h.now.Add(time.Hour), Hostname: "node1"})
	if h.log.find(slog.LevelInfo, "dhcp answer", "ACK", "192.0.2.100") == "" {
		t.Errorf("no Info record of the ACK; the log:\n%s", h.log.all())
	}

	// A bound client that starts over is offered its address again, its
	// lease kept as long as it was.
	h.now = t0.Add(time.Minute)
	if again := h.send(macA, dhcpv4.MessageTypeDiscover); again.YourIPAddr.String() != "192.0.2.100" {
		t.Errorf("the same client's second offer is %s, want 192.0.2.100", again.YourIPAddr)
	}
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(2*time.Second + time.Hour), Hostname: "node1"})

	// A renewal without option 12 keeps the host name.
	h.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100"))
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: h.now.Add(time.Hour), Hostname: "node1"})

	// Through a relay on this subnet: the same; from another subnet: not ours.
	relayed := h.send(macB, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250)))
	if v := viewOf(t, relayed); v.YIAddr != "192.0.2.101" || v.GIAddr != "192.0.2.250" {
		t.Errorf("relayed offer: %+v", v)
	}
	if r := h.send(macC, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(net.IPv4(198, 51, 100, 1))); r != nil {
		t.Errorf("offer relayed to another subnet: %s", r.Summary())
	}
	if h.log.find(slog.LevelDebug, "another subnet", "198.51.100.1") == "" {
		t.Errorf("no Debug record of the foreign relay; the log:\n%s", h.log.all())
	}
}

// TestFullBoot checks that netboot clients get the boot answer with
// their address, and other clients the address alone.
func TestFullBoot(t *testing.T) {
	h := newHarness(t, testNet(), testPolicy)
	offer := h.send(macA, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS), ipxeClass)...)
	want := view{
		Type: "OFFER", XID: "0xdeadbeef", CIAddr: "0.0.0.0", YIAddr: "192.0.2.100", SIAddr: "192.0.2.1", GIAddr: "0.0.0.0",
		File: "http://192.0.2.1/boot.ipxe", ServerID: "192.0.2.1", VendorClass: "PXEClient", Vendor: []byte{6, 1, 8, 255},
		BootFile: "http://192.0.2.1/boot.ipxe", MachineID: testGUID,
		Mask: "255.255.255.0", Router: "192.0.2.254", DNS: "192.0.2.53,192.0.2.54", LeaseSeconds: 3600, T1: 1800, T2: 3150,
	}
	if diff := cmp.Diff(want, viewOf(t, offer)); diff != "" {
		t.Errorf("offer to iPXE (-want +got):\n%s", diff)
	}
	ack := h.send(macA, dhcpv4.MessageTypeRequest, with(pxe(vcBIOS, ArchBIOS), ipxeClass, selecting("192.0.2.100"))...)
	want.Type = "ACK"
	if diff := cmp.Diff(want, viewOf(t, ack)); diff != "" {
		t.Errorf("ack to iPXE (-want +got):\n%s", diff)
	}

	offer = h.send(macB, dhcpv4.MessageTypeDiscover, pxe(vcBIOS, ArchBIOS)...)
	if v := viewOf(t, offer); v.YIAddr != "192.0.2.101" || v.File != "undionly.kpxe" || v.TFTPServer != "192.0.2.1" {
		t.Errorf("offer to a BIOS PXE ROM: %+v", v)
	}
	for name, mods := range map[string][]dhcpv4.Modifier{
		"the agent":        {dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vcAgent))},
		"an unknown arch":  pxe("PXEClient:Arch:00011:UNDI:003016", 11),
		"a bad option 97":  with(pxe(vcBIOS, ArchBIOS), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{1})),
		"a plain OS stack": nil,
	} {
		offer := h.send(macC, dhcpv4.MessageTypeDiscover, mods...)
		v := viewOf(t, offer)
		// B's offer holds .101, as many as a pool of four allows: C's
		// hold none, and name .102 or .103 (see offers4.go).
		if v.YIAddr != "192.0.2.102" && v.YIAddr != "192.0.2.103" || v.File != "" || v.BootFile != "" || v.VendorClass != "" || v.Vendor != nil {
			t.Errorf("offer to %s: %+v, want an address and no boot answer", name, v)
		}
	}

	// A Booter that fails leaves the address: DHCP still works.
	failing := BooterFunc(func(context.Context, Request) (Answer, error) { return Answer{}, errors.New("store is down") })
	h2 := newHarness(t, testNet(), failing)
	offer = h2.send(macA, dhcpv4.MessageTypeDiscover, pxe(vcBIOS, ArchBIOS)...)
	if v := viewOf(t, offer); v.YIAddr != "192.0.2.100" || v.File != "" {
		t.Errorf("offer with a failing Booter: %+v", v)
	}
	if h2.log.find(slog.LevelWarn, "booter failed", "store is down") == "" {
		t.Errorf("no Warn of the Booter's failure; the log:\n%s", h2.log.all())
	}
}

func TestFullAllocation(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	for _, c := range []struct {
		mac  net.HardwareAddr
		want string
	}{{macA, "192.0.2.100"}, {macB, "192.0.2.101"}, {macR, "192.0.2.10"}, {macC, "192.0.2.102"}, {macD, "192.0.2.103"}} {
		if got := h.dora(c.mac); got != c.want {
			t.Errorf("%s got %s, want %s", c.mac, got, c.want)
		}
		h.now = h.now.Add(time.Second) // so the leases end in this order
	}
	// The pool is full: a fifth client gets nothing, and a Warn says why.
	if r := h.send(macE, dhcpv4.MessageTypeDiscover); r != nil {
		t.Errorf("offer from a full pool: %s", r.Summary())
	}
	if h.log.find(slog.LevelWarn, "not answering", ErrPoolExhausted.Error()) == "" {
		t.Errorf("no Warn of the full pool; the log:\n%s", h.log.all())
	}

	// B releases: its record stays, expired, and it gets its address back.
	h.now = t0.Add(10 * time.Minute)
	if r := h.send(macB, dhcpv4.MessageTypeRelease, ciaddr("192.0.2.101"), serverID("192.0.2.1")); r != nil {
		t.Errorf("reply to a RELEASE: %s", r.Summary())
	}
	if l, _, _ := h.leases.Get(macB); !l.Expires.Equal(h.now) {
		t.Errorf("released lease expires %v, want %v", l.Expires, h.now)
	}
	// Meanwhile E takes the only free address, B's old one.
	if got := h.dora(macE); got != "192.0.2.101" {
		t.Errorf("E got %s, want B's released 192.0.2.101", got)
	}
	if _, ok, _ := h.leases.Get(macB); ok {
		t.Errorf("B's old record was kept after E took its address")
	}

	// When every lease has expired, a new client gets the address whose
	// lease expired first, and the old owners keep theirs when they ask.
	h.now = t0.Add(3 * time.Hour)
	if got := h.dora(macB); got != "192.0.2.100" {
		t.Errorf("B got %s, want A's 192.0.2.100 (expired first)", got)
	}
	if got := h.dora(macC); got != "192.0.2.102" {
		t.Errorf("C got %s, want its own 192.0.2.102 back", got)
	}
	if r := h.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "NAK" {
		t.Errorf("A renewing the address B now has: %s, want a NAK", kind(r))
	}
}

func TestFullReservations(t *testing.T) {
	cfg := testNet()
	// A reservation inside the pool too.
	cfg.Reservations = append(cfg.Reservations, Reservation{MAC: macD, IP: addr("192.0.2.100")})
	h := newHarness(t, cfg, nil)
	if got := h.dora(macA, requested("192.0.2.100")); got != "192.0.2.101" {
		t.Errorf("A asking for D's reserved address got %s, want 192.0.2.101", got)
	}
	if got := h.dora(macB, requested("192.0.2.10")); got != "192.0.2.102" {
		t.Errorf("B asking for R's reserved address got %s, want 192.0.2.102", got)
	}
	if got := h.dora(macD); got != "192.0.2.100" {
		t.Errorf("D got %s, want its reserved 192.0.2.100", got)
	}
	if got := h.dora(macR, requested("192.0.2.103")); got != "192.0.2.10" {
		t.Errorf("R got %s, want its reserved 192.0.2.10", got)
	}
	// A reserved client cannot take a pool address, nor anyone a reserved one.
	if r := h.send(macR, dhcpv4.MessageTypeRequest, selecting("192.0.2.103")); kind(r) != "NAK" {
		t.Errorf("R requesting a pool address: %s, want a NAK", kind(r))
	}
	if r := h.send(macE, dhcpv4.MessageTypeRequest, selecting("192.0.2.10")); kind(r) != "NAK" {
		t.Errorf("E requesting R's address: %s, want a NAK", kind(r))
	}
	// A reserved client in INIT-REBOOT with no record is known anyway.
	h.leases.Delete(macR)
	h.restart()
	if r := h.send(macR, dhcpv4.MessageTypeRequest, requested("192.0.2.10")); kind(r) != "ACK" {
		t.Errorf("R rebooting: %s, want an ACK", kind(r))
	}
}

// TestFullReservedAddressTaken: a reservation added while another client
// holds the address is not offered until that lease ends.
func TestFullReservedAddressTaken(t *testing.T) {
	cfg := testNet()
	cfg.Reservations = nil
	h := newHarness(t, cfg, nil)
	if got := h.dora(macA); got != "192.0.2.100" {
		t.Fatalf("A got %s", got)
	}
	cfg.Reservations = []Reservation{{MAC: macD, IP: addr("192.0.2.100")}}
	h2 := newHarnessOn(t, cfg, nil, h.leases)
	h2.leases = h.leases
	if r := h2.send(macD, dhcpv4.MessageTypeDiscover); r != nil {
		t.Errorf("offered %s while A holds it", r.YourIPAddr)
	}
	if h2.log.find(slog.LevelWarn, "reserved address", "leased to 52:54:00:00:00:0a") == "" {
		t.Errorf("no Warn; the log:\n%s", h2.log.all())
	}
	if r := h2.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "NAK" {
		t.Errorf("A renewing an address now reserved for D: %s, want a NAK", kind(r))
	}
	h2.now = t0.Add(2 * time.Hour)
	if got := h2.dora(macD); got != "192.0.2.100" {
		t.Errorf("D got %s after A's lease ended, want 192.0.2.100", got)
	}
}

func TestFullRequests(t *testing.T) {
	relay := dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250))
	for _, tc := range []struct {
		name string
		// setup leaves A bound to .100 and B bound to .101 unless skip.
		mods      []dhcpv4.Modifier
		mac       net.HardwareAddr
		wantType  string // "" for no reply
		wantIP    string
		wantWords string // in option 56 for a NAK
		broadcast bool
	}{
		{"SELECTING our offer", []dhcpv4.Modifier{selecting("192.0.2.100")}, macA, "ACK", "192.0.2.100", "", false},
		{"SELECTING another address than offered", []dhcpv4.Modifier{selecting("192.0.2.102")}, macA, "NAK", "0.0.0.0", "not the address of", false},
		{"SELECTING without option 50", []dhcpv4.Modifier{serverID("192.0.2.1")}, macA, "NAK", "0.0.0.0", "no requested address", false},
		{"SELECTING another server's offer", []dhcpv4.Modifier{serverID("192.0.2.7"), requested("192.0.2.77")}, macA, "", "", "", false},
		{"INIT-REBOOT with the right address", []dhcpv4.Modifier{requested("192.0.2.100")}, macA, "ACK", "192.0.2.100", "", false},
		{"INIT-REBOOT with the wrong address", []dhcpv4.Modifier{requested("192.0.2.103")}, macA, "NAK", "0.0.0.0", "not the address of", false},
		{"INIT-REBOOT from another network", []dhcpv4.Modifier{requested("198.51.100.7")}, macA, "NAK", "0.0.0.0", "not on this network", false},
		{"INIT-REBOOT of a client we do not know: silence", []dhcpv4.Modifier{requested("192.0.2.103")}, macC, "", "", "", false},
		{"INIT-REBOOT of a stranger with another's address: silence", []dhcpv4.Modifier{requested("192.0.2.101")}, macC, "", "", "", false},
		{"RENEWING", []dhcpv4.Modifier{ciaddr("192.0.2.100")}, macA, "ACK", "192.0.2.100", "", false},
		{"RENEWING another's address", []dhcpv4.Modifier{ciaddr("192.0.2.101")}, macC, "NAK", "0.0.0.0", "leased to 52:54:00:00:00:0b", false},
		{"RENEWING, unknown, a free pool address: granted", []dhcpv4.Modifier{ciaddr("192.0.2.103")}, macC, "ACK", "192.0.2.103", "", false},
		{"RENEWING, unknown, outside the pool", []dhcpv4.Modifier{ciaddr("192.0.2.50")}, macC, "NAK", "0.0.0.0", "outside the pool", false},
		{"RENEWING the router's address", []dhcpv4.Modifier{ciaddr("192.0.2.254")}, macC, "NAK", "0.0.0.0", "outside the pool", false},
		{"no address at all", nil, macA, "", "", "", false},
		{"a NAK through a relay asks it to broadcast", []dhcpv4.Modifier{requested("192.0.2.103"), relay}, macA, "NAK", "0.0.0.0", "not the address of", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testNet(), nil)
			h.dora(macA)
			h.dora(macB)
			h.now = t0.Add(time.Minute)
			r := h.send(tc.mac, dhcpv4.MessageTypeRequest, tc.mods...)
			if tc.wantType == "" {
				if r != nil {
					t.Fatalf("replied %s, want silence", r.Summary())
				}
				return
			}
			if r == nil {
				t.Fatalf("no reply, want %s; the log:\n%s", tc.wantType, h.log.all())
			}
			v := viewOf(t, r)
			got := struct{ Type, IP string }{v.Type, v.YIAddr}
			want := struct{ Type, IP string }{tc.wantType, tc.wantIP}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if !strings.Contains(v.Message, tc.wantWords) || (tc.wantWords == "") != (v.Message == "") {
				t.Errorf("message %q, want one saying %q", v.Message, tc.wantWords)
			}
			if v.Broadcast != tc.broadcast {
				t.Errorf("broadcast flag %v, want %v", v.Broadcast, tc.broadcast)
			}
			if tc.wantType == "NAK" && (v.LeaseSeconds != 0 || v.Mask != "" || v.ServerID != "192.0.2.1") {
				t.Errorf("a NAK with lease options or without option 54: %+v", v)
			}
		})
	}

	// The client that took another server's offer loses ours.
	h := newHarness(t, testNet(), nil)
	h.send(macA, dhcpv4.MessageTypeDiscover)
	h.send(macA, dhcpv4.MessageTypeRequest, serverID("192.0.2.7"), requested("192.0.2.77"))
	h.wantLeases()
}

func TestFullDecline(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	if got := h.dora(macA); got != "192.0.2.100" {
		t.Fatalf("A got %s", got)
	}
	// A finds .100 in use (ARP) and declines it.
	if r := h.send(macA, dhcpv4.MessageTypeDecline, requested("192.0.2.100"), serverID("192.0.2.1")); r != nil {
		t.Errorf("reply to a DECLINE: %s", r.Summary())
	}
	if h.log.find(slog.LevelWarn, "declined", "192.0.2.100") == "" {
		t.Errorf("no Warn of the decline; the log:\n%s", h.log.all())
	}
	h.wantLeases(Lease{MAC: declinedMAC(addr("192.0.2.100")), IP: addr("192.0.2.100"), Expires: t0.Add(declineHold)})
	if got := h.dora(macA); got != "192.0.2.101" {
		t.Errorf("A after declining got %s, want 192.0.2.101", got)
	}
	if got := h.dora(macB, requested("192.0.2.100")); got != "192.0.2.102" {
		t.Errorf("B asking for the declined address got %s, want 192.0.2.102", got)
	}
	h.now = t0.Add(declineHold + time.Second)
	if got := h.dora(macC); got != "192.0.2.100" {
		t.Errorf("C after the decline hold got %s, want 192.0.2.100", got)
	}

	// A DECLINE to another server, or of an address not ours, changes nothing.
	h = newHarness(t, testNet(), nil)
	h.dora(macA)
	h.send(macA, dhcpv4.MessageTypeDecline, requested("192.0.2.100"), serverID("192.0.2.7"))
	h.send(macA, dhcpv4.MessageTypeDecline, requested("198.51.100.1"), serverID("192.0.2.1"))
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(time.Hour)})
}

func TestFullReleaseOfAnother(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	h.dora(macA)
	h.now = t0.Add(time.Minute)
	// C claims to release A's address; B releases to another server.
	h.send(macC, dhcpv4.MessageTypeRelease, ciaddr("192.0.2.100"))
	h.send(macA, dhcpv4.MessageTypeRelease, ciaddr("192.0.2.100"), serverID("192.0.2.7"))
	h.wantLeases(Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(time.Hour)})
}

func TestFullInform(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	r := h.send(macA, dhcpv4.MessageTypeInform, ciaddr("192.0.2.50"))
	want := view{
		Type: "ACK", XID: "0xdeadbeef", CIAddr: "192.0.2.50", YIAddr: "0.0.0.0", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0",
		ServerID: "192.0.2.1", Mask: "255.255.255.0", Router: "192.0.2.254", DNS: "192.0.2.53,192.0.2.54",
	}
	if diff := cmp.Diff(want, viewOf(t, r)); diff != "" {
		t.Errorf("ACK to an INFORM (-want +got):\n%s", diff)
	}
	h.wantLeases()
}

// TestFullSkipsOwnAddresses: the server's and router's addresses inside
// the pool are never offered.
func TestFullSkipsOwnAddresses(t *testing.T) {
	cfg := testNet()
	cfg.ServerIP, cfg.Router = addr("192.0.2.100"), addr("192.0.2.102")
	cfg.DNS, cfg.LeaseTime = nil, 0
	h := newHarness(t, cfg, nil)
	offer := h.send(macA, dhcpv4.MessageTypeDiscover, requested("192.0.2.100"))
	if v := viewOf(t, offer); v.YIAddr != "192.0.2.101" || v.LeaseSeconds != 3600 || v.DNS != "" {
		t.Errorf("offer: %+v, want 192.0.2.101 for the default hour and no DNS", v)
	}
	h.send(macA, dhcpv4.MessageTypeRequest, requested("192.0.2.101"), serverID("192.0.2.100"))
	if offer := h.send(macB, dhcpv4.MessageTypeDiscover); offer.YourIPAddr.String() != "192.0.2.103" {
		t.Errorf("B was offered %s, want 192.0.2.103", offer.YourIPAddr)
	}
}

// brokenLeases fails every call.
type brokenLeases struct{}

var errBroken = errors.New("disk on fire")

func (brokenLeases) All() ([]Lease, error) { return nil, errBroken }
func (brokenLeases) Write([]LeaseWrite, time.Time) ([]LeaseConflict, error) {
	return nil, errBroken
}

// failingLeases is a MemLeases whose Write fails while fail is set.
type failingLeases struct {
	MemLeases
	fail   bool
	writes int // Write calls that succeeded
}

func (s *failingLeases) Write(ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	if s.fail {
		return nil, errBroken
	}
	s.writes++
	return s.MemLeases.Write(ws, now)
}

// TestFullBrokenStore: a store that cannot be read stops Full at start;
// a batch the store fails is answered not at all, leaves the store as it
// was, and Full, its table reloaded, decides as if the failed requests
// had never come.
func TestFullBrokenStore(t *testing.T) {
	rec := &logRecorder{}
	if _, err := NewFull(testNet(), brokenLeases{}, nil, rec.logger()); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("NewFull on a store that cannot be read: %v, want its error", err)
	}

	store := &failingLeases{}
	h := newHarnessOn(t, testNet(), nil, store)
	if got := h.dora(macA); got != "192.0.2.100" {
		t.Fatalf("A got %s", got)
	}
	before, _ := store.All()
	store.fail = true
	for _, c := range []struct {
		mac  net.HardwareAddr
		typ  dhcpv4.MessageType
		mods []dhcpv4.Modifier
	}{
		{macB, dhcpv4.MessageTypeDiscover, nil},
		{macR, dhcpv4.MessageTypeDiscover, nil},
		{macA, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{ciaddr("192.0.2.100")}},
		{macA, dhcpv4.MessageTypeRelease, []dhcpv4.Modifier{ciaddr("192.0.2.100"), serverID("192.0.2.1")}},
		{macC, dhcpv4.MessageTypeDiscover, nil},
	} {
		if r := h.send(c.mac, c.typ, c.mods...); r != nil {
			t.Errorf("%s %s answered %s with a failing store", c.mac, c.typ, r.Summary())
		}
		if rec := h.log.find(slog.LevelWarn, c.typ.String(), "disk on fire"); rec == "" {
			t.Errorf("%s: no Warn naming the store's error; the log:\n%s", c.typ, h.log.all())
		}
	}
	after, _ := store.All()
	if diff := cmp.Diff(before, after, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("failed batches changed the store (-before +after):\n%s", diff)
	}
	// Full's table is the store's again: A still holds its address, and
	// the next new client gets the next address, not one beyond the
	// offers that were never sent.
	store.fail = false
	if r := h.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "ACK" {
		t.Errorf("A renewing after the store recovered: %s, want an ACK", kind(r))
	}
	if got := h.dora(macC); got != "192.0.2.101" {
		t.Errorf("C got %s after the store recovered, want 192.0.2.101", got)
	}
}

// TestFullBatchFailsTogether: the decisions queued while a batch commits
// go in the next batch, one Write for them all; when it fails, none is
// answered, and those queued after it fail too.
func TestFullBatchFailsTogether(t *testing.T) {
	store := &failingLeases{}
	cfg := testNet()
	cfg.End = addr("192.0.2.199") // room for the offers to hold
	h := newHarnessOn(t, cfg, nil, store)
	var sent []string
	var mu sync.Mutex
	send := func(r *dhcpv4.DHCPv4, _ *net.UDPAddr) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, r.ClientHWAddr.String()+" "+r.MessageType().String())
	}
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	disc := func(mac net.HardwareAddr) []byte {
		return pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(mac)).ToBytes()
	}
	// Queued, not yet written: nothing is sent.
	h.f.answer(context.Background(), disc(macA), peer, send)
	h.f.answer(context.Background(), disc(macB), peer, send)
	if len(sent) != 0 {
		t.Fatalf("sent before the batch was written: %v", sent)
	}
	h.f.batch.flush()
	if store.writes != 1 || len(sent) != 2 {
		t.Fatalf("%d writes, sent %v; want one write, then both offers", store.writes, sent)
	}
	sent = nil
	store.fail = true
	h.f.answer(context.Background(), disc(macC), peer, send)
	h.f.answer(context.Background(), disc(macD), peer, send)
	h.f.batch.flush()
	if len(sent) != 0 {
		t.Errorf("sent %v from a failed batch", sent)
	}
	all, _ := store.All()
	if len(all) != 2 {
		t.Errorf("the store has %d leases after the failed batch, want A's and B's holds: %v", len(all), all)
	}
}

func TestNewFullChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *FullConfig)
		want   string
	}{
		{"no server address", func(c *FullConfig) { c.ServerIP = netip.Addr{} }, "server address invalid IP is not IPv4"},
		{"server outside the subnet", func(c *FullConfig) { c.ServerIP = addr("198.51.100.1") }, "server address 198.51.100.1 is not in subnet"},
		{"server on the network address", func(c *FullConfig) { c.ServerIP = addr("192.0.2.0") }, "network or broadcast"},
		{"no subnet", func(c *FullConfig) { c.Subnet = netip.Prefix{} }, "not an IPv4 prefix"},
		{"IPv6 subnet", func(c *FullConfig) { c.Subnet = netip.MustParsePrefix("2001:db8::/64") }, "not an IPv4 prefix"},
		{"a /31", func(c *FullConfig) { c.Subnet = netip.MustParsePrefix("192.0.2.0/31") }, "/30 or wider"},
		{"pool start outside", func(c *FullConfig) { c.Start = addr("198.51.100.1") }, "pool start 198.51.100.1 is not in subnet"},
		{"pool end on broadcast", func(c *FullConfig) { c.End = addr("192.0.2.255") }, "pool end 192.0.2.255 is subnet 192.0.2.0/24's network or broadcast"},
		{"pool backwards", func(c *FullConfig) { c.Start, c.End = c.End, c.Start }, "before its start"},
		{"router outside", func(c *FullConfig) { c.Router = addr("198.51.100.1") }, "router 198.51.100.1 is not in subnet"},
		{"IPv6 DNS", func(c *FullConfig) { c.DNS = []netip.Addr{addr("2001:db8::53")} }, "DNS server 2001:db8::53 is not IPv4"},
		{"negative lease", func(c *FullConfig) { c.LeaseTime = -time.Second }, "lease time -1s out of range"},
		{"endless lease", func(c *FullConfig) { c.LeaseTime = 1 << 62 }, "out of range"},
		{"reservation without a MAC", func(c *FullConfig) { c.Reservations = []Reservation{{IP: addr("192.0.2.10")}} }, "has no MAC"},
		{"reservation outside", func(c *FullConfig) { c.Reservations[0].IP = addr("198.51.100.1") }, "reserved address of 52:54:00:00:00:99 198.51.100.1 is not in subnet"},
		{"reservation of the server's address", func(c *FullConfig) { c.Reservations[0].IP = c.ServerIP }, "the server's or the router's"},
		{"MAC reserved twice", func(c *FullConfig) {
			c.Reservations = append(c.Reservations, Reservation{MAC: macR, IP: addr("192.0.2.11")})
		}, "52:54:00:00:00:99 is reserved twice"},
		{"address reserved twice", func(c *FullConfig) {
			c.Reservations = append(c.Reservations, Reservation{MAC: macA, IP: addr("192.0.2.10")})
		}, "192.0.2.10 is reserved twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testNet()
			cfg.Reservations = append([]Reservation(nil), cfg.Reservations...)
			tc.change(&cfg)
			_, err := NewFull(cfg, &MemLeases{}, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewFull = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := NewFull(testNet(), nil, nil, nil); err == nil {
		t.Errorf("NewFull without Leases succeeded")
	}
	// The caller's config is not written back into.
	cfg := testNet()
	cfg.LeaseTime = 0
	if _, err := NewFull(cfg, &MemLeases{}, nil, nil); err != nil || cfg.LeaseTime != 0 {
		t.Errorf("NewFull: %v, LeaseTime now %v", err, cfg.LeaseTime)
	}
}

// TestFullServe runs DISCOVER, OFFER, REQUEST, ACK over loopback sockets.
func TestFullServe(t *testing.T) {
	f, err := NewFull(testNet(), &MemLeases{}, testPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, client := loopback(t), loopback(t)
	// The replies go to 255.255.255.255:68, which a loopback socket
	// cannot send to: the test delivers them to the client instead.
	rc := &redirectConn{PacketConn: server, to: client.LocalAddr()}
	serveOn(t, rc, f.Serve)
	offer := exchange(t, client, server.LocalAddr(), pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcEFI, ArchEFI64), withXID(1))...))
	ack := exchange(t, client, server.LocalAddr(), pkt(t, dhcpv4.MessageTypeRequest, with(pxe(vcEFI, ArchEFI64), withXID(2), selecting(offer.YourIPAddr.String()))...))
	if got := rc.sent(); len(got) != 2 || got[0] != "255.255.255.255:68" || got[1] != "255.255.255.255:68" {
		t.Errorf("replies sent to %q, want both broadcast to 255.255.255.255:68", got)
	}
	for _, v := range []view{viewOf(t, offer), viewOf(t, ack)} {
		if v.YIAddr != "192.0.2.100" || v.File != "ipxe.efi" || v.ServerID != "192.0.2.1" {
			t.Errorf("%s: %+v", v.Type, v)
		}
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("got %s then %s", offer.MessageType(), ack.MessageType())
	}
}

// TestFullRenewals: a bound client renewing its lease gets an ACK
// however it names the address: ciaddr alone (RFC 2131 RENEWING and
// REBINDING), ciaddr with our server identifier (which some clients send
// while renewing; Kea and dnsmasq take ciaddr then), or ciaddr with
// option 50 too.
func TestFullRenewals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		wantType string
		wantIP   string
	}{
		{"RENEWING: ciaddr", []dhcpv4.Modifier{ciaddr("192.0.2.100")}, "ACK", "192.0.2.100"},
		{"RENEWING with our server identifier", []dhcpv4.Modifier{ciaddr("192.0.2.100"), serverID("192.0.2.1")}, "ACK", "192.0.2.100"},
		{"RENEWING with our server identifier and option 50", []dhcpv4.Modifier{ciaddr("192.0.2.100"), serverID("192.0.2.1"), requested("192.0.2.100")}, "ACK", "192.0.2.100"},
		{"REBINDING: ciaddr, broadcast", []dhcpv4.Modifier{ciaddr("192.0.2.100"), dhcpv4.WithBroadcast(true)}, "ACK", "192.0.2.100"},
		{"our server identifier, ciaddr of another's address", []dhcpv4.Modifier{ciaddr("192.0.2.101"), serverID("192.0.2.1")}, "NAK", "0.0.0.0"},
		{"our server identifier, neither option 50 nor ciaddr", []dhcpv4.Modifier{serverID("192.0.2.1")}, "NAK", "0.0.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testNet(), nil)
			h.dora(macA)
			h.dora(macB)
			h.now = t0.Add(30 * time.Minute)
			r := h.send(macA, dhcpv4.MessageTypeRequest, tc.mods...)
			if r == nil {
				t.Fatalf("no reply, want %s; the log:\n%s", tc.wantType, h.log.all())
			}
			if v := viewOf(t, r); v.Type != tc.wantType || v.YIAddr != tc.wantIP {
				t.Fatalf("reply %s %s (%q), want %s %s", v.Type, v.YIAddr, v.Message, tc.wantType, tc.wantIP)
			}
			if tc.wantType == "ACK" {
				if l, _, _ := h.leases.Get(macA); !l.Expires.Equal(h.now.Add(time.Hour)) {
					t.Errorf("lease expires %v, want %v", l.Expires, h.now.Add(time.Hour))
				}
			}
		})
	}
}

// TestFullRepliesNotToSource: where a reply goes follows RFC 2131
// section 4.1 (giaddr, then ciaddr, then broadcast), never the source
// address of the datagram, which anyone on the link can forge to have
// the offers for another client sent to it.
func TestFullRepliesNotToSource(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	forged := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 77), Port: 6000}
	if r, dst := h.sendFrom(forged, macA, dhcpv4.MessageTypeDiscover); kind(r) != "OFFER" || dst.String() != "255.255.255.255:68" {
		t.Errorf("offer from a forged source: %s to %v, want an OFFER to 255.255.255.255:68", kind(r), dst)
	}
	h.dora(macA)
	if r, dst := h.sendFrom(forged, macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "ACK" || dst.String() != "192.0.2.100:68" {
		t.Errorf("renewal from another source: %s to %v, want an ACK to ciaddr 192.0.2.100:68", kind(r), dst)
	}
	if r, dst := h.sendFrom(forged, macB, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "NAK" || dst.String() != "255.255.255.255:68" {
		t.Errorf("NAK: %s to %v, want a NAK to 255.255.255.255:68", kind(r), dst)
	}
	relay := dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250))
	if r, dst := h.sendFrom(forged, macC, dhcpv4.MessageTypeDiscover, relay); kind(r) != "OFFER" || dst.String() != "192.0.2.250:67" {
		t.Errorf("relayed offer: %s to %v, want an OFFER to the relay 192.0.2.250:67", kind(r), dst)
	}
}

// TestFullReplyAddr is fullReplyAddr's table: RFC 2131 section 4.1.
func TestFullReplyAddr(t *testing.T) {
	relay := dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250))
	offer, ack, nak := pkt(t, dhcpv4.MessageTypeOffer), pkt(t, dhcpv4.MessageTypeAck), pkt(t, dhcpv4.MessageTypeNak)
	for _, tc := range []struct {
		name       string
		req, reply *dhcpv4.DHCPv4
		want       string
	}{
		{"no giaddr, no ciaddr: broadcast", pkt(t, dhcpv4.MessageTypeDiscover), offer, "255.255.255.255:68"},
		{"no giaddr, no ciaddr, broadcast flag: broadcast", pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true)), offer, "255.255.255.255:68"},
		{"ciaddr: unicast to it", pkt(t, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")), ack, "192.0.2.100:68"},
		{"ciaddr and the broadcast flag: ciaddr", pkt(t, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100"), dhcpv4.WithBroadcast(true)), ack, "192.0.2.100:68"},
		{"an INFORM: ciaddr", pkt(t, dhcpv4.MessageTypeInform, ciaddr("192.0.2.50")), ack, "192.0.2.50:68"},
		{"giaddr: the relay's server port", pkt(t, dhcpv4.MessageTypeDiscover, relay), offer, "192.0.2.250:67"},
		{"giaddr and ciaddr: the relay", pkt(t, dhcpv4.MessageTypeRequest, relay, ciaddr("192.0.2.100")), ack, "192.0.2.250:67"},
		{"a NAK: broadcast, even with ciaddr", pkt(t, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")), nak, "255.255.255.255:68"},
		{"a NAK through a relay: the relay", pkt(t, dhcpv4.MessageTypeRequest, relay), nak, "192.0.2.250:67"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fullReplyAddr(tc.req, tc.reply).String(); got != tc.want {
				t.Errorf("fullReplyAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

// redirectConn sends every datagram to to, and records where it was
// addressed.
type redirectConn struct {
	net.PacketConn
	to   net.Addr
	mu   sync.Mutex // guards dsts
	dsts []string
}

func (c *redirectConn) WriteTo(b []byte, dst net.Addr) (int, error) {
	c.mu.Lock()
	c.dsts = append(c.dsts, dst.String())
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, c.to)
}

func (c *redirectConn) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dsts)
}

// TestFullRequestForAnotherServer: a DHCPREQUEST naming another server
// frees only an offer of ours the client never took: anyone can send one
// with a bound client's MAC, and a bound address freed by it went to
// the next new client, two machines on one address (dnsmasq and Kea
// ignore such a REQUEST for a bound client too).
func TestFullRequestForAnotherServer(t *testing.T) {
	other := []dhcpv4.Modifier{serverID("192.0.2.7"), requested("192.0.2.77")}
	h := newHarness(t, testNet(), nil)
	h.dora(macA)
	bound := Lease{MAC: macA, IP: addr("192.0.2.100"), Expires: t0.Add(time.Hour)}
	h.now = t0.Add(time.Minute)
	if r := h.send(macA, dhcpv4.MessageTypeRequest, other...); r != nil {
		t.Errorf("replied %s", r.Summary())
	}
	h.wantLeases(bound)
	if got := h.dora(macB); got != "192.0.2.101" {
		t.Errorf("B got %s, want 192.0.2.101: A is bound to .100", got)
	}
	if r := h.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "ACK" {
		t.Errorf("A renewing after the forged REQUEST: %s, want an ACK", kind(r))
	}

	// A bound client that starts over and then takes another server's
	// offer keeps its lease as it was.
	h = newHarness(t, testNet(), nil)
	h.dora(macA)
	h.now = t0.Add(time.Minute)
	h.send(macA, dhcpv4.MessageTypeDiscover)
	h.send(macA, dhcpv4.MessageTypeRequest, other...)
	h.wantLeases(bound)

	// A client whose lease ended: its offer is withdrawn, its old record
	// (the address it gets back first) kept.
	h.now = t0.Add(3 * time.Hour)
	h.send(macA, dhcpv4.MessageTypeDiscover)
	h.send(macA, dhcpv4.MessageTypeRequest, other...)
	h.wantLeases(bound)

	// A new client's offer is withdrawn: the address is free again.
	h = newHarness(t, testNet(), nil)
	h.dora(macA)
	if offer := h.send(macB, dhcpv4.MessageTypeDiscover); offer.YourIPAddr.String() != "192.0.2.101" {
		t.Fatalf("B offered %s", offer.YourIPAddr)
	}
	h.send(macB, dhcpv4.MessageTypeRequest, other...)
	h.wantLeases(bound)
	if got := h.dora(macC); got != "192.0.2.101" {
		t.Errorf("C got %s, want B's withdrawn offer 192.0.2.101", got)
	}
}

// TestFullOfferLapses: an offer not taken within offerHold frees its
// address; a client never seen before leaves no record behind, and one
// that asks late still gets the address when no one took it.
func TestFullOfferLapses(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	h.send(macB, dhcpv4.MessageTypeDiscover)
	h.now = t0.Add(offerHold + time.Second)
	if got := h.dora(macC); got != "192.0.2.100" {
		t.Errorf("C got %s, want B's lapsed offer 192.0.2.100", got)
	}
	h.wantLeases(Lease{MAC: macC, IP: addr("192.0.2.100"), Expires: h.now.Add(time.Hour)})
	if r := h.send(macB, dhcpv4.MessageTypeRequest, selecting("192.0.2.100")); kind(r) != "NAK" {
		t.Errorf("B asking late for the address C took: %s, want a NAK", kind(r))
	}
	h.send(macD, dhcpv4.MessageTypeDiscover)
	h.now = h.now.Add(offerHold + time.Second)
	if r := h.send(macD, dhcpv4.MessageTypeRequest, selecting("192.0.2.101")); kind(r) != "ACK" {
		t.Errorf("D asking late for its free address: %s, want an ACK", kind(r))
	}
}

// TestFullDeclineOfAnother: a DHCPDECLINE counts only with our server
// identifier (RFC 2131 table 5: MUST) and for an address leased or
// offered to its sender: anyone could otherwise take any address of the
// subnet out of use, its holder's renewal refused, a reserved machine
// left without an offer.
func TestFullDeclineOfAnother(t *testing.T) {
	h := newHarness(t, testNet(), nil)
	h.dora(macA)
	h.dora(macR)
	h.now = t0.Add(time.Minute)
	leases, _ := h.leases.All()
	for _, tc := range []struct {
		name string
		mac  net.HardwareAddr
		mods []dhcpv4.Modifier
	}{
		{"a stranger declines A's address", macC, []dhcpv4.Modifier{requested("192.0.2.100"), serverID("192.0.2.1")}},
		{"a stranger declines R's reserved address", macC, []dhcpv4.Modifier{requested("192.0.2.10"), serverID("192.0.2.1")}},
		{"a stranger declines a free address", macC, []dhcpv4.Modifier{requested("192.0.2.102"), serverID("192.0.2.1")}},
		{"A declines its own address without a server identifier", macA, []dhcpv4.Modifier{requested("192.0.2.100")}},
		{"A declines another address than its own", macA, []dhcpv4.Modifier{requested("192.0.2.101"), serverID("192.0.2.1")}},
	} {
		if r := h.send(tc.mac, dhcpv4.MessageTypeDecline, tc.mods...); r != nil {
			t.Errorf("%s: replied %s", tc.name, r.Summary())
		}
		h.wantLeases(leases...)
	}
	if h.log.find(slog.LevelWarn, "declined") != "" {
		t.Errorf("a Warn of a decline; the log:\n%s", h.log.all())
	}
	if r := h.send(macA, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "ACK" {
		t.Errorf("A renewing: %s, want an ACK", kind(r))
	}
	h.leases.Delete(macR)
	h.restart()
	if offer := h.send(macR, dhcpv4.MessageTypeDiscover); offer == nil || offer.YourIPAddr.String() != "192.0.2.10" {
		t.Errorf("R's offer: %v, want its reserved 192.0.2.10", offer)
	}
	if got := h.dora(macB); got != "192.0.2.101" {
		t.Errorf("B got %s, want 192.0.2.101", got)
	}
	if got := h.dora(macC); got != "192.0.2.102" {
		t.Errorf("C got %s, want 192.0.2.102", got)
	}

	// An address only offered to the sender may be declined (the client
	// found it in use before asking for it).
	h = newHarness(t, testNet(), nil)
	h.send(macA, dhcpv4.MessageTypeDiscover)
	h.send(macA, dhcpv4.MessageTypeDecline, requested("192.0.2.100"), serverID("192.0.2.1"))
	if got := h.dora(macB); got != "192.0.2.101" {
		t.Errorf("B got %s after A declined its offer of .100, want 192.0.2.101", got)
	}
}

// TestFullDeclineSurvivesRestart: a declined address stays out of use for
// declineHold across a restart, the mark kept through Leases (here one
// that keeps MACs and addresses as text, as the server's store does).
func TestFullDeclineSurvivesRestart(t *testing.T) {
	store := &textLeases{}
	h := newHarnessOn(t, testNet(), nil, store)
	h.dora(macA)
	h.send(macA, dhcpv4.MessageTypeDecline, requested("192.0.2.100"), serverID("192.0.2.1"))

	// The restart.
	h2 := newHarnessOn(t, testNet(), nil, store)
	h2.now = t0.Add(time.Minute)
	if got := h2.dora(macB, requested("192.0.2.100")); got != "192.0.2.101" {
		t.Errorf("B asking for the declined address after a restart got %s, want 192.0.2.101", got)
	}
	if r := h2.send(macC, dhcpv4.MessageTypeRequest, ciaddr("192.0.2.100")); kind(r) != "NAK" || !strings.Contains(r.Message(), "declined") {
		t.Errorf("C claiming the declined address: %s %q, want a NAK saying declined", kind(r), r.Message())
	}
	h2.now = t0.Add(declineHold + time.Second)
	if got := h2.dora(macC, requested("192.0.2.100")); got != "192.0.2.100" {
		t.Errorf("C after the decline hold got %s, want 192.0.2.100", got)
	}
	if _, err := store.All(); err != nil {
		t.Errorf("the store cannot read its leases back: %v", err)
	}
}

// textLeases keeps leases as the server's store does, MAC and address as
// text (net.HardwareAddr.String, netip.Addr.String), and parses them back
// with net.ParseMAC and netip.ParseAddr.
type textLeases struct {
	m map[string][4]string // MAC -> MAC, IP, expiry (RFC 3339), hostname
}

func (s *textLeases) Get(mac net.HardwareAddr) (Lease, bool, error) {
	r, ok := s.m[mac.String()]
	if !ok {
		return Lease{}, false, nil
	}
	l, err := s.parse(r)
	return l, err == nil, err
}

func (s *textLeases) parse(r [4]string) (Lease, error) {
	mac, err := net.ParseMAC(r[0])
	if err != nil {
		return Lease{}, err
	}
	ip, err := netip.ParseAddr(r[1])
	if err != nil {
		return Lease{}, err
	}
	exp, err := time.Parse(time.RFC3339Nano, r[2])
	if err != nil {
		return Lease{}, err
	}
	return Lease{MAC: mac, IP: ip, Expires: exp, Hostname: r[3]}, nil
}

func (s *textLeases) Put(l Lease) error {
	if s.m == nil {
		s.m = map[string][4]string{}
	}
	s.m[l.MAC.String()] = [4]string{l.MAC.String(), l.IP.String(), l.Expires.Format(time.RFC3339Nano), l.Hostname}
	return nil
}

func (s *textLeases) Delete(mac net.HardwareAddr) error {
	delete(s.m, mac.String())
	return nil
}

func (s *textLeases) Write(ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	var m MemLeases
	all, err := s.All()
	if err != nil {
		return nil, err
	}
	for _, l := range all {
		m.Put(l)
	}
	conflicts, err := m.Write(ws, now)
	if err != nil {
		return nil, err
	}
	s.m = nil
	all, _ = m.All()
	for _, l := range all {
		s.Put(l)
	}
	return conflicts, nil
}

func (s *textLeases) All() ([]Lease, error) {
	var out []Lease
	for _, r := range s.m {
		l, err := s.parse(r)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// randomMAC is a locally administered unicast MAC from r.
func randomMAC(r *rand.Rand) net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	for i := range m {
		m[i] = byte(r.Uint32())
	}
	m[0] = m[0]&^1 | 2
	return m
}

// liveRecords counts the leases of h that have not expired.
func (h *harness) liveRecords() int {
	h.t.Helper()
	all, err := h.f.leases.All()
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, l := range all {
		if l.Expires.After(h.now) {
			n++
		}
	}
	return n
}

// TestFullOfferFlood: DISCOVERs from made-up MACs, 200 a second, do not
// keep real clients from getting an address, on the flooded link or
// through another relay: offers hold addresses briefly, and only so many
// at once per relay or interface and in all; new MACs get holds at a
// bounded rate; an offer beyond that holds nothing.
func TestFullOfferFlood(t *testing.T) {
	for _, tc := range []struct {
		name         string
		flood, real  []dhcpv4.Modifier
		realHoldsToo bool // a real client's offer still holds its address
	}{
		{"on the link", nil, nil, false},
		{"through one relay, real clients through another", []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250))}, []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 251))}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testNet()
			cfg.Start, cfg.End = addr("192.0.2.100"), addr("192.0.2.199") // 100 addresses
			h := newHarness(t, cfg, nil)
			r := rand.New(rand.NewPCG(1, 2))
			got := map[string]string{}
			for i := range 4000 {
				h.now = h.now.Add(5 * time.Millisecond)
				h.send(randomMAC(r), dhcpv4.MessageTypeDiscover, tc.flood...)
				if i%400 != 399 {
					continue
				}
				mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i / 400)}
				offer := h.send(mac, dhcpv4.MessageTypeDiscover, tc.real...)
				if offer == nil {
					t.Fatalf("real client %s: no offer after %d DISCOVERs of the flood; the log's end:\n%s", mac, i+1, tail(h.log.all(), 5))
				}
				if _, held, _ := h.leases.Get(mac); held != tc.realHoldsToo {
					t.Errorf("real client %s: offer holds its address: %v, want %v", mac, held, tc.realHoldsToo)
				}
				ack := h.send(mac, dhcpv4.MessageTypeRequest, append(tc.real, selecting(offer.YourIPAddr.String()))...)
				if kind(ack) != "ACK" {
					t.Fatalf("real client %s: %s for %s after %d DISCOVERs of the flood; the log's end:\n%s", mac, kind(ack), offer.YourIPAddr, i+1, tail(h.log.all(), 5))
				}
				ip := ack.YourIPAddr.String()
				if other, dup := got[ip]; dup {
					t.Fatalf("%s and %s both bound to %s", other, mac, ip)
				}
				got[ip] = mac.String()
				if n := h.liveRecords(); n > len(got)+25 {
					t.Errorf("after %d DISCOVERs, %d live records for %d bound clients: the flood holds more than a quarter of the pool", i+1, n, len(got))
				}
			}
			if len(got) != 10 {
				t.Errorf("%d real clients bound, want 10", len(got))
			}
		})
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestFullOddHardwareAddress: a client hardware address the server's
// store cannot read back (net.ParseMAC takes 6, 8 or 20 bytes) gets no
// lease: one DISCOVER with a 3-byte chaddr made every later All fail,
// and no client got an address any more.
func TestFullOddHardwareAddress(t *testing.T) {
	store := &textLeases{}
	h := newHarnessOn(t, testNet(), nil, store)
	for _, mac := range []net.HardwareAddr{{1, 2, 3}, {1, 2, 3, 4, 5, 6, 7}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}} {
		if r := h.send(mac, dhcpv4.MessageTypeDiscover); r != nil {
			t.Errorf("offer to chaddr %s: %s", mac, r.Summary())
		}
		if r := h.send(mac, dhcpv4.MessageTypeRequest, selecting("192.0.2.103")); r != nil {
			t.Errorf("reply to chaddr %s's REQUEST: %s", mac, r.Summary())
		}
	}
	if h.log.find(slog.LevelDebug, "hardware address") == "" {
		t.Errorf("no Debug record; the log:\n%s", h.log.all())
	}
	if got := h.dora(macA); got != "192.0.2.100" {
		t.Errorf("A got %s", got)
	}
	// An EUI-64 (8 bytes) is fine.
	if got := h.dora(net.HardwareAddr{2, 0, 0, 0, 0, 0, 0, 1}); got != "192.0.2.101" {
		t.Errorf("an 8-byte chaddr got %s", got)
	}
}
