package initagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nfsMount performs an NFSMount step: the server's address (its name
// resolved by the agent's resolver), the local address the server sees
// (NFSv4.0 callbacks), then mount(2) with the options NFSOptions makes.
func nfsMount(ctx context.Context, s NFSMount) (string, error) {
	server, err := nfsServerAddr(ctx, s.Source.Server)
	if err != nil {
		return "", err
	}
	var client netip.Addr
	if s.Source.NFSVersion() == "4" {
		if client, err = localAddrTo(server); err != nil {
			return "", fmt.Errorf("nfs %s: the local address toward %s: %w", s.Source.URL(), server, err)
		}
	}
	opts := NFSOptions(s.Source, server, client)
	t0 := time.Now()
	if err := doMount(NFSDevice(s.Source), s.Target, "nfs", opts); err != nil {
		hint := "is the export there and readable by this machine's address (the NFS server's log says why it refused), and is NFS version " + s.Source.NFSVersion() + " served"
		switch {
		case errors.Is(err, unix.ETIMEDOUT), errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EHOSTUNREACH):
			hint = "does the NFS server answer on " + server.String() + " (port 2049, or the port option; NFSv3 also asks its rpcbind unless port and mountport are given)"
		case errors.Is(err, unix.EPROTONOSUPPORT):
			hint = "the server does not serve NFS version " + s.Source.NFSVersion() + ": give another (lower-nfs = vers=3)"
		}
		return "", fmt.Errorf("nfs %s: %w: %s?", s.Source.URL(), err, hint)
	}
	return fmt.Sprintf("%s:%s vers %s in %.2fs (not verified: NFS has no digest)", server, s.Source.Export, s.Source.NFSVersion(), time.Since(t0).Seconds()), nil
}

// nfsServerAddr is host's address: host itself when it is an address
// literal, else the first address the resolver gives.
func nfsServerAddr(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(as) == 0 {
		return netip.Addr{}, fmt.Errorf("nfs server %s: no address (%v): does the DHCP server hand out a DNS server that knows it? or give its IP address in the nfs:// URL", host, err)
	}
	return as[0].Unmap(), nil
}

// localAddrTo is the address this machine sends from toward dst, as
// routing chooses it (a connected UDP socket sends nothing).
func localAddrTo(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 2049)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() || strings.Contains(a.String(), "%") {
		return netip.Addr{}, fmt.Errorf("no usable local address (%s)", a)
	}
	return a, nil
}
