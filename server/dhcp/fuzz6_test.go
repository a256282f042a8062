package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandle6 feeds arbitrary datagrams to a Server6: none panics; what
// does not decode gets no answer and a Debug record; an answer decodes,
// goes back to the peer, is a RELAY-REPL for each RELAY-FORW around the
// request (same hop count, link-address, peer-address and Interface-ID)
// and inside them an ADVERTISE or REPLY to the same transaction, and
// gives addresses only from the pool.
func FuzzHandle6(f *testing.F) {
	for _, m := range []*dhcpv6.Message{
		msg6(dhcpv6.MessageTypeSolicit, llt6, 7, bootORO6, vcHTTP6, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP)),
		msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, bootORO6, vcPXE6, ipxeUC6, dhcpv6.WithArchType(iana.EFI_X86_64)),
		msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6, dhcpv6.WithRapidCommit),
		msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 0, ipxeUC6, bootORO6),
		msg6(dhcpv6.MessageTypeRequest, llt6, 7, vcHTTP6, withServerID6(ourID6), withAddr6("2001:db8::101")),
		msg6(dhcpv6.MessageTypeRenew, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::100")),
		msg6(dhcpv6.MessageTypeRebind, llt6, 7, withAddr6("2001:db8::100")),
		msg6(dhcpv6.MessageTypeConfirm, llt6, 7, withAddr6("2001:db8::ab")),
		msg6(dhcpv6.MessageTypeDecline, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::101")),
		msg6(dhcpv6.MessageTypeRelease, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::100")),
	} {
		f.Add(m.ToBytes())
	}
	relay, err := dhcpv6.EncapsulateRelay(msg6(dhcpv6.MessageTypeSolicit, llt6, 7), dhcpv6.MessageTypeRelayForward, peer6.IP, peer6.IP)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(relay.ToBytes())
	relay.AddOption(dhcpv6.OptInterfaceID([]byte("eth0")))
	nested, err := dhcpv6.EncapsulateRelay(relay, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:1::1"), net.ParseIP("2001:db8::2"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(nested.ToBytes())
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 200, 0, 0})
	start, end := netip.MustParseAddr("2001:db8::100"), netip.MustParseAddr("2001:db8::102")
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := &logRecorder{}
		s, _ := newServer6(t, policy6)
		s.log = slog.New(rec)
		_, decodeErr := dhcpv6.FromBytes(b)
		reply, dst := s.Handle(context.Background(), b, peer6)
		if decodeErr != nil {
			if reply != nil {
				t.Fatalf("answered a packet that does not decode (%v)", decodeErr)
			}
			if rec.find(slog.LevelDebug, "malformed") == "" {
				t.Fatalf("no Debug record of the malformed packet; the log:\n%s", rec.all())
			}
			return
		}
		if reply == nil {
			return
		}
		if dst != peer6 {
			t.Fatalf("reply to %v", dst)
		}
		out, err := dhcpv6.FromBytes(reply.ToBytes())
		if err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		in, _ := dhcpv6.FromBytes(b)
		for in.IsRelay() {
			fw := in.(*dhcpv6.RelayMessage)
			rp, ok := out.(*dhcpv6.RelayMessage)
			if !ok || rp.Type() != dhcpv6.MessageTypeRelayReply || rp.HopCount != fw.HopCount ||
				!rp.LinkAddr.Equal(fw.LinkAddr) || !rp.PeerAddr.Equal(fw.PeerAddr) || !bytes.Equal(rp.Options.InterfaceID(), fw.Options.InterfaceID()) {
				t.Fatalf("reply layer %v to %v", out, in)
			}
			in, out = fw.Options.RelayMessage(), rp.Options.RelayMessage()
		}
		back, ok := out.(*dhcpv6.Message)
		if !ok {
			t.Fatalf("reply %v to a client message", out)
		}
		req := in.(*dhcpv6.Message)
		if back.TransactionID != req.TransactionID {
			t.Fatalf("reply xid %v, request %v", back.TransactionID, req.TransactionID)
		}
		if typ := back.Type(); typ != dhcpv6.MessageTypeAdvertise && typ != dhcpv6.MessageTypeReply {
			t.Fatalf("reply of type %s", typ)
		}
		for _, ia := range back.Options.IANA() {
			for _, a := range ia.Options.Addresses() {
				ip, _ := netip.AddrFromSlice(a.IPv6Addr)
				if ip.Less(start) || end.Less(ip) {
					t.Fatalf("address %s outside the pool", ip)
				}
			}
		}
	})
}

