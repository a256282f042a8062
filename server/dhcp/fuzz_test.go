package dhcp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary datagrams to both Proxy handlers and to a
// Full server: none panics; what does not decode gets no answer and a
// Debug record; what is answered decodes, is a BOOTREPLY to the same
// transaction, and gives an address only from Full's pool or
// reservations.
func FuzzHandle(f *testing.F) {
	bios, efi, http := pxe(vcBIOS, ArchBIOS), pxe(vcEFI, ArchEFI64), pxe(vcHTTP, ArchEFI64HTTP)
	for _, p := range []*dhcpv4.DHCPv4{
		pkt(f, dhcpv4.MessageTypeDiscover, bios...),
		pkt(f, dhcpv4.MessageTypeDiscover, with(efi, ipxeClass)...),
		pkt(f, dhcpv4.MessageTypeDiscover, http...),
		pkt(f, dhcpv4.MessageTypeDiscover, with(bios, dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 254)))...),
		pkt(f, dhcpv4.MessageTypeRequest, with(efi, dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50)), serverID("192.0.2.1"))...),
		pkt(f, dhcpv4.MessageTypeRequest, selecting("192.0.2.100")),
		pkt(f, dhcpv4.MessageTypeRequest, requested("192.0.2.100")),
		pkt(f, dhcpv4.MessageTypeDecline, requested("192.0.2.100"), serverID("192.0.2.1")),
		pkt(f, dhcpv4.MessageTypeRelease, ciaddr("192.0.2.100")),
		pkt(f, dhcpv4.MessageTypeInform, ciaddr("192.0.2.50")),
		pkt(f, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(macR)),
		// As iPXE asks: parameter list, maximum size, option 94, and its
		// own encapsulated options (175).
		pkt(f, dhcpv4.MessageTypeDiscover, with(efi, ipxeClass,
			dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 10}),
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 1, 1, 0x13, 1, 1}))...),
	} {
		f.Add(p.ToBytes())
	}
	f.Add([]byte{})
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, decodeErr := dhcpv4.FromBytes(b)
		check := func(who string, rec *logRecorder, reply *dhcpv4.DHCPv4, dst *net.UDPAddr) {
			t.Helper()
			if decodeErr != nil {
				if reply != nil {
					t.Fatalf("%s answered a packet that does not decode (%v)", who, decodeErr)
				}
				if rec.find(slog.LevelDebug, "malformed") == "" {
					t.Fatalf("%s: no Debug record of the malformed packet; the log:\n%s", who, rec.all())
				}
				return
			}
			if reply == nil {
				return
			}
			if dst == nil {
				t.Fatalf("%s: a reply without a destination", who)
			}
			back, err := dhcpv4.FromBytes(reply.ToBytes())
			if err != nil {
				t.Fatalf("%s: the reply does not decode: %v", who, err)
			}
			if back.OpCode != dhcpv4.OpcodeBootReply || back.TransactionID != req.TransactionID {
				t.Fatalf("%s: reply op %s xid %s to xid %s", who, back.OpCode, back.TransactionID, req.TransactionID)
			}
			yi, _ := netip.AddrFromSlice(back.YourIPAddr.To4())
			if who != "full" && !yi.IsUnspecified() {
				t.Fatalf("%s gave an address: %v", who, yi)
			}
			if who == "full" && !yi.IsUnspecified() {
				if yi != addr("192.0.2.10") && (yi.Less(addr("192.0.2.100")) || addr("192.0.2.103").Less(yi)) {
					t.Fatalf("full gave %v, outside the pool and reservations", yi)
				}
			}
		}
		for _, port := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
			rec := &logRecorder{}
			p := &Proxy{ServerIP: testServer, Interface: "eth1", Booter: testPolicy}
			reply, dst := p.handle(context.Background(), rec.logger(), b, peer, port)
			check("proxy "+port.String(), rec, reply, dst)
		}
		rec := &logRecorder{}
		full, err := NewFull(testNet(), &MemLeases{}, testPolicy, rec.logger())
		if err != nil {
			t.Fatal(err)
		}
		reply, dst := full.handle(context.Background(), b, peer)
		check("full", rec, reply, dst)
	})
}

