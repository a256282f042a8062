package dhcp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

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
