package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/overboot/overboot/server/dhcp"
)

// DHCPv6Options set overboot's DHCPv6 server on one interface. The
// config keys they stand for (not in config yet): [server] dhcpv6 =
// IFACE, dhcpv6-range = START-END (one /64), dhcpv6-lease, dhcpv6-dns,
// and url6, the base URL over IPv6 (http://[2001:db8::1]).
type DHCPv6Options struct {
	Interface string
	// URL is the server's base URL as IPv6 clients reach it, e.g.
	// "http://[2001:db8::1]"; "" means url of [server].
	URL string
	// ServerIP is the interface's global IPv6 address, the TFTP server
	// of UEFI PXEv6 clients (tftp://[ServerIP]/ipxe.efi; run ServeTFTP on
	// [ServerIP]:69 too). The zero Addr means no TFTP over IPv6: such
	// clients get an address and no boot file, and the firmware moves on
	// to its next boot option (OVMF: HTTPv6). HardwareAddr is the
	// interface's MAC, the server's DUID.
	ServerIP     netip.Addr
	HardwareAddr net.HardwareAddr
	Start, End   netip.Addr
	LeaseTime    time.Duration // 0: one hour
	DNS          []netip.Addr
}

// ServeDHCPv6 is overboot's DHCPv6 server (dhcp.Server6) for an isolated
// network: addresses from o's pool to any client, leases in memory only,
// and the boot answers of ProxyDHCP over IPv6 (RFC 5970 option 59): iPXE
// gets URL/boot.ipxe, a UEFI HTTP Boot client URL/boot/ipxe.efi, a UEFI
// PXE client tftp://[ServerIP]/ipxe.efi. conn is the interface's port 547
// (dhcp.ListenInterface6). The network's router advertisements (the M
// flag, the /64 on-link) are someone else's: radvd, dnsmasq, a router.
func (s *Server) ServeDHCPv6(ctx context.Context, conn net.PacketConn, o DHCPv6Options) error {
	base := o.URL
	if base == "" {
		base = s.cfg.Load().URL
	}
	if base == "" {
		return errors.New("dhcpv6 needs url6 (or url) in [server]")
	}
	base = strings.TrimSuffix(base, "/")
	policy := dhcp.Policy{ScriptURL: base + "/boot.ipxe", HTTPBootURL: base + "/boot/ipxe.efi"}
	var b dhcp.Booter = policy
	if !o.ServerIP.IsValid() {
		b = dhcp.BooterFunc(func(ctx context.Context, r dhcp.Request) (dhcp.Answer, error) {
			if a, err := policy.Boot(ctx, r); err != nil || a.File == "" {
				return a, err
			}
			return dhcp.Answer{}, nil
		})
	}
	srv, err := dhcp.NewServer6(dhcp.Config6{Interface: o.Interface, ServerIP: o.ServerIP, HardwareAddr: o.HardwareAddr,
		Start: o.Start, End: o.End, LeaseTime: o.LeaseTime, DNS: o.DNS}, b, s.log)
	if err != nil {
		return fmt.Errorf("dhcpv6: %w", err)
	}
	return srv.Serve(ctx, conn)
}
