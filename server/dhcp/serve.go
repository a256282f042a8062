package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// maxInFlight bounds the packets handled at once on one socket: a boot
// storm waits in the socket's buffer rather than in goroutines.
const maxInFlight = 64

// maxPacket is the largest datagram read. DHCP messages fit an Ethernet
// frame (RFC 2131 section 2: 576 bytes guaranteed, more by option 57).
const maxPacket = 4096

// handleFunc answers one datagram from peer: the reply and where it goes,
// or nil for no reply.
type handleFunc func(ctx context.Context, b []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr)

// serve reads DHCPv4 datagrams from conn and answers each with h (see
// serveDatagrams).
func serve(ctx context.Context, conn net.PacketConn, log *slog.Logger, h handleFunc) error {
	return serveDatagrams(ctx, conn, log, func(ctx context.Context, b []byte, peer *net.UDPAddr) ([]byte, *net.UDPAddr, []any) {
		reply, dst := h(ctx, b, peer)
		if reply == nil {
			return nil, nil, nil
		}
		return reply.ToBytes(), dst, []any{"type", reply.MessageType(), "mac", reply.ClientHWAddr}
	})
}

// datagramFunc answers one datagram from peer: the reply's bytes, where
// they go and what names the reply in a log record, or nil bytes for no
// reply.
type datagramFunc func(ctx context.Context, b []byte, peer *net.UDPAddr) (reply []byte, dst *net.UDPAddr, attrs []any)

// serveDatagrams reads datagrams from conn and answers each with h, up to
// maxInFlight at once, until ctx ends (it then sets conn's read deadline
// to unblock the read; it does not close conn) or the read fails. It
// returns nil when ctx ended or conn was closed. DHCPv4 and DHCPv6 alike.
func serveDatagrams(ctx context.Context, conn net.PacketConn, log *slog.Logger, h datagramFunc) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	buf := make([]byte, maxPacket)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		peer, ok := addr.(*net.UDPAddr)
		if !ok {
			log.Debug("dhcp ignored a datagram from a non-UDP peer", "peer", addr)
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			reply, dst, attrs := h(ctx, b, peer)
			if reply == nil {
				return
			}
			if _, err := conn.WriteTo(reply, dst); err != nil {
				log.Warn("dhcp send reply failed", append(attrs, "to", dst, "err", err)...)
			}
		})
	}
}

// parsePacket decodes b as a DHCPv4 message, logging at Debug why not.
func parsePacket(log *slog.Logger, b []byte, peer *net.UDPAddr) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.FromBytes(b)
	if err != nil {
		log.Debug("dhcp ignored a malformed packet", "peer", peer, "len", len(b), "err", err)
		return nil
	}
	if p.OpCode != dhcpv4.OpcodeBootRequest {
		log.Debug("dhcp ignored a packet that is not a request", "peer", peer, "op", p.OpCode)
		return nil
	}
	return p
}

func discardIfNil(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