func FuzzParseVendorClass(f *testing.F) {
	for _, s := range []string{vcBIOS, vcEFI, vcHTTP, "PXEClient", "PXEClient:Arch:", "HTTPClient:Arch:65535", "MSFT 5.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		class, arch, hasArch := parseVendorClass(s)
		if class != "" && class != ClassPXE && class != ClassHTTP || !strings.HasPrefix(s, class) {
			t.Fatalf("class %q of %q", class, s)
		}
		if class == "" && (arch != 0 || hasArch) {
			t.Fatalf("an arch (%d) without a class in %q", arch, s)
		}
		if hasArch && !strings.HasPrefix(s, class+":Arch:") {
			t.Fatalf("an arch from %q, which has no Arch field", s)
		}
	})
}

func FuzzParseArch(f *testing.F) {
	f.Add([]byte{0, 7})
	f.Add([]byte{0, 7, 0, 0})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseArch(b)
		if (err == nil) != (len(b) > 0 && len(b)%2 == 0) {
			t.Fatalf("parseArch(%v) error %v", b, err)
		}
		if err == nil && a != Arch(b[0])<<8|Arch(b[1]) {
			t.Fatalf("parseArch(%v) = %d", b, a)
		}
	})
}

func FuzzParseMachineID(f *testing.F) {
	f.Add(testGUID)
	f.Add(testGUID[:5])
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseMachineID(b)
		if (err == nil) != (len(b) == 17 && b[0] == 0) {
			t.Fatalf("parseMachineID(%v) error %v", b, err)
		}
		if err == nil && (len(id) != 36 || strings.Count(id, "-") != 4) {
			t.Fatalf("parseMachineID(%v) = %q", b, id)
		}
	})
}

func FuzzParseUserClass(f *testing.F) {
	for _, s := range []string{"iPXE", "\x04iPXE", "\x04iPXE\x03lab", "\x00", "\x09iPXE", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		classes := parseUserClass(b)
		if len(b) == 0 {
			if classes != nil {
				t.Fatalf("classes %q from nothing", classes)
			}
			return
		}
		// Either one bare class, the bytes as they came, or an RFC 3004
		// list that encodes back to them.
		if len(classes) == 1 && classes[0] == string(b) {
			return
		}
		var enc bytes.Buffer
		for _, c := range classes {
			if len(c) == 0 || len(c) > 255 {
				t.Fatalf("class of %d bytes in %q", len(c), classes)
			}
			enc.WriteByte(byte(len(c)))
			enc.WriteString(c)
		}
		if !bytes.Equal(enc.Bytes(), b) {
			t.Fatalf("parseUserClass(%q) = %q, which encodes to %q", b, classes, enc.Bytes())
		}
	})
}

