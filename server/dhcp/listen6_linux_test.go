package dhcp

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// TestListenInterface6: a Server6 on ListenInterface6 in the server
// namespace answers a client in the other one that sends, as firmware
// does, from its link-local address to ff02::1:2: a UEFI HTTP Boot
// client's Solicit gets an Advertise with an address and the URL, its
// Request a Reply with the same address. Addresses from 2001:db8::/32
// only; duplicate address detection is off in both namespaces so the
// link-local addresses are usable at once.
func TestListenInterface6(t *testing.T) {
	l := newLab(t)
	for _, ns := range []string{l.srv, l.cli} {
		if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0").CombinedOutput(); err != nil {
			t.Fatalf("sysctl in %s: %v: %s", ns, err, out)
		}
	}
	srv, cli, mac := l.link(1, "2001:db8::1/64", "")
	sconn := in(t, l.srv, func() (*net.UDPConn, error) { return ListenInterface6(context.Background(), srv, 547) })
	t.Cleanup(func() { sconn.Close() })
	s, err := NewServer6(Config6{Interface: srv, HardwareAddr: srvMAC6, Start: netip.MustParseAddr("2001:db8::100"), End: netip.MustParseAddr("2001:db8::1ff")}, policy6, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, sconn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	ll := &net.UDPAddr{IP: net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}, Port: 546, Zone: cli}
	// The kernel adds the link-local address a moment after the link
	// comes up.
	c := in(t, l.cli, func() (c *net.UDPConn, err error) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c, err = net.ListenUDP("udp6", ll); err == nil {
				break
			}
		}
		return c, err
	})
	t.Cleanup(func() { c.Close() })
	group := &net.UDPAddr{IP: AllDHCPRelayAgentsAndServers, Port: 547, Zone: cli}
	exchange := func(m *dhcpv6.Message) *dhcpv6.Message {
		t.Helper()
		buf := make([]byte, 1500)
		for try := 0; try < 5; try++ {
			if _, err := c.WriteTo(m.ToBytes(), group); err != nil {
				t.Fatalf("send %s: %v", m.Type(), err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				continue
			}
			r, err := dhcpv6.MessageFromBytes(buf[:n])
			if err != nil || r.TransactionID != m.TransactionID {
				t.Fatalf("from %v: %v %v", from, r, err)
			}
			if ip := from.(*net.UDPAddr).IP; !ip.IsLinkLocalUnicast() {
				t.Errorf("reply from %v, want the server's link-local address", ip)
			}
			return r
		}
		t.Fatalf("no answer to %s", m.Type())
		return nil
	}
	duid := &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1, LinkLayerAddr: mac}
	adv := exchange(msg6(dhcpv6.MessageTypeSolicit, duid, 7, bootORO6, vcHTTP6, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP)))
	if adv.Type() != dhcpv6.MessageTypeAdvertise || adv.Options.BootFileURL() != "http://[2001:db8::1]/boot/ipxe.efi" {
		t.Fatalf("advertise: %s", adv.Summary())
	}
	a := adv.Options.OneIANA().Options.OneAddress()
	if a == nil || a.IPv6Addr.String() != "2001:db8::100" {
		t.Fatalf("advertised address: %v", a)
	}
	req := msg6(dhcpv6.MessageTypeRequest, duid, 7, vcHTTP6, withServerID6(adv.Options.ServerID()), withAddr6("2001:db8::100"))
	req.TransactionID[2]++
	rep := exchange(req)
	if rep.Type() != dhcpv6.MessageTypeReply || rep.Options.OneIANA().Options.OneAddress().IPv6Addr.String() != "2001:db8::100" {
		t.Fatalf("reply: %s", rep.Summary())
	}
}
