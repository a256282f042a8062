package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/state"
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
// network: addresses from o's pool to any client, leases kept in the
// state store across restarts (one per DUID and IAID), and the boot
// answers of ProxyDHCP over IPv6 (RFC 5970 option 59): iPXE gets
// URL/boot.ipxe, a UEFI HTTP Boot client URL/boot/ipxe.efi, a UEFI PXE
// client tftp://[ServerIP]/ipxe.efi. conn is the interface's port 547
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
		Start: o.Start, End: o.End, LeaseTime: o.LeaseTime, DNS: o.DNS, Leases: leaseStore6{s}}, b, s.log)
	if err != nil {
		return fmt.Errorf("dhcpv6: %w", err)
	}
	return srv.Serve(ctx, conn)
}

// leaseStore6 keeps the DHCPv6 server's leases in the state store.
type leaseStore6 struct{ s *Server }

func (l leaseStore6) Get(duid []byte, iaid uint32) (dhcp.Lease6, bool, error) {
	sl, ok, err := l.s.db.Lease6(context.Background(), hex.EncodeToString(duid), iaid)
	if !ok || err != nil {
		return dhcp.Lease6{}, ok, err
	}
	d, err := toLease6(sl)
	return d, err == nil, err
}

func (l leaseStore6) Put(d dhcp.Lease6) error {
	sl := state.Lease6{DUID: hex.EncodeToString(d.DUID), IAID: d.IAID, IP: d.IP.String(), Expires: d.Expires}
	if len(d.MAC) > 0 {
		sl.MAC = d.MAC.String()
	}
	return l.s.db.PutLease6(context.Background(), sl)
}

func (l leaseStore6) Delete(duid []byte, iaid uint32) error {
	return l.s.db.DeleteLease6(context.Background(), hex.EncodeToString(duid), iaid)
}

func (l leaseStore6) All() ([]dhcp.Lease6, error) {
	sls, err := l.s.db.Leases6(context.Background())
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease6, 0, len(sls))
	for _, sl := range sls {
		d, err := toLease6(sl)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func toLease6(sl state.Lease6) (dhcp.Lease6, error) {
	duid, err := hex.DecodeString(sl.DUID)
	if err != nil {
		return dhcp.Lease6{}, fmt.Errorf("lease DUID %q: %w", sl.DUID, err)
	}
	ip, err := netip.ParseAddr(sl.IP)
	if err != nil {
		return dhcp.Lease6{}, err
	}
	d := dhcp.Lease6{DUID: duid, IAID: sl.IAID, IP: ip, Expires: sl.Expires}
	if sl.MAC != "" {
		if d.MAC, err = net.ParseMAC(sl.MAC); err != nil {
			return dhcp.Lease6{}, err
		}
	}
	return d, nil
}