// FuzzFullExchanges feeds a sequence of messages from a few MACs, some
// forged (another's address, another server, no server identifier),
// with the clock moving between them, to one Full, and checks after each
// what must always hold:
//   - no two MACs hold one address: an address ACKed to a MAC is not
//     ACKed to another until that lease ends or its holder gave it up
//     (RELEASE, or DECLINE with our server identifier);
//   - a MAC holding an address that renews it (ciaddr) gets an ACK;
//   - an address its holder declined is neither offered nor ACKed for
//     declineHold;
//   - every address offered, ACKed or in the leases is in the pool, or
//     the reservation of that MAC; no two live leases share an address.
//
// Each message is 4 bytes, see exchangeOp.
func FuzzFullExchanges(f *testing.F) {
	for _, seq := range [][]exchangeOp{
		// A bound; a forged REQUEST for another server with A's MAC; B
		// then must not get A's address.
		{{mac: 0, kind: opDiscover}, {mac: 0, kind: opRequest, sid: sidOurs, want: fromOffer},
			{mac: 0, kind: opRequest, sid: sidOther, want: fromPool, addr: 7},
			{mac: 1, kind: opDiscover}, {mac: 1, kind: opRequest, sid: sidOurs, want: fromOffer},
			{mac: 0, kind: opRequest, ci: fromOwn}},
		// A bound; C declines A's address without a server identifier,
		// then with ours; A renews.
		{{mac: 0, kind: opDiscover}, {mac: 0, kind: opRequest, sid: sidOurs, want: fromOffer},
			{mac: 2, kind: opDecline, want: fromOther}, {mac: 2, kind: opDecline, sid: sidOurs, want: fromOther},
			{mac: 0, kind: opRequest, ci: fromOwn}, {mac: 0, kind: opRequest, ci: fromOwn, sid: sidOurs}},
		// A declines its own address; B asks for it.
		{{mac: 0, kind: opDiscover}, {mac: 0, kind: opRequest, sid: sidOurs, want: fromOffer},
			{mac: 0, kind: opDecline, sid: sidOurs, want: fromOwn}, {mac: 1, kind: opDiscover, want: fromPool, addr: 0},
			{mac: 1, kind: opRequest, want: fromPool, addr: 0, sid: sidOurs}, {mac: 1, kind: opRequest, ci: fromPool, addr: 0},
			{mac: 3, kind: opDiscover, wait: 5}, {mac: 3, kind: opRequest, sid: sidOurs, want: fromOffer}},
		// Leases end and are reused; a reserved client; a relay.
		{{mac: 0, kind: opDiscover}, {mac: 0, kind: opRequest, sid: sidOurs, want: fromOffer, wait: 6},
			{mac: 5, kind: opDiscover, relay: true}, {mac: 5, kind: opRequest, sid: sidOurs, want: fromOffer, relay: true},
			{mac: 1, kind: opRequest, want: fromPool, addr: 4}, {mac: 0, kind: opRequest, ci: fromOwn},
			{mac: 0, kind: opRelease, ci: fromOwn}, {mac: 4, kind: opInform, ci: fromPool, addr: 5}},
		// A stranger renews a free address; another asks for it.
		{{mac: 6, kind: opRequest, ci: fromPool, addr: 2}, {mac: 7, kind: opRequest, sid: sidOurs, want: fromPool, addr: 2},
			{mac: 7, kind: opDiscover, want: fromPool, addr: 2}},
	} {
		var b []byte
		for _, op := range seq {
			b = append(b, op.bytes()...)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4*200 {
			return
		}
		x := newExchanges(t)
		for i := 0; i+4 <= len(b); i += 4 {
			x.do(decodeOp(b[i : i+4]))
		}
	})
}

// exchangeOp is one message of FuzzFullExchanges: 4 bytes,
//
//	mac(3 bits) kind(3) relay(1) broadcast(1)
//	sid(2) want(2) ci(2) -(2)
//	addr
//	wait
type exchangeOp struct {
	mac, kind        int
	relay, broadcast bool
	sid, want, ci    int
	addr, wait       int
}

const (
	opDiscover = iota
	opRequest
	opDecline
	opRelease
	opInform
	opRequest2 // a REQUEST too: they matter most
	opDiscover2
	opWait
)

// Server identifiers.
const (
	sidNone = iota
	sidOurs
	sidOther
	sidNone2
)

// Where option 50 (want) and ciaddr (ci) come from.
const (
	fromNone  = iota
	fromOffer             // option 50: the last address offered to the MAC
	fromPool              // exchangeAddrs[addr]
	fromOther             // an address another MAC holds
	fromOwn   = fromOffer // ciaddr: the address the MAC holds, else its last offer
)

var (
	exchangeMACs = []net.HardwareAddr{macA, macB, macC, macD, macE, macR, {2, 0, 0, 0, 0, 6}, {2, 0, 0, 0, 0, 7}}
	// The pool, the reservation, the server, the router, outside the
	// pool, outside the subnet.
	exchangeAddrs = []string{"192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.10", "192.0.2.1", "192.0.2.254", "192.0.2.99", "192.0.2.104", "198.51.100.7"}
	exchangeWaits = []time.Duration{0, time.Second, 5 * time.Second, offerHold + time.Second, time.Minute, declineHold + time.Second, time.Hour + time.Second, 3 * time.Hour}
)