// seqClients6 are the clients of FuzzServer6Sequence: two machines, A
// (52:54:00:00:00:0a) seen under three DUIDs as firmware, iPXE and agent
// would be, the last host-wide (DUID-LLT of A's MAC) and also sent from
// B's NIC; and B (52:54:00:00:00:0b) under its own.
var seqClients6 = []struct {
	duid dhcpv6.DUID
	peer *net.UDPAddr
}{
	{&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}}, &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:a"), Port: 546}},
	{&dhcpv6.DUIDUUID{UUID: [16]byte{0xa}}, &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:a"), Port: 546}},
	{&dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}}, &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:a"), Port: 546}},
	{&dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}}, &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:b"), Port: 546}},
	{&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0b}}, &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:b"), Port: 546}},
	{&dhcpv6.DUIDUUID{UUID: [16]byte{0xb}}, &net.UDPAddr{IP: net.ParseIP("2001:db8::b"), Port: 546}},
}

var seqTypes6 = []dhcpv6.MessageType{dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest,
	dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline, dhcpv6.MessageTypeConfirm}

// seqOp6 builds FuzzServer6Sequence's messages, three bytes each.
func seqOp6(typ, client, ias, addr byte, relayed, restart bool, later byte) []byte {
	b0 := typ&7 | (later&3)<<4
	if relayed {
		b0 |= 8
	}
	if restart {
		b0 |= 64
	}
	return []byte{b0, client | ias<<3, addr}
}

