package ra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// allRouters and allNodes are the link-local multicast groups
// solicitations go to and advertisements are sent to.
var (
	allRouters = net.ParseIP("ff02::2")
	allNodes   = net.ParseIP("ff02::1")
)

// Conn is a raw ICMPv6 socket on one interface, in the all-routers group.
type Conn struct {
	c     *net.IPConn
	iface *net.Interface
}

// Listen opens the socket on iface. It needs CAP_NET_RAW.
func Listen(ctx context.Context, iface string) (*Conn, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("quiet-ra: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			f := int(fd)
			// RFC 4861: a receiver drops neighbour discovery whose
			// hop limit is not 255.
			for _, o := range []struct{ opt, v int }{{unix.IPV6_MULTICAST_HOPS, 255}, {unix.IPV6_UNICAST_HOPS, 255}, {unix.IPV6_MULTICAST_IF, ifi.Index}, {unix.IPV6_MULTICAST_LOOP, 0}} {
				if serr = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, o.opt, o.v); serr != nil {
					return
				}
			}
			if serr = unix.BindToDevice(f, iface); serr != nil {
				return
			}
			mreq := &unix.IPv6Mreq{Interface: uint32(ifi.Index)}
			copy(mreq.Multiaddr[:], allRouters.To16())
			serr = unix.SetsockoptIPv6Mreq(f, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if errors.Is(err, syscall.EPERM) {
		return nil, fmt.Errorf("quiet-ra on %s: %w: a raw ICMPv6 socket needs CAP_NET_RAW (under systemd: AmbientCapabilities= and CapabilityBoundingSet= with CAP_NET_RAW, see docs/network.md)", iface, err)
	}
	if err != nil {
		return nil, fmt.Errorf("quiet-ra on %s: %w", iface, err)
	}
	return &Conn{c: pc.(*net.IPConn), iface: ifi}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Serve answers router solicitations on c with Quiet, to all nodes, at
// most once per MinInterval, until ctx ends.
func Serve(ctx context.Context, c *Conn, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(time.Now()) })
	defer stop()
	adv := Quiet(c.iface.HardwareAddr)
	dst := &net.IPAddr{IP: allNodes, Zone: c.iface.Name}
	var last time.Time
	buf := make([]byte, 1500)
	for {
		n, from, err := c.c.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("quiet-ra on %s: %w", c.iface.Name, err)
		}
		if !IsSolicitation(buf[:n]) || time.Since(last) < MinInterval {
			continue
		}
		last = time.Now()
		if _, err := c.c.WriteTo(adv, dst); err != nil {
			log.Warn("quiet router advertisement not sent", "iface", c.iface.Name, "err", err)
			continue
		}
		log.Info("quiet router advertisement", "iface", c.iface.Name, "solicited_by", from.String())
	}
}