func decodeOp(b []byte) exchangeOp {
	return exchangeOp{
		mac: int(b[0] & 7), kind: int(b[0] >> 3 & 7), relay: b[0]&0x40 != 0, broadcast: b[0]&0x80 != 0,
		sid: int(b[1] & 3), want: int(b[1] >> 2 & 3), ci: int(b[1] >> 4 & 3),
		addr: int(b[2]) % len(exchangeAddrs), wait: int(b[3]) % len(exchangeWaits),
	}
}

func (op exchangeOp) bytes() []byte {
	b0 := byte(op.mac) | byte(op.kind)<<3
	if op.relay {
		b0 |= 0x40
	}
	if op.broadcast {
		b0 |= 0x80
	}
	return []byte{b0, byte(op.sid) | byte(op.want)<<2 | byte(op.ci)<<4, byte(op.addr), byte(op.wait)}
}

// exchanges is FuzzFullExchanges' server and what its clients were told.
type exchanges struct {
	t        *testing.T
	h        *harness
	held     map[netip.Addr]holder    // ACKed addresses
	declined map[netip.Addr]time.Time // declined by their holder, until
	offered  map[string]netip.Addr    // the last offer to each MAC
	log      []string
}

type holder struct {
	mac   string
	until time.Time
}

func newExchanges(t *testing.T) *exchanges {
	h := newHarness(t, testNet(), nil)
	return &exchanges{t: t, h: h, held: map[netip.Addr]holder{}, declined: map[netip.Addr]time.Time{}, offered: map[string]netip.Addr{}}
}

