package server

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/overboot/overboot/server/config"
)

// pipe6 is a net.PacketConn for ServeDHCPv6: what a test writes to in the
// server reads, from peer; the server's answers come out of out.
type pipe6 struct {
	in   chan []byte
	out  chan []byte
	peer *net.UDPAddr
	done chan struct{}
	once sync.Once
}

func newPipe6(peer *net.UDPAddr) *pipe6 {
	return &pipe6{in: make(chan []byte), out: make(chan []byte, 16), peer: peer, done: make(chan struct{})}
}

func (p *pipe6) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-p.in:
		return copy(b, d), p.peer, nil
	case <-p.done:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (p *pipe6) WriteTo(b []byte, _ net.Addr) (int, error) {
	p.out <- append([]byte(nil), b...)
	return len(b), nil
}

func (p *pipe6) Close() error                     { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipe6) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv6unspecified, Port: 547} }
func (p *pipe6) SetDeadline(t time.Time) error    { return p.SetReadDeadline(t) }
func (p *pipe6) SetWriteDeadline(time.Time) error { return nil }
func (p *pipe6) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		p.Close()
	}
	return nil
}

// dhcpv6Run is one run of a server over the data directory data with
// its DHCPv6 server on a pipe6: exchange sends a client's message and
// returns the answer.
type dhcpv6Run struct {
	t    *testing.T
	pipe *pipe6
	stop func()
}

func startDHCPv6(t *testing.T, data string) *dhcpv6Run {
	t.Helper()
	cfg, err := config.Parse("test.conf", strings.NewReader("[server]\ndata = "+data+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPipe6(&net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:a"), Port: 546, Zone: "br0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.ServeDHCPv6(ctx, p, DHCPv6Options{Interface: "br0", URL: "http://[2001:db8::1]", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1},
			Start: netip.MustParseAddr("2001:db8::100"), End: netip.MustParseAddr("2001:db8::1ff")})
	}()
	r := &dhcpv6Run{t: t, pipe: p}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ServeDHCPv6: %v", err)
			}
			s.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *dhcpv6Run) exchange(m *dhcpv6.Message) *dhcpv6.Message {
	r.t.Helper()
	select {
	case r.pipe.in <- m.ToBytes():
	case <-time.After(10 * time.Second):
		r.t.Fatalf("the server does not read (%s)", m.Type())
	}
	select {
	case b := <-r.pipe.out:
		reply, err := dhcpv6.MessageFromBytes(b)
		if err != nil {
			r.t.Fatal(err)
		}
		return reply
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no answer to %s", m.Type())
		return nil
	}
}

// client6 is a message of type typ from the client with DUID-LL mac and
// one IA_NA (IAID 1), with addr in it when addr is not "".
func client6(typ dhcpv6.MessageType, mac byte, serverID dhcpv6.DUID, addr string, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: typ, TransactionID: dhcpv6.TransactionID{mac, byte(typ), 1}}
	m.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, mac}}))
	if serverID != nil {
		m.AddOption(dhcpv6.OptServerID(serverID))
	}
	ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 1}}
	if addr != "" {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr)})
	}
	m.AddOption(ia)
	for _, mod := range mods {
		mod(m)
	}
	return m
}

func leased6(m *dhcpv6.Message) string {
	if ia := m.Options.OneIANA(); ia != nil {
		if a := ia.Options.OneAddress(); a != nil {
			return a.IPv6Addr.String()
		}
		if st := ia.Options.Status(); st != nil {
			return st.StatusCode.String()
		}
	}
	return "no IA_NA"
}

// TestDHCPv6LeasesKeptAcrossRestart: the DHCPv6 server's leases are in
// the state store. A server started again over the same data directory
// does not give another client an address a client still holds, and the
// holder renews it.
func TestDHCPv6LeasesKeptAcrossRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	r := startDHCPv6(t, data)
	adv := r.exchange(client6(dhcpv6.MessageTypeSolicit, 1, nil, ""))
	sid := adv.Options.ServerID()
	if got := leased6(adv); got != "2001:db8::100" {
		t.Fatalf("advertised %s", got)
	}
	if got := leased6(r.exchange(client6(dhcpv6.MessageTypeRequest, 1, sid, "2001:db8::100"))); got != "2001:db8::100" {
		t.Fatalf("request: %s", got)
	}
	r.stop()

	r = startDHCPv6(t, data)
	if got := leased6(r.exchange(client6(dhcpv6.MessageTypeSolicit, 2, nil, "", dhcpv6.WithRapidCommit))); got != "2001:db8::101" {
		t.Errorf("another client after the restart got %s, want 2001:db8::101 (::100 is leased)", got)
	}
	if got := leased6(r.exchange(client6(dhcpv6.MessageTypeRenew, 1, sid, "2001:db8::100"))); got != "2001:db8::100" {
		t.Errorf("the first client's renew after the restart: %s", got)
	}
}
