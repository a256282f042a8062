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

// Serving a storm.
//
// One goroutine reads the socket as fast as datagrams come, so that the
// kernel's buffer stays near empty, into a queue of at most maxQueue
// (when full, the oldest request is dropped for the new one), that
// handlers workers take from; a request that waited more than maxAge is
// dropped unanswered: its client, whose DISCOVER times out in a few
// seconds (RFC 2131 section 4.1: 4 s at first), has sent it again or
// given up, and answering it would hand out an address no one takes.
// Drops are counted (QueueStats) and logged at Debug.
const (
	maxQueue = 4096
	maxAge   = time.Second
	workers  = 8
)

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

// serveDatagrams reads datagrams from conn and answers each with h (see
// serveQueued), until ctx ends (it then sets conn's read deadline to
// unblock the read; it does not close conn) or the read fails. It
// returns nil when ctx ended or conn was closed. DHCPv4 and DHCPv6 alike.
func serveDatagrams(ctx context.Context, conn net.PacketConn, log *slog.Logger, h datagramFunc) error {
	var stats QueueStats
	return serveQueued(ctx, conn, log, &stats, func(ctx context.Context, b []byte, peer *net.UDPAddr, send sendFunc) {
		if reply, dst, attrs := h(ctx, b, peer); reply != nil {
			send(reply, dst, attrs)
		}
	})
}

// sendFunc sends a reply to dst; attrs name it in a log record of a
// failed send.
type sendFunc func(reply []byte, dst *net.UDPAddr, attrs []any)

// asyncFunc answers one datagram from peer by calling send, now or later
// from another goroutine, or never.
type asyncFunc func(ctx context.Context, b []byte, peer *net.UDPAddr, send sendFunc)

// serveQueued reads datagrams from conn into a packetQueue and answers
// them with h in workers goroutines, until ctx ends or the read fails;
// drops are counted in stats. It returns once the workers are done.
func serveQueued(ctx context.Context, conn net.PacketConn, log *slog.Logger, stats *QueueStats, h asyncFunc) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	q := newPacketQueue(maxQueue, maxAge)
	send := func(reply []byte, dst *net.UDPAddr, attrs []any) {
		if _, err := conn.WriteTo(reply, dst); err != nil {
			log.Warn("dhcp send reply failed", append(attrs, "to", dst, "err", err)...)
		}
	}
	dropped := func(p packet, why string) {
		if why == dropFull {
			stats.Full.Add(1)
		} else {
			stats.Stale.Add(1)
		}
		log.Debug("dhcp dropped a request unanswered", "why", why, "peer", p.peer, "waited", time.Since(p.at))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer q.close()
	for range workers {
		wg.Go(func() {
			for {
				p, ok := q.pop(time.Now, dropped)
				if !ok {
					return
				}
				h(ctx, p.b, p.peer, send)
			}
		})
	}
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
		q.push(packet{b: append([]byte(nil), buf[:n]...), peer: peer, at: time.Now()}, dropped)
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
