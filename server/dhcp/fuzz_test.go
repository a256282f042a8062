package dhcp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

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
