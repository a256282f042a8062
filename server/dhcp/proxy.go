package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Proxy is a ProxyDHCP server for one interface (PXE 2.1 section 2.2.3):
// it hands out no addresses, and answers network boot clients with what
// Booter says they download. The site's DHCP server gives the addresses.
type Proxy struct {
	// ServerIP is this host's IPv4 address on Interface: option 54, and
	// the TFTP server when an Answer names none.
	ServerIP netip.Addr
	// Interface names the interface the sockets are bound to, for
	// Request.Interface and the log.
	Interface string
	Booter    Booter
	Log       *slog.Logger // nil: no log
}

// Serve answers DHCPDISCOVERs from netboot clients on conn, the DHCP
// server port 67 of Interface (see ListenInterface), with ProxyDHCP
// offers; it ignores every other packet, the DHCPREQUESTs to the site's
// DHCP server included. It returns nil when ctx ends (conn's read
// deadline is then in the past) or conn is closed; it never closes conn.
func (p *Proxy) Serve(ctx context.Context, conn net.PacketConn) error {
	if err := p.check(); err != nil {
		return err
	}
	log := discardIfNil(p.Log)
	return serve(ctx, conn, log, func(ctx context.Context, b []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
		return p.handle(ctx, log, b, peer, dhcpv4.MessageTypeDiscover)
	})
}

// ServeBootServer answers DHCPREQUESTs on conn, the PXE boot server port
// 4011 (PXE 2.1 section 2.2.6), with a DHCPACK carrying the same answer as
// the offer. Firmware asks there when the offer had no option 43 (EDK2's
// "BINL" offer), some UEFI firmware asks there anyway (pixiecore answers
// every UEFI client that way), and iPXE sends its ProxyDHCPREQUEST there.
// Run it beside Serve, or beside Full's Serve: it gives no addresses
// either. It returns as Serve does.
func (p *Proxy) ServeBootServer(ctx context.Context, conn net.PacketConn) error {
	if err := p.check(); err != nil {
		return err
	}
	log := discardIfNil(p.Log)
	return serve(ctx, conn, log, func(ctx context.Context, b []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
		return p.handle(ctx, log, b, peer, dhcpv4.MessageTypeRequest)
	})
}

func (p *Proxy) check() error {
	if !p.ServerIP.Is4() {
		return fmt.Errorf("proxydhcp: server address %v is not IPv4", p.ServerIP)
	}
	if p.Booter == nil {
		return errors.New("proxydhcp: no Booter")
	}
	return nil
}

// handle answers one datagram b from peer when it is a netboot client's
// message of type want.
func (p *Proxy) handle(ctx context.Context, log *slog.Logger, b []byte, peer *net.UDPAddr, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	req := parsePacket(log, b, peer)
	if req == nil {
		return nil, nil
	}
	if mt := req.MessageType(); mt != want {
		log.Debug("proxydhcp ignored a message", "type", mt, "mac", req.ClientHWAddr.String(), "iface", p.Interface)
		return nil, nil
	}
	r, err := parseRequest(req, p.Interface)
	if err != nil {
		log.Debug("proxydhcp ignored a client", "mac", req.ClientHWAddr.String(), "iface", p.Interface, "err", err)
		return nil, nil
	}
	if want == dhcpv4.MessageTypeRequest {
		// A boot server request names the server it is for (iPXE does);
		// one naming another is not ours.
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(p.ServerIP.AsSlice()) {
			log.Debug("proxydhcp ignored a request for another server", "mac", r.MAC.String(), "server", sid)
			return nil, nil
		}
	}
	a, err := p.Booter.Boot(ctx, r)
	if err != nil {
		log.Warn("proxydhcp booter failed, not answering", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return nil, nil
	}
	if a.IsZero() {
		log.Debug("proxydhcp not ours to boot", "mac", r.MAC.String(), "arch", r.Arch, "userclass", r.UserClass)
		return nil, nil
	}
	reply, err := proxyReply(req, r, a, p.ServerIP)
	if err != nil {
		lvl := slog.LevelWarn
		if errors.Is(err, ErrNotNetboot) {
			lvl = slog.LevelDebug
		}
		log.Log(ctx, lvl, "proxydhcp not answering", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return nil, nil
	}
	log.Info("proxydhcp answer", "type", reply.MessageType(), "mac", r.MAC.String(), "arch", r.Arch, "userclass", r.UserClass, "iface", p.Interface, "file", a.File, "url", a.URL)
	return reply, replyAddr(req, reply, peer)
}