// holding is the address mac holds now, if any.
func (x *exchanges) holding(mac string) (netip.Addr, bool) {
	for ip, hd := range x.held {
		if hd.mac == mac && hd.until.After(x.h.now) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// source is the address from names for mac: for option 50 (ci false)
// fromOffer is the last address offered to mac, for ciaddr (ci true)
// the one it holds, if any.
func (x *exchanges) source(from int, ci bool, op exchangeOp, mac string) (netip.Addr, bool) {
	switch from {
	case fromOffer:
		if ci {
			if ip, ok := x.holding(mac); ok {
				return ip, true
			}
		}
		a, ok := x.offered[mac]
		return a, ok
	case fromPool:
		return addr(exchangeAddrs[op.addr]), true
	case fromOther:
		var best netip.Addr
		for ip, hd := range x.held {
			if hd.mac != mac && hd.until.After(x.h.now) && (!best.IsValid() || ip.Less(best)) {
				best = ip
			}
		}
		return best, best.IsValid()
	}
	return netip.Addr{}, false
}

func (x *exchanges) fail(format string, args ...any) {
	x.t.Helper()
	x.t.Fatalf("%s\nthe exchanges:\n%s\nthe server's log:\n%s", fmt.Sprintf(format, args...), strings.Join(x.log, "\n"), x.h.log.all())
}

func (x *exchanges) do(op exchangeOp) {
	x.t.Helper()
	h := x.h
	h.now = h.now.Add(exchangeWaits[op.wait])
	if op.kind == opWait {
		x.log = append(x.log, fmt.Sprintf("%s wait %v", h.now.Format(time.TimeOnly), exchangeWaits[op.wait]))
		return
	}
	mac := exchangeMACs[op.mac]
	key := mac.String()
	typ := map[int]dhcpv4.MessageType{
		opDiscover: dhcpv4.MessageTypeDiscover, opDiscover2: dhcpv4.MessageTypeDiscover,
		opRequest: dhcpv4.MessageTypeRequest, opRequest2: dhcpv4.MessageTypeRequest,
		opDecline: dhcpv4.MessageTypeDecline, opRelease: dhcpv4.MessageTypeRelease, opInform: dhcpv4.MessageTypeInform,
	}[op.kind]
	var mods []dhcpv4.Modifier
	var sid netip.Addr
	switch op.sid {
	case sidOurs:
		sid = addr("192.0.2.1")
	case sidOther:
		sid = addr("192.0.2.7")
	}
	if sid.IsValid() {
		mods = append(mods, serverID(sid.String()))
	}
	want, hasWant := x.source(op.want, false, op, key)
	if hasWant {
		mods = append(mods, requested(want.String()))
	}
	ci, hasCI := x.source(op.ci, true, op, key)
	if hasCI {
		mods = append(mods, ciaddr(ci.String()))
	}
	if op.relay {
		mods = append(mods, dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 250)))
	}
	if op.broadcast {
		mods = append(mods, dhcpv4.WithBroadcast(true))
	}
	own, holds := x.holding(key)
	reply := h.send(mac, typ, mods...)
	x.log = append(x.log, fmt.Sprintf("%s %s %s sid=%s want=%s ciaddr=%s relay=%v: %s %s", h.now.Format(time.TimeOnly), key, typ, str(sid), str(want), str(ci), op.relay, kind(reply), str(yiaddr(reply))))

	// What the client does with its address.
	switch {
	case typ == dhcpv4.MessageTypeRelease && holds && hasCI && ci == own && sid != addr("192.0.2.7"):
		delete(x.held, own)
	case typ == dhcpv4.MessageTypeDecline && holds && hasWant && want == own && sid == addr("192.0.2.1"):
		delete(x.held, own)
		x.declined[own] = h.now.Add(declineHold)
	}

	// A renewal by the holder is granted.
	if typ == dhcpv4.MessageTypeRequest && holds && hasCI && ci == own && !hasWant && sid != addr("192.0.2.7") {
		if kind(reply) != "ACK" || yiaddr(reply) != own {
			x.fail("%s renewing %v, which it holds until %v: %s %v", key, own, x.held[own].until, kind(reply), yiaddr(reply))
		}
	}

	if reply == nil {
		x.checkLeases()
		return
	}
	yi := yiaddr(reply)
	t := reply.MessageType()
	if (t == dhcpv4.MessageTypeOffer || t == dhcpv4.MessageTypeAck) && yi.IsValid() && !yi.IsUnspecified() {
		if !inPool(yi) && !(yi == addr("192.0.2.10") && key == macR.String()) {
			x.fail("%s %s of %v to %s: outside the pool and its reservation", key, t, yi, key)
		}
		if until, ok := x.declined[yi]; ok && until.After(h.now) {
			x.fail("%s of %v to %s, declined by its holder until %v", t, yi, key, until)
		}
		if t == dhcpv4.MessageTypeOffer {
			x.offered[key] = yi
		}
	}
	if t == dhcpv4.MessageTypeAck && yi.IsValid() && !yi.IsUnspecified() {
		if hd, ok := x.held[yi]; ok && hd.mac != key && hd.until.After(h.now) {
			x.fail("%v ACKed to %s while %s holds it until %v: two machines on one address", yi, key, hd.mac, hd.until)
		}
		if holds && own != yi {
			delete(x.held, own)
		}
		x.held[yi] = holder{key, h.now.Add(time.Hour)}
	}
	x.checkLeases()
}

// checkLeases checks the leases themselves.
func (x *exchanges) checkLeases() {
	x.t.Helper()
	all, err := x.h.leases.All()
	if err != nil {
		x.fail("leases: %v", err)
	}
	live := map[netip.Addr]string{}
	for _, l := range all {
		switch {
		case isDeclinedMAC(l.MAC):
			if !inPool(l.IP) && l.IP != addr("192.0.2.10") {
				x.fail("a declined address outside the pool: %+v", l)
			}
		case !inPool(l.IP) && !(l.IP == addr("192.0.2.10") && l.MAC.String() == macR.String()):
			x.fail("a lease outside the pool and its reservation: %+v", l)
		}
		if !l.Expires.After(x.h.now) {
			continue
		}
		if other, dup := live[l.IP]; dup {
			x.fail("two live leases on %v: %s and %s", l.IP, other, l.MAC)
		}
		live[l.IP] = l.MAC.String()
	}
}

func inPool(ip netip.Addr) bool {
	return !ip.Less(addr("192.0.2.100")) && !addr("192.0.2.103").Less(ip)
}

func yiaddr(r *dhcpv4.DHCPv4) netip.Addr {
	if r == nil {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(r.YourIPAddr.To4())
	return a
}

// str is a as text, "-" for the zero Addr.
func str(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}
