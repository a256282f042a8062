package dhcp

import (
	"context"
	"fmt"
	"github.com/overboot/overboot/internal/netnsrun"
	"github.com/overboot/overboot/internal/testneed"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

// These tests need root: they make two network namespaces joined by veth
// pairs, addresses from 192.0.2.0/24 (TEST-NET-1) only, and delete them
// when done. The server side's sockets are ListenInterface's; the client
// side is insomniacslk/dhcp's nclient4, which sends from 0.0.0.0 through
// a packet socket as firmware does.

func needRoot(t *testing.T) {
	t.Helper()
	testneed.Root(t, "network namespaces, veth pairs, port 67")
	testneed.Tool(t, "ip")
}

// lab is a server namespace and a client namespace joined by veth pairs
// srvN (server side) and cliN (client side, MAC 52:54:00:00:01:0N).
type lab struct {
	t        *testing.T
	srv, cli string // namespace names
}

func newLab(t *testing.T) *lab {
	t.Helper()
	needRoot(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	l := &lab{t: t, srv: "obdhcp-srv-" + id, cli: "obdhcp-cli-" + id}
	for _, ns := range []string{l.srv, l.cli} {
		l.ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// link makes the veth pair srvN/cliN, the server end with address srvAddr
// (a prefix) and the client end with cliAddr, or none when "". Both ends
// are made inside their namespaces: the host's namespace never sees them.
func (l *lab) link(n int, srvAddr, cliAddr string) (srv, cli string, mac net.HardwareAddr) {
	l.t.Helper()
	srv, cli = fmt.Sprintf("srv%d", n), fmt.Sprintf("cli%d", n)
	mac = net.HardwareAddr{0x52, 0x54, 0, 0, 1, byte(n)}
	l.ip("link", "add", srv, "netns", l.srv, "type", "veth", "peer", "name", cli, "netns", l.cli)
	l.ip("-n", l.cli, "link", "set", cli, "address", mac.String())
	l.ip("-n", l.srv, "addr", "add", srvAddr, "dev", srv)
	if cliAddr != "" {
		l.ip("-n", l.cli, "addr", "add", cliAddr, "dev", cli)
	}
	l.ip("-n", l.srv, "link", "set", srv, "up")
	l.ip("-n", l.cli, "link", "set", cli, "up")
	return srv, cli, mac
}

// in runs fn inside namespace ns, failing the test on an error.
func in[T any](t *testing.T, ns string, fn func() (T, error)) T {
	t.Helper()
	v, err := netnsrun.Do(ns, fn)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// listen opens ListenInterface(ifname, port) in the server namespace.
func (l *lab) listen(ifname string, port int) *net.UDPConn {
	l.t.Helper()
	c := in(l.t, l.srv, func() (*net.UDPConn, error) { return ListenInterface(context.Background(), ifname, port) })
	l.t.Cleanup(func() { c.Close() })
	return c
}

// client is a DHCP client on ifname in the client namespace.
func (l *lab) client(ifname string) *nclient4.Client {
	l.t.Helper()
	c := in(l.t, l.cli, func() (*nclient4.Client, error) {
		return nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	})
	l.t.Cleanup(func() { c.Close() })
	return c
}

func pxeMods(vc string, arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID),
	}
}

// TestProxyOnInterfaces runs two Proxies on port 67 of two interfaces,
// each with its own boot file: a PXE client on either link gets an offer
// broadcast on its own link from the Proxy of that link alone. Then a
// boot server request to port 4011 gets its ACK by unicast.
func TestProxyOnInterfaces(t *testing.T) {
	l := newLab(t)
	srv0, cli0, mac0 := l.link(0, "192.0.2.1/25", "192.0.2.50/25")
	srv1, cli1, mac1 := l.link(1, "192.0.2.129/25", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	proxies := []*Proxy{
		{ServerIP: netip.MustParseAddr("192.0.2.1"), Interface: srv0, Booter: Policy{BIOSFile: "link0.kpxe"}},
		{ServerIP: netip.MustParseAddr("192.0.2.129"), Interface: srv1, Booter: Policy{BIOSFile: "link1.kpxe"}},
	}
	serveOn(t, l.listen(srv0, dhcpv4.ServerPort), proxies[0].Serve)
	serveOn(t, l.listen(srv1, dhcpv4.ServerPort), proxies[1].Serve)
	serveOn(t, l.listen(srv0, 4011), proxies[0].ServeBootServer)

	for _, tc := range []struct {
		cli            string
		mac            net.HardwareAddr
		server, file   string
		otherFile      string
		wantYourIPAddr string
	}{
		{cli0, mac0, "192.0.2.1", "link0.kpxe", "link1.kpxe", "0.0.0.0"},
		{cli1, mac1, "192.0.2.129", "link1.kpxe", "link0.kpxe", "0.0.0.0"},
	} {
		offer, err := l.client(tc.cli).DiscoverOffer(ctx, pxeMods(vcBIOS, iana.INTEL_X86PC)...)
		if err != nil {
			t.Fatalf("%s: no offer: %v", tc.cli, err)
		}
		v := viewOf(t, offer)
		want := view{
			Type: "OFFER", XID: offer.TransactionID.String(), CIAddr: "0.0.0.0", YIAddr: tc.wantYourIPAddr, SIAddr: tc.server, GIAddr: "0.0.0.0",
			Broadcast: true, File: tc.file, ServerID: tc.server, VendorClass: "PXEClient", Vendor: []byte{6, 1, 8, 255},
			TFTPServer: tc.server, BootFile: tc.file, MachineID: testGUID,
		}
		if v.File == tc.otherFile {
			t.Errorf("%s got the other link's offer: the sockets are not bound to their interfaces", tc.cli)
		}
		if d := diffView(want, v); d != "" {
			t.Errorf("%s offer (-want +got):\n%s", tc.cli, d)
		}
		if offer.ClientHWAddr.String() != tc.mac.String() {
			t.Errorf("%s offer to %s", tc.cli, offer.ClientHWAddr)
		}
	}

	// The boot server request: unicast from the client's address to port
	// 4011 of the server's, the ACK back to it.
	conn := in(t, l.cli, func() (net.PacketConn, error) { return net.ListenPacket("udp4", "192.0.2.50:0") })
	t.Cleanup(func() { conn.Close() })
	req := pkt(t, dhcpv4.MessageTypeRequest, with(pxe(vcEFI, ArchEFI64), withXID(7), dhcpv4.WithHwAddr(mac0),
		dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50)), serverID("192.0.2.1"))...)
	ack := exchange(t, conn, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4011}, req)
	if v := viewOf(t, ack); v.Type != "ACK" || v.File != "ipxe.efi" || v.CIAddr != "192.0.2.50" || v.ServerID != "192.0.2.1" {
		t.Errorf("boot server ACK: %+v", v)
	}
}

// TestFullOnInterface runs a Full DHCP server on a veth: a PXE client
// without an address goes through DISCOVER, OFFER, REQUEST, ACK.
func TestFullOnInterface(t *testing.T) {
	l := newLab(t)
	srv0, cli0, mac0 := l.link(0, "192.0.2.1/24", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leases := &MemLeases{}
	f, err := NewFull(FullConfig{
		Interface: srv0,
		ServerIP:  netip.MustParseAddr("192.0.2.1"),
		Subnet:    netip.MustParsePrefix("192.0.2.0/24"),
		Start:     netip.MustParseAddr("192.0.2.100"),
		End:       netip.MustParseAddr("192.0.2.110"),
		Router:    netip.MustParseAddr("192.0.2.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		LeaseTime: 10 * time.Minute,
	}, leases, testPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, l.listen(srv0, dhcpv4.ServerPort), f.Serve)

	lease, err := l.client(cli0).Request(ctx, pxeMods(vcEFI, iana.EFI_X86_64)...)
	if err != nil {
		t.Fatalf("no lease: %v", err)
	}
	want := view{
		Type: "ACK", XID: lease.ACK.TransactionID.String(), CIAddr: "0.0.0.0", YIAddr: "192.0.2.100", SIAddr: "192.0.2.1", GIAddr: "0.0.0.0",
		File: "ipxe.efi", ServerID: "192.0.2.1", VendorClass: "PXEClient", Vendor: []byte{6, 1, 8, 255},
		TFTPServer: "192.0.2.1", BootFile: "ipxe.efi", MachineID: testGUID,
		Mask: "255.255.255.0", Router: "192.0.2.1", DNS: "192.0.2.1", LeaseSeconds: 600, T1: 300, T2: 525,
	}
	if d := diffView(want, viewOf(t, lease.ACK)); d != "" {
		t.Errorf("ACK (-want +got):\n%s", d)
	}
	if got, ok, _ := leases.Get(mac0); !ok || got.IP != netip.MustParseAddr("192.0.2.100") || time.Until(got.Expires) < 9*time.Minute {
		t.Errorf("stored lease %+v, %v", got, ok)
	}
}

func diffView(want, got view) string { return cmp.Diff(want, got, sortInts) }
