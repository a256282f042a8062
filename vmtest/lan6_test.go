package vmtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/dhcp"
)

// addr6 is the bridge's IPv6 address on the LANs of the IPv6 tests
// (2001:db8::/32 is the documentation prefix, ENV.md).
const addr6 = "2001:db8::1"

// dualLAN is a LAN of the test's own with IPv4 and IPv6: a site DHCPv4
// server (dnsmasq on another host, addresses only: the agent asks
// DHCPv4), overboot's HTTP on both addresses ([::]:80) and TFTP on
// 192.0.2.1, overboot's DHCPv6 server (ServeDHCPv6) on the bridge, and
// router advertisements for 2001:db8::/64 with the M flag ("ask DHCPv6
// for an address"), which no package here sends without serving DHCPv6
// too: sendRAs.
func dualLAN(t *testing.T, a *Artifacts) *lan { return lan6(t, a, true) }

// lan6 is dualLAN, or with v4 false a LAN with no DHCPv4 server at all,
// where overboot gives its URLs with url6 only.
func lan6(t *testing.T, a *Artifacts, v4 bool) *lan {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("LAN tests need root for network namespaces (CI runs as root)")
	}
	ns := NewNetNS(t)
	runCmd(t, "ip", "-n", ns.Name, "addr", "add", addr6+"/64", "dev", ns.Bridge, "nodad")
	dir := t.TempDir()
	url := "url = http://192.0.2.1"
	if !v4 {
		url = "url6 = http://[" + addr6 + "]"
	}
	conf := fmt.Sprintf("[server]\ndata = %s\n%s\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		filepath.Join(dir, "data"), url, a.Kernel, a.Initramfs, a.Root)
	cfg, err := config.Parse("lan.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	s, err := server.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if v4 {
		site := ns.Host(t, "192.0.2.2")
		runDnsmasq(t, site, "--dhcp-option=3,192.0.2.1")
	}

	ctx, cancel := context.WithCancel(context.Background())
	httpLn := ns.Listen(t, "[::]:80")
	tftpPC := ns.ListenPacket(t, ns.Addr+":69")
	var c547 net.PacketConn
	var brMAC net.HardwareAddr
	if err := ns.Do(func() (err error) {
		ifi, err := net.InterfaceByName(ns.Bridge)
		if err != nil {
			return err
		}
		brMAC = ifi.HardwareAddr
		c547, err = dhcp.ListenInterface6(ctx, ns.Bridge, 547)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	go func() { s.Serve(ctx, httpLn); done <- struct{}{} }()
	dial := func(l, r *net.UDPAddr) (c *net.UDPConn, err error) {
		err = ns.Do(func() error { c, err = net.DialUDP("udp", l, r); return err })
		return c, err
	}
	go func() { s.ServeTFTP(ctx, tftpPC, dial); done <- struct{}{} }()
	go func() {
		err := s.ServeDHCPv6(ctx, c547, server.DHCPv6Options{Interface: ns.Bridge, URL: "http://[" + addr6 + "]",
			HardwareAddr: brMAC, Start: netip.MustParseAddr("2001:db8::100"), End: netip.MustParseAddr("2001:db8::1ff")})
		if err != nil {
			t.Errorf("dhcpv6: %v", err)
		}
		done <- struct{}{}
	}()
	sendRAs(t, ctx, ns, netip.MustParsePrefix("2001:db8::/64"))
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		c547.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &lan{ns: ns, srv: s, logs: logs}
}

// sendRAs sends router advertisements (RFC 4861 section 4.2) on ns's
// bridge every second until ctx ends: the M flag, the bridge as default
// router, and prefix as on-link (L) without SLAAC (no A flag), so hosts
// take their address from DHCPv6. The kernel fills in the
// ICMPv6 checksum; the hop limit must be 255.
func sendRAs(t *testing.T, ctx context.Context, ns *NetNS, prefix netip.Prefix) {
	t.Helper()
	var c *net.IPConn
	if err := ns.Do(func() (err error) {
		ifi, err := net.InterfaceByName(ns.Bridge)
		if err != nil {
			return err
		}
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); serr != nil {
					return
				}
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		c = pc.(*net.IPConn)
		return nil
	}); err != nil {
		t.Fatalf("router advertisements: %v", err)
	}
	ra := make([]byte, 16, 48)
	ra[0] = 134    // type: router advertisement
	ra[4] = 64     // current hop limit
	ra[5] = 1 << 7 // M: addresses by DHCPv6
	// A default router (the bridge; nothing is forwarded anywhere): OVMF's
	// HTTPv6 boot looks for a route to the server among its routes and
	// waits 10 s for one when the on-link prefix is all there is.
	binary.BigEndian.PutUint16(ra[6:], 1800)
	pi := make([]byte, 32)
	pi[0], pi[1] = 3, 4 // prefix information, 4 units of 8 bytes
	pi[2] = byte(prefix.Bits())
	pi[3] = 1 << 7 // L: on-link
	binary.BigEndian.PutUint32(pi[4:], 3600)
	binary.BigEndian.PutUint32(pi[8:], 3600)
	p := prefix.Masked().Addr().As16()
	copy(pi[16:], p[:])
	ra = append(ra, pi...)
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ns.Bridge}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			// Fails until the bridge has its link-local address (a
			// carrier comes with the first tap): try again.
			c.WriteTo(ra, dst)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-stopped })
}

