package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
)

// ServeProxyDHCP answers PXE clients on the configured interface with
// ProxyDHCP (it hands out no addresses: the site's DHCP server does): a
// BIOS PXE ROM gets undionly.kpxe and a UEFI one ipxe.efi over this
// server's TFTP (the signed shimx64.efi for a secure-boot profile), iPXE (by its user class) /boot.ipxe, a UEFI HTTP Boot
// client the EFI iPXE over HTTP (/boot/ipxe.efi). conn is port 67 of the
// interface, boot its port 4011 (the PXE boot server some firmware asks),
// both opened by the caller (dhcp.ListenInterface); ip is the
// interface's address.
func (s *Server) ServeProxyDHCP(ctx context.Context, conn, boot net.PacketConn, ip netip.Addr) error {
	cfg := s.cfg.Load()
	if cfg.URL == "" {
		return errors.New("proxy-dhcp needs url in [server]")
	}
	p := &dhcp.Proxy{ServerIP: ip, Interface: cfg.ProxyDHCP, Log: s.log,
		Booter: s.policy(cfg)}
	errc := make(chan error, 2)
	go func() { errc <- p.Serve(ctx, conn) }()
	go func() { errc <- p.ServeBootServer(ctx, boot) }()
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// policy is what ProxyDHCP and DHCP hand firmware (dhcp.Policy): iPXE,
// or the signed shim to the x86-64 UEFI machines of secure-boot
// profiles.
func (s *Server) policy(cfg *config.Config) dhcp.Policy {
	p := dhcp.Policy{ScriptURL: cfg.URL + "/boot.ipxe", HTTPBootURL: cfg.URL + "/boot/ipxe.efi"}
	if cfg.SecureBoot() {
		p.ShimFile, p.ShimURL = ShimFile, cfg.URL+"/boot/"+ShimFile
		p.SecureBoot = s.secureBoot
	}
	return p
}

// secureBoot reports whether r's machine boots the signed chain: its
// profile, chosen as for its script from what DHCP knows (the MAC, the
// firmware: x86-64 UEFI; no address yet, so no [subnet] rule; no UUID,
// which option 97 orders otherwise than iPXE's ${uuid}), says
// secure-boot. The profiles in force now decide, after a reload too.
func (s *Server) secureBoot(r dhcp.Request) bool {
	p, _, _, err := s.sets.Load().Select(profiles.Who{MAC: r.MAC, Arch: "x86_64", Platform: "efi"})
	return err == nil && p.SecureBoot
}

// InterfaceAddr is an interface's first IPv4 address.
func InterfaceAddr(name string) (netip.Addr, error) {
	p, err := InterfacePrefix(name)
	return p.Addr(), err
}

// bootFile serves the iPXE binaries over HTTP (/boot/FILE), for UEFI HTTP
// Boot clients: the files TFTP serves, confined to that directory.
func (s *Server) bootFile(w http.ResponseWriter, r *http.Request) {
	root, err := os.OpenRoot(filepath.Join(s.cfg.Load().Data, TFTPDir))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.Open(r.PathValue("file"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if refuseRanges(w, r, fi.Size(), "", fi.ModTime()) {
		return
	}
	w.Header().Set("Content-Type", "application/efi")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// DHCPLeases keeps the DHCP server's leases (dhcp.Leases) in the state
// store: how ServeDHCP backs its dhcp.Full (see dhcp.StateLeases).
func DHCPLeases(db *state.DB) dhcp.Leases { return dhcp.StateLeases(db) }

// ServeDHCP is overboot's own DHCP server, for isolated networks: it gives
// addresses from dhcp-range on the configured interface (leases kept in
// the state store across restarts, [machine] ip reservations) with the
// same boot answers as ProxyDHCP. conn is the interface's port 67; ip and
// subnet are the interface's address and prefix.
func (s *Server) ServeDHCP(ctx context.Context, conn net.PacketConn, ip netip.Addr, subnet netip.Prefix) error {
	cfg := s.cfg.Load()
	var res []dhcp.Reservation
	for _, m := range cfg.Machines {
		if m.IP.IsValid() {
			res = append(res, dhcp.Reservation{MAC: m.MAC, IP: m.IP})
		}
	}
	full, err := dhcp.NewFull(dhcp.FullConfig{Interface: cfg.DHCP, ServerIP: ip, Subnet: subnet.Masked(), Start: cfg.DHCPStart, End: cfg.DHCPEnd,
		Router: cfg.DHCPRouter, DNS: cfg.DHCPDNS, LeaseTime: cfg.DHCPLease, Reservations: res},
		DHCPLeases(s.db), s.policy(cfg), s.log)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	s.dhcp.Store(full.Stats())
	return full.Serve(ctx, conn)
}

// InterfacePrefix is an interface's first IPv4 address with its prefix.
func InterfacePrefix(name string) (netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Prefix{}, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New(name + ": no IPv4 address")
}
