package initagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// raWait is how long the agent waits for a router advertisement to give
// it a route to the server after DHCPv6, which names no routes.
const raWait = 2 * time.Second

// dhcp6 asks for an address with DHCPv6 (Solicit with Rapid Commit, or
// Solicit, Advertise, Request) on link and configures it. DHCPv6 gives an
// address (a /128: no prefix is on-link by DHCPv6, RFC 5942) and DNS, not
// routes: those come from router advertisements, which the kernel applies
// by itself. When none gives a route to the server within raWait, the
// server is taken to be on-link (it answered on this link, or iPXE reached
// it here) and a host route to it is added, which the note says.
func dhcp6(ctx context.Context, link netlink.Link, s Network) (string, error) {
	name := link.Attrs().Name
	// The client sends from the link-local address, which cannot be bound
	// while duplicate address detection still runs (about a second)
	// unless it is optimistic.
	if err := waitUsable(ctx, link, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() }, s.LinkTimeout); err != nil {
		return "", fmt.Errorf("no IPv6 link-local address (is IPv6 disabled?): %w", err)
	}
	client, err := nclient6.New(name, nclient6.WithTimeout(s.DHCPTimeout), nclient6.WithRetry(s.Attempts))
	if err != nil {
		return "", fmt.Errorf("dhcpv6 on %s: %w", name, err)
	}
	defer client.Close()
	reply, err := client.RapidSolicit(ctx)
	if err != nil {
		return "", fmt.Errorf("no DHCPv6 lease on %s after %d attempts of %v (%v): does a DHCPv6 server answer on this network?", name, s.Attempts, s.DHCPTimeout, err)
	}
	if err := dhclient.Configure6(link, reply); err != nil {
		return "", fmt.Errorf("configure %s with the DHCPv6 lease: %w", name, err)
	}
	var addr net.IP
	if iana := reply.Options.OneIANA(); iana != nil {
		if a := iana.Options.OneAddress(); a != nil {
			addr = a.IPv6Addr
		}
	}
	// Until duplicate address detection ends the address is tentative
	// and, unless it is optimistic, the kernel sends from the link-local
	// one: the server would see another address than the one it leased.
	if err := waitUsable(ctx, link, func(a netlink.Addr) bool { return a.IP.Equal(addr) }, s.LinkTimeout); err != nil {
		return "", fmt.Errorf("address %s from DHCPv6: %w", addr, err)
	}
	note := fmt.Sprintf("%s %s %s/128 by DHCPv6", name, link.Attrs().HardwareAddr, addr)
	if !s.Server.IsValid() {
		return note, nil
	}
	server := net.IP(s.Server.AsSlice())
	deadline := time.Now().Add(raWait)
	for {
		if routes, err := netlink.RouteGet(server); err == nil && len(routes) > 0 {
			return note + fmt.Sprintf(", route to %s via %s", s.Server, routeVia(routes[0])), nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: server, Mask: net.CIDRMask(128, 128)}, Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return "", fmt.Errorf("no router advertisement gave a route to %s, and adding one on-link failed: %w", s.Server, err)
	}
	return note + fmt.Sprintf(", no router advertisement in %v: %s taken as on-link", raWait, s.Server), nil
}

func routeVia(r netlink.Route) string {
	if r.Gw != nil {
		return r.Gw.String()
	}
	return "the link"
}

// optimisticDADSysctls make addresses usable while duplicate address
// detection runs (RFC 4429: optimistic addresses, and using them as
// source), for every interface.
var optimisticDADSysctls = []string{
	"/proc/sys/net/ipv6/conf/all/optimistic_dad",
	"/proc/sys/net/ipv6/conf/all/use_optimistic",
}

// optimisticDAD turns optimistic DAD on while the agent gets its address:
// DAD takes about a second for the link-local address and again for the
// leased one, which the agent would otherwise wait out before each use
// (the server answered for the leased one: a duplicate is unlikely, and
// DAD still runs and reports one). It returns what puts the settings back
// as they were, for the booted system: not before the agent is done with
// the network, since without use_optimistic an address still in DAD is no
// source address, and the agent's next connection would fail.
func optimisticDAD() (restore func()) {
	old := make([][]byte, len(optimisticDADSysctls))
	for i, f := range optimisticDADSysctls {
		if b, err := os.ReadFile(f); err == nil {
			old[i] = b
			_ = os.WriteFile(f, []byte("1\n"), 0)
		}
	}
	return func() {
		for i, f := range optimisticDADSysctls {
			if old[i] != nil {
				_ = os.WriteFile(f, old[i], 0)
			}
		}
	}
}

// waitUsable waits until link has an IPv6 address that match accepts and
// that is usable: duplicate address detection has finished with it, or it
// is optimistic (optimisticDAD).
func waitUsable(ctx context.Context, link netlink.Link, match func(netlink.Addr) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
		}
		for _, a := range addrs {
			if !match(a) {
				continue
			}
			if a.Flags&unix.IFA_F_DADFAILED != 0 {
				return errors.New("duplicate address detection failed: another host on " + link.Attrs().Name + " has it")
			}
			if a.Flags&unix.IFA_F_TENTATIVE == 0 || a.Flags&unix.IFA_F_OPTIMISTIC != 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not usable on %s after %v", link.Attrs().Name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