// ovmfIPv6Only leaves out OVMF's IPv4 stack (so no PXEv4 or HTTPv4 boot
// option): the firmware boots over IPv6 alone, PXEv6 first, then HTTPv6.
var ovmfIPv6Only = []FwCfg{{Name: "opt/org.tianocore/IPv4Support", Value: "n"}}

// TestLANUEFIHTTPv6Boot: OVMF's UEFI HTTP Boot over IPv6. The firmware
// has no IPv4; it asks DHCPv6 as an HTTPClient of arch 16 and overboot's
// DHCPv6 server gives it an address and the URL of ipxe.efi over IPv6
// (option 59), which it downloads from overboot's HTTP and runs. (Its
// PXEv6 option comes first and gets an address but no boot file: this
// server has no TFTP over IPv6; OVMF then moves on to HTTPv6.) iPXE asks
// DHCPv6 (user class iPXE) and DHCPv4 (the site's server: an address, no
// boot file), fetches the script named by DHCPv6 over IPv6, and the rest
// goes over IPv4 as the server's url says: kernel, initramfs, and the
// agent's DHCPv4, document and root.
func TestLANUEFIHTTPv6Boot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := dualLAN(t, a)
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars, 0o644); err != nil {
		t.Fatalf("OVMF (package ovmf): %v", err)
	}
	const mac = "52:54:00:0c:00:06"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac, UEFIVars: vars, NoNICROM: true, FwCfg: ovmfIPv6Only})
	expectPass(t, vm)
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, ">>Start") || strings.Contains(l.Text, "PXE-E") || strings.Contains(l.Text, "Station IP") || strings.Contains(l.Text, "URI:") || strings.Contains(l.Text, "BdsDxe") {
			t.Logf("firmware %s", l)
		}
	}
	for _, want := range []string{">>Start HTTP Boot over IPv6", "URI: http://[2001:db8::1]/boot/ipxe.efi", `"UEFI HTTPv6 (MAC:5254000C0006)"`} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	logs := l.logs.String()
	for _, want := range []string{
		`msg="dhcpv6 answer" type=REPLY to=REQUEST mac=52:54:00:0c:00:06 arch=16 userclass="" iface=br0 ip=2001:db8::`,
		`url=http://[2001:db8::1]/boot/ipxe.efi`,
		`userclass=iPXE iface=br0 ip=2001:db8::`,
		`url=http://[2001:db8::1]/boot.ipxe`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("server log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, `msg="tftp transfer`) {
		t.Errorf("the server saw TFTP during an HTTP Boot")
	}
	bs, err := l.srv.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
}

// TestLANIPXEv6: QEMU's iPXE ROM (BIOS) on the same dual-stack LAN: the
// site's DHCPv4 names no boot file, overboot's DHCPv6 gives iPXE (user
// class iPXE) the script's URL over IPv6, and iPXE boots it.
func TestLANIPXEv6(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := dualLAN(t, a)
	const mac = "52:54:00:0c:00:07"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac})
	expectPass(t, vm)
	logs := l.logs.String()
	if !strings.Contains(logs, `mac=52:54:00:0c:00:07 arch=0 userclass=iPXE iface=br0 ip=2001:db8::`) || !strings.Contains(logs, `url=http://[2001:db8::1]/boot.ipxe`) {
		t.Errorf("no DHCPv6 answer to iPXE with the script URL:\n%s", logs)
	}
	bs, err := l.srv.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
}

// TestLANIPv6Only: a LAN with no DHCPv4 at all. iPXE gets the script's
// URL by DHCPv6; the script names the kernel, the initramfs and the boot
// document by url6; the agent sees an IPv6 server in its command line,
// asks DHCPv6 for its own address (routes from the router
// advertisements) and boots the root over IPv6.
func TestLANIPv6Only(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := lan6(t, a, false)
	const mac = "52:54:00:0c:00:09"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac})
	if _, err := vm.Expect("/128 by DHCPv6", bootTimeout); err != nil {
		t.Fatalf("the agent did not configure IPv6 by DHCPv6: %v", err)
	}
	expectPass(t, vm)
	bs, err := l.srv.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
	if !strings.HasPrefix(bs[0].Address, "2001:db8::") {
		t.Errorf("the agent reported from %s, want its DHCPv6 address", bs[0].Address)
	}
}
