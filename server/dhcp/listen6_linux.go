package dhcp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// AllDHCPRelayAgentsAndServers is the link-scoped multicast group DHCPv6
// clients send to (RFC 8415 section 7.1).
var AllDHCPRelayAgentsAndServers = net.ParseIP("ff02::1:2")

// ListenInterface6 opens a UDP socket on [::]:port that only sees
// ifname's packets (SO_BINDTODEVICE) and has joined the
// All_DHCP_Relay_Agents_and_Servers group on it, for Server6.Serve (port
// 547). Replies go back to the client's link-local address by ifname.
// Port 547 needs CAP_NET_BIND_SERVICE, and SO_BINDTODEVICE may need
// CAP_NET_RAW. The interface needs a link-local address: the kernel
// sends from it.
func ListenInterface6(ctx context.Context, ifname string, port int) (*net.UDPConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("dhcpv6: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return control(c, func(s int) error {
			if err := interfaceSocket(s, ifname); err != nil {
				return err
			}
			mreq := &unix.IPv6Mreq{Interface: uint32(ifi.Index)}
			copy(mreq.Multiaddr[:], AllDHCPRelayAgentsAndServers)
			if err := unix.SetsockoptIPv6Mreq(s, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
				return fmt.Errorf("join %s on %s: %w", AllDHCPRelayAgentsAndServers, ifname, err)
			}
			return nil
		})
	}}
	pc, err := lc.ListenPacket(ctx, "udp6", net.JoinHostPort("::", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("dhcpv6: listen on %s port %d: %w", ifname, port, err)
	}
	return pc.(*net.UDPConn), nil
}