// FuzzServer6Sequence sends a sequence of client messages to one server
// (three bytes a message: its type, relayed or not, the clock moved
// first or the server started again over the same Leases6; the client
// and its IA_NAs; the address in them), clients from seqClients6 with
// IAIDs 1 to 3, over a pool of three addresses. After each answer: every
// IA_NA asked about is answered once, with an address of the pool or a
// status; no two IAs get one address in one answer; and, across the
// sequence, no address given in a Reply is bound to two (DUID, IAID) at
// once, as the clients see it: given (in an Advertise or a Reply) to one
// while another's lifetime of it lasts and that one did not release or
// decline it. The one exception is by design: a new IA of a machine's
// next DUID takes over the address of its MAC under another DUID
// (Server6), which ends that IA's binding without telling its client
// (boot stages forget theirs).
func FuzzServer6Sequence(f *testing.F) {
	cat := func(ops ...[]byte) []byte { return bytes.Join(ops, nil) }
	const (
		sol, solRC, req, ren, reb, rel, dec, conf = 0, 1, 2, 3, 4, 5, 6, 7
	)
	f.Add(cat(seqOp6(solRC, 2, 3, 0, false, false, 0)))                                          // one DUID, IA_NAs 1 and 2
	f.Add(cat(seqOp6(solRC, 2, 1, 0, false, false, 0), seqOp6(solRC, 3, 2, 0, false, false, 0))) // a host-wide DUID on two NICs
	f.Add(cat(seqOp6(sol, 0, 1, 0, false, false, 0), seqOp6(req, 0, 1, 0, false, false, 0),
		seqOp6(solRC, 1, 1, 0, false, false, 0), seqOp6(ren, 0, 1, 0, false, false, 0))) // firmware, then iPXE takes over
	f.Add(cat(seqOp6(solRC, 0, 1, 0, false, false, 0), seqOp6(solRC, 4, 1, 0, false, true, 0),
		seqOp6(ren, 0, 1, 0, false, false, 0))) // restart
	f.Add(cat(seqOp6(solRC, 0, 7, 0, true, false, 0), seqOp6(rel, 0, 2, 0, false, false, 0), seqOp6(dec, 0, 1, 0, false, false, 0),
		seqOp6(solRC, 5, 3, 0, false, false, 3), seqOp6(reb, 0, 1, 1, false, false, 0), seqOp6(conf, 0, 1, 0, false, false, 0)))
	f.Add(cat(seqOp6(req, 1, 6, 0, false, false, 0), seqOp6(sol, 2, 6, 3, true, false, 0),
		seqOp6(req, 1, 7, 3, true, false, 0))) // taken over and back
	start := netip.MustParseAddr("2001:db8::100")
	pool := []netip.Addr{start, start.Next(), start.Next().Next()}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 3*64 {
			ops = ops[:3*64]
		}
		leases := &MemLeases6{}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		newServer := func() *Server6 {
			s, _ := newServer6With(t, policy6, leases)
			s.now = func() time.Time { return now }
			return s
		}
		s := newServer()
		type holder struct {
			key   iaKey6
			mac   string
			until time.Time
		}
		bound := map[netip.Addr]holder{} // what the clients hold, by Reply
		given := map[iaKey6]netip.Addr{} // the last address each IA got
		var log []string
		for i := 0; i+3 <= len(ops); i += 3 {
			b0, b1, b2 := ops[i], ops[i+1], ops[i+2]
			typ := seqTypes6[b0&7]
			now = now.Add([]time.Duration{0, time.Minute, 30 * time.Minute, 2 * time.Hour}[b0>>4&3])
			if b0&64 != 0 {
				s = newServer()
			}
			c := seqClients6[int(b1&7)%len(seqClients6)]
			mac := clientMAC(c.duid, c.peer).String()
			m := &dhcpv6.Message{MessageType: typ, TransactionID: dhcpv6.TransactionID{byte(i), byte(i >> 8), 1}}
			m.AddOption(dhcpv6.OptClientID(c.duid))
			switch typ {
			case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
				m.AddOption(dhcpv6.OptServerID(ourID6))
			}
			if b0&7 == 1 {
				m.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
			}
			var asked []iaKey6
			for id := uint32(1); id <= 3; id++ {
				if b1>>(2+id)&1 == 0 {
					continue
				}
				k := iaKey6{string(c.duid.ToBytes()), id}
				asked = append(asked, k)
				ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, byte(id)}}
				var a netip.Addr
				if n := int(b2 % 5); n == 0 {
					a = given[k]
				} else if n <= len(pool) {
					a = pool[n-1]
				}
				if a.IsValid() {
					ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.AsSlice()})
				}
				m.AddOption(ia)
			}
			var d dhcpv6.DHCPv6 = m
			if b0&8 != 0 {
				d = relay6(m, "2001:db8::1", c.peer.IP.String(), "eth0")
			}
			log = append(log, fmt.Sprintf("%v: %s from client %d IAs %03b addr %d relayed %v", now.Format("15:04"), typ, int(b1&7)%len(seqClients6), b1>>3&7, b2%5, b0&8 != 0))
			out, _ := s.Handle(context.Background(), d.ToBytes(), c.peer)
			for out != nil && out.IsRelay() {
				out = out.(*dhcpv6.RelayMessage).Options.RelayMessage()
			}
			reply, _ := out.(*dhcpv6.Message)
			if reply == nil {
				continue
			}
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("%s\nafter:\n%s", fmt.Sprintf(format, args...), strings.Join(log, "\n"))
			}
			answered := map[uint32]netip.Addr{}
			for _, ia := range reply.Options.IANA() {
				id := binary.BigEndian.Uint32(ia.IaId[:])
				if _, dup := answered[id]; dup {
					fail("IA %d answered twice", id)
				}
				var a netip.Addr
				if o := ia.Options.OneAddress(); o != nil {
					a, _ = netip.AddrFromSlice(o.IPv6Addr)
					if !slices.Contains(pool, a) {
						fail("address %s outside the pool", a)
					}
					for other, b := range answered {
						if b == a {
							fail("IAs %d and %d both got %s", other, id, a)
						}
					}
				}
				answered[id] = a
			}
			switch typ {
			case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
				if len(answered) != len(asked) && !(typ == dhcpv6.MessageTypeSolicit && len(asked) == 0) {
					fail("%d IA_NAs asked, %d answered", len(asked), len(answered))
				}
				for _, k := range asked {
					a := answered[k.iaid]
					if !a.IsValid() {
						continue
					}
					given[k] = a
					if h, ok := bound[a]; ok && h.key != k && h.until.After(now) {
						if h.mac == "" || h.mac != mac || h.key.duid == k.duid {
							fail("%s given to IA %d of %x while IA %d of %x holds it until %s", a, k.iaid, k.duid, h.key.iaid, h.key.duid, h.until.Format("15:04"))
						}
						// Taken over, even by an Advertise: the old IA's
						// binding ends (it is not told).
						delete(bound, a)
					}
					if reply.Type() != dhcpv6.MessageTypeReply {
						continue
					}
					for b, h := range bound {
						if h.key == k && b != a {
							delete(bound, b)
						}
					}
					bound[a] = holder{key: k, mac: mac, until: now.Add(time.Hour)}
				}
			case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
				for _, o := range m.Options.IANA() {
					k := iaKey6{string(c.duid.ToBytes()), binary.BigEndian.Uint32(o.IaId[:])}
					for _, ad := range o.Options.Addresses() {
						a, _ := netip.AddrFromSlice(ad.IPv6Addr)
						if h, ok := bound[a]; ok && h.key == k {
							delete(bound, a)
						}
					}
				}
			}
			all, _ := leases.All()
			seen := map[netip.Addr]bool{}
			for _, l := range all {
				if seen[l.IP] {
					fail("the store holds %s twice: %+v", l.IP, all)
				}
				seen[l.IP] = true
			}
		}
	})
}
