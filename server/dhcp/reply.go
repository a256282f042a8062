package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ProxyReply builds a ProxyDHCP reply (PXE 2.1 section 2.2): to a
// DISCOVER a DHCPOFFER, to a REQUEST (the PXE boot server request on port
// 4011) a DHCPACK, both without an address (yiaddr 0.0.0.0) and with:
//   - option 54, server identifier: serverIP;
//   - option 60, "PXEClient", or "HTTPClient" to a UEFI HTTP Boot client;
//   - option 97, the client machine identifier, when the client sent it;
//   - option 43 with PXE_DISCOVERY_CONTROL bit 3 (to PXEClients only);
//   - siaddr and option 66, the TFTP server, and the file field and
//     option 67, the boot file; or, for a URL, file and option 67 the URL
//     (only option 67 when it is longer than the file field's 127 bytes).
//
// It fails with ErrNotNetboot when req is not a netboot client's DISCOVER
// or REQUEST, and with other errors when an option PXE needs is malformed
// (option 93 or 97) or when a does not suit the client (a URL to a PXE
// ROM, a TFTP file to a UEFI HTTP Boot client, both or neither). It is
// pure: no I/O, no clock, no randomness.
func ProxyReply(req *dhcpv4.DHCPv4, a Answer, serverIP netip.Addr) (*dhcpv4.DHCPv4, error) {
	r, err := parseRequest(req, "")
	if err != nil {
		return nil, err
	}
	return proxyReply(req, r, a, serverIP)
}

func proxyReply(req *dhcpv4.DHCPv4, r Request, a Answer, serverIP netip.Addr) (*dhcpv4.DHCPv4, error) {
	var typ dhcpv4.MessageType
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("message type %s: %w", mt, ErrNotNetboot)
	}
	if !serverIP.Is4() {
		return nil, fmt.Errorf("server address %v is not IPv4", serverIP)
	}
	if err := a.check(r); err != nil {
		return nil, err
	}
	p := newReply(req, typ, serverIP)
	if typ == dhcpv4.MessageTypeOffer {
		// The client has no address from us and maybe none yet at all:
		// a relay must broadcast the offer on the client's link (RFC 2131
		// section 4.1). pixiecore sets the flag too.
		p.SetBroadcast()
	} else {
		// The boot server ACK goes back to the address the client asked
		// from (PXE 2.1 section 2.2.6).
		p.ClientIPAddr = slices.Clone(req.ClientIPAddr)
	}
	applyBoot(p, req, r, a, serverIP)
	return p, nil
}

// newReply is a reply of type typ to req from serverIP with the fields
// every reply carries (RFC 2131 section 4.3.1 table 3): xid, flags,
// chaddr, giaddr, option 54; and options the client or relay sent that a
// server echoes: 61 (RFC 6842) and 82 (RFC 3046 section 2.2, last).
func newReply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, serverIP netip.Addr) *dhcpv4.DHCPv4 {
	p := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: ip4(req.GatewayIPAddr),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       dhcpv4.Options{},
	}
	p.UpdateOption(dhcpv4.OptMessageType(typ))
	p.UpdateOption(dhcpv4.OptServerIdentifier(serverIP.AsSlice()))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionClientIdentifier, dhcpv4.OptionRelayAgentInformation} {
		if v := req.Options.Get(code); v != nil {
			p.UpdateOption(dhcpv4.OptGeneric(code, slices.Clone(v)))
		}
	}
	return p
}

// applyBoot adds the PXE answer to a reply p to req (see ProxyReply);
// a has been checked against r.
func applyBoot(p, req *dhcpv4.DHCPv4, r Request, a Answer, serverIP netip.Addr) {
	if r.IsHTTPClient() {
		p.UpdateOption(dhcpv4.OptClassIdentifier(ClassHTTP))
	} else {
		// PXE 2.1 section 2.2.3: the server's reply names itself a
		// PXEClient too, and option 43 tells the client to skip boot
		// server discovery and download the file named here.
		p.UpdateOption(dhcpv4.OptClassIdentifier(ClassPXE))
		p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, slices.Clone(pxeVendorOptions)))
	}
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, slices.Clone(v)))
	}
	if a.URL != "" {
		// Firmware may retry boot server discovery on port 4011 when
		// siaddr is empty (smee's notes); our own address is harmless.
		p.ServerIPAddr = serverIP.AsSlice()
		setBootFile(p, a.URL)
		return
	}
	tftp := a.TFTPServer
	if !tftp.IsValid() {
		tftp = serverIP
	}
	p.ServerIPAddr = tftp.AsSlice()
	p.UpdateOption(dhcpv4.OptTFTPServerName(tftp.String()))
	if r.IsIPXE() {
		// iPXE takes the file as a URL; naming the protocol and the
		// server in it leaves nothing to siaddr (pixiecore and smee do
		// the same for iPXE ROMs).
		setBootFile(p, "tftp://"+tftp.String()+"/"+a.File)
		return
	}
	setBootFile(p, a.File)
}

// setBootFile puts name in option 67 and, when it fits, the file field;
// a longer URL goes in option 67 alone (which iPXE and EDK2 prefer), not
// cut short in the file field.
func setBootFile(p *dhcpv4.DHCPv4, name string) {
	p.UpdateOption(dhcpv4.OptBootFileName(name))
	if len(name) <= bootFileMax {
		p.BootFileName = name
	}
}

// replyAddr is where a Proxy's reply to req, received from peer, goes
// (RFC 2131 section 4.1; Full uses fullReplyAddr): to the relay's server port when giaddr is set; broadcast
// to the client port when the client has no address yet (peer 0.0.0.0)
// or for a DHCPNAK; otherwise back to peer. A server MAY broadcast where
// RFC 2131 asks for a unicast to yiaddr, which needs an ARP entry made by
// hand: this package always broadcasts then.
func replyAddr(req, reply *dhcpv4.DHCPv4, peer *net.UDPAddr) *net.UDPAddr {
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	port := peer.Port
	if port == 0 {
		port = dhcpv4.ClientPort
	}
	if peer.IP == nil || peer.IP.IsUnspecified() || reply.MessageType() == dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: net.IPv4bcast, Port: port}
	}
	return peer
}

// fullReplyAddr is where Full sends reply to req, by RFC 2131 section
// 4.1 and never by the datagram's source address (anyone on the link may
// forge that to receive the offers meant for another client):
//   - giaddr set: the relay's server port, giaddr:67 (a DHCPNAK too,
//     with the broadcast flag set for the relay, see Full.nak);
//   - else a DHCPNAK: broadcast, 255.255.255.255:68;
//   - else ciaddr set (RENEWING, REBINDING, INFORM): ciaddr:68;
//   - else broadcast, 255.255.255.255:68, whether or not the client set
//     the broadcast flag: RFC 2131 allows the server a broadcast where it
//     asks for a unicast to yiaddr, which needs an ARP entry made by hand.
//
// It is pure.
func fullReplyAddr(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: slices.Clone(gi), Port: dhcpv4.ServerPort}
	}
	if reply.MessageType() != dhcpv4.MessageTypeNak {
		if ci := req.ClientIPAddr.To4(); ci != nil && !ci.IsUnspecified() {
			return &net.UDPAddr{IP: slices.Clone(ci), Port: dhcpv4.ClientPort}
		}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// ip4 returns ip as 4 bytes, 0.0.0.0 when it is not IPv4.
func ip4(ip net.IP) net.IP {
	if v := ip.To4(); v != nil {
		return slices.Clone(v)
	}
	return net.IPv4zero
}
