package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// recordingBooter answers with Policy and keeps the requests it saw.
type recordingBooter struct {
	Policy
	mu   sync.Mutex // guards seen
	seen []Request
}

func (b *recordingBooter) Boot(ctx context.Context, r Request) (Answer, error) {
	b.mu.Lock()
	b.seen = append(b.seen, r)
	b.mu.Unlock()
	return b.Policy.Boot(ctx, r)
}

var testPolicy = Policy{ScriptURL: "http://192.0.2.1/boot.ipxe", HTTPBootURL: "http://192.0.2.1/ipxe.efi"}

// TestProxyServe runs a Proxy on loopback sockets: a client's DISCOVER
// on the DHCP port gets an offer; its REQUEST on the boot server port an
// ACK of the same.
func TestProxyServe(t *testing.T) {
	booter := &recordingBooter{Policy: testPolicy}
	p := &Proxy{ServerIP: testServer, Interface: "lo", Booter: booter, Log: slog.New(slog.DiscardHandler)}
	dhcpPort, bootPort := loopback(t), loopback(t)
	serveOn(t, dhcpPort, p.Serve)
	serveOn(t, bootPort, p.ServeBootServer)
	client := loopback(t)

	offer := exchange(t, client, dhcpPort.LocalAddr(), pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcEFI, ArchEFI64), withXID(1))...))
	want := view{
		Type: "OFFER", XID: "0x00000001", CIAddr: "0.0.0.0", YIAddr: "0.0.0.0", SIAddr: "192.0.2.1", GIAddr: "0.0.0.0",
		Broadcast: true, File: "ipxe.efi", ServerID: "192.0.2.1", VendorClass: "PXEClient", Vendor: []byte{6, 1, 8, 255},
		TFTPServer: "192.0.2.1", BootFile: "ipxe.efi", MachineID: testGUID,
	}
	if diff := cmp.Diff(want, viewOf(t, offer)); diff != "" {
		t.Errorf("offer (-want +got):\n%s", diff)
	}

	ack := exchange(t, client, bootPort.LocalAddr(), pkt(t, dhcpv4.MessageTypeRequest, with(pxe(vcEFI, ArchEFI64), withXID(2),
		dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServer.AsSlice())))...))
	want.Type, want.XID, want.CIAddr, want.Broadcast = "ACK", "0x00000002", "192.0.2.50", false
	if diff := cmp.Diff(want, viewOf(t, ack)); diff != "" {
		t.Errorf("boot server ACK (-want +got):\n%s", diff)
	}

	booter.mu.Lock()
	defer booter.mu.Unlock()
	wantSeen := []Request{
		{MAC: testMAC, Arch: ArchEFI64, VendorClass: vcEFI, UUID: "12345678-9abc-def0-0123-456789abcdef", Interface: "lo"},
		{MAC: testMAC, Arch: ArchEFI64, VendorClass: vcEFI, UUID: "12345678-9abc-def0-0123-456789abcdef", Interface: "lo"},
	}
	if diff := cmp.Diff(wantSeen, booter.seen, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("the Booter saw (-want +got):\n%s", diff)
	}
}

// TestProxyIgnores checks what a Proxy does not answer, and at which
// level it says so.
func TestProxyIgnores(t *testing.T) {
	discover := func(mods ...dhcpv4.Modifier) []byte {
		return pkt(t, dhcpv4.MessageTypeDiscover, mods...).ToBytes()
	}
	bios := pxe(vcBIOS, ArchBIOS)
	failing := BooterFunc(func(context.Context, Request) (Answer, error) { return Answer{}, errors.New("store is down") })
	bad := BooterFunc(func(context.Context, Request) (Answer, error) { return Answer{URL: "http://192.0.2.1/x"}, nil })
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	for _, tc := range []struct {
		name   string
		booter Booter
		b      []byte
		port   dhcpv4.MessageType // which Serve: Discover for 67, Request for 4011
		level  slog.Level
		words  []string
	}{
		{"garbage", testPolicy, []byte("GET / HTTP/1.0\r\n\r\n"), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"malformed"}},
		{"empty datagram", testPolicy, nil, dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"malformed"}},
		{"truncated DISCOVER", testPolicy, discover(bios...)[:200], dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"malformed"}},
		{"a reply", testPolicy, pkt(t, dhcpv4.MessageTypeOffer, with(bios, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply })...).ToBytes(), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"not a request"}},
		{"a plain DHCP client", testPolicy, discover(dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"ignored a client", "not a network boot request"}},
		{"a REQUEST on port 67 (for the site's DHCP server)", testPolicy, pkt(t, dhcpv4.MessageTypeRequest, bios...).ToBytes(), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"ignored a message", "REQUEST"}},
		{"a DISCOVER on port 4011", testPolicy, discover(bios...), dhcpv4.MessageTypeRequest, slog.LevelDebug, []string{"ignored a message", "DISCOVER"}},
		{"a boot server request for another server", testPolicy, pkt(t, dhcpv4.MessageTypeRequest, with(bios, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 7))))...).ToBytes(), dhcpv4.MessageTypeRequest, slog.LevelDebug, []string{"another server"}},
		{"malformed option 97", testPolicy, discover(with(bios, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1}))...), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"option 97"}},
		{"not ours to boot (zero Answer)", Policy{}, discover(pxe("PXEClient:Arch:00011:UNDI:003016", 11)...), dhcpv4.MessageTypeDiscover, slog.LevelDebug, []string{"not ours to boot", "arch=11"}},
		{"the Booter fails", failing, discover(bios...), dhcpv4.MessageTypeDiscover, slog.LevelWarn, []string{"booter failed", "store is down"}},
		{"the Booter's answer does not suit the client", bad, discover(bios...), dhcpv4.MessageTypeDiscover, slog.LevelWarn, []string{"can only use TFTP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &logRecorder{}
			p := &Proxy{ServerIP: testServer, Booter: tc.booter}
			reply, dst := p.handle(context.Background(), rec.logger(), tc.b, peer, tc.port)
			if reply != nil || dst != nil {
				t.Fatalf("answered %s to %v", reply.Summary(), dst)
			}
			if rec.find(tc.level, tc.words...) == "" {
				t.Errorf("no %s record with %q; the log:\n%s", tc.level, tc.words, rec.all())
			}
		})
	}
}

// TestServeStops checks that Serve returns nil when its context ends,
// and leaves the socket open for its owner.
func TestServeStops(t *testing.T) {
	conn := loopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Proxy{ServerIP: testServer, Booter: testPolicy}).Serve(ctx, conn) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10 s after its context ended")
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		t.Errorf("the socket was closed: %v", err)
	}

	// A socket its owner closes ends Serve too, without an error.
	conn2 := loopback(t)
	go func() { done <- (&Proxy{ServerIP: testServer, Booter: testPolicy}).Serve(context.Background(), conn2) }()
	conn2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Close = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10 s after its socket closed")
	}
}

func TestProxyChecksItself(t *testing.T) {
	conn := loopback(t)
	for _, tc := range []struct {
		p    Proxy
		want string
	}{
		{Proxy{Booter: testPolicy}, "server address invalid IP is not IPv4"},
		{Proxy{ServerIP: netip.MustParseAddr("2001:db8::1"), Booter: testPolicy}, "not IPv4"},
		{Proxy{ServerIP: testServer}, "no Booter"},
	} {
		for name, serve := range map[string]func(context.Context, net.PacketConn) error{"Serve": tc.p.Serve, "ServeBootServer": tc.p.ServeBootServer} {
			err := serve(context.Background(), conn)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s of %+v = %v, want an error saying %q", name, tc.p, err, tc.want)
			}
		}
	}
}
