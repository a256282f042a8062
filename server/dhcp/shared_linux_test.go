package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/state"
)

// sharedLAN is one link with several servers on it: a bridge br0 in a
// client namespace (address 192.0.2.2/24, where perfdhcp runs as a
// relay), and per server a namespace joined to the bridge by a veth pair
// (eth0 in the server's namespace). TEST-NET-1 addresses only.
type sharedLAN struct {
	*lab
	servers []string // the servers' namespaces
}

func newSharedLAN(t *testing.T, serverIPs ...string) *sharedLAN {
	t.Helper()
	l := &sharedLAN{lab: newLab(t)}
	l.ip("-n", l.cli, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.cli, "addr", "add", "192.0.2.2/24", "dev", "br0")
	l.ip("-n", l.cli, "link", "set", "br0", "up")
	for i, ip := range serverIPs {
		ns := fmt.Sprintf("%s-%d", l.srv, i)
		l.ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		port := fmt.Sprintf("port%d", i)
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", l.cli)
		l.ip("-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", l.cli, "link", "set", port, "master", "br0")
		l.ip("-n", l.cli, "link", "set", port, "up")
		l.servers = append(l.servers, ns)
	}
	return l
}

// serve runs full on eth0's port 67 in server i's namespace.
func (l *sharedLAN) serve(i int, full *Full) {
	l.t.Helper()
	c := in(l.t, l.servers[i], func() (*net.UDPConn, error) { return ListenInterface(context.Background(), "eth0", dhcpv4.ServerPort) })
	l.t.Cleanup(func() { c.Close() })
	serveOn(l.t, c, full.Serve)
}

// perfdhcp runs perfdhcp in the client namespace as a relay on br0
// (giaddr 192.0.2.2), sending to dst, and returns its report.
func (l *sharedLAN) perfdhcp(t *testing.T, dst string, rate, clients, seconds int) string {
	t.Helper()
	perfdhcp, err := exec.LookPath("perfdhcp")
	if err != nil {
		t.Fatal("perfdhcp missing: install kea-admin (apt-get install kea-admin)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+60)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.cli, perfdhcp, "-4", "-l", "br0", "-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients),
		"-p", strconv.Itoa(seconds), "-W", "1000000")
	if dst != "" {
		cmd.Args = append(cmd.Args, dst)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", cmd, out)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) { // 3: some packets dropped
		t.Fatalf("perfdhcp: %v", err)
	}
	return string(out)
}

// perfCounts are perfdhcp's figures named key, one per exchange
// (DISCOVER-OFFER, REQUEST-ACK).
func perfCounts(out, key string) []int {
	var n []int
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(key)+`: (\d+)`).FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n = append(n, v)
	}
	return n
}

// TestTwoFullsOnePostgres: two Full servers on one link (two namespaces
// on a bridge), each with its own handle on one PostgreSQL database,
// answer perfdhcp's clients (a relay sending to the link's broadcast
// address, so both servers get every request and both answer every
// DISCOVER, each to its own REQUEST) at 500 new exchanges a second for
// 4 s over 200 MACs (a pool of 241): no
// address is ACKed to two clients (perfdhcp's "non unique addresses"),
// no two MACs hold one address in the store, every ACK perfdhcp got is
// a lease in the store, and most exchanges complete. Root, PostgreSQL
// (internal/pgtest) and perfdhcp.
func TestTwoFullsOnePostgres(t *testing.T) {
	lan := newSharedLAN(t, "192.0.2.1", "192.0.2.3")
	conn := pgtest.Database(t)
	cfg := FullConfig{
		Interface: "eth0",
		Subnet:    netip.MustParsePrefix("192.0.2.0/24"),
		Start:     netip.MustParseAddr("192.0.2.10"),
		End:       netip.MustParseAddr("192.0.2.250"),
		LeaseTime: 10 * time.Minute,
	}
	var fulls []*Full
	var dbs []*state.DB
	for i, ip := range []string{"192.0.2.1", "192.0.2.3"} {
		db, err := state.OpenPostgres(context.Background(), conn, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c := cfg
		c.ServerIP = netip.MustParseAddr(ip)
		f, err := NewFull(c, StateLeases(db), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		lan.serve(i, f)
		fulls, dbs = append(fulls, f), append(dbs, db)
	}
	out := lan.perfdhcp(t, "", 500, 200, 4)
	sent, recv := perfCounts(out, "sent packets"), perfCounts(out, "received packets")
	if len(sent) != 2 || len(recv) != 2 {
		t.Fatalf("perfdhcp's report has no sent and received packets of DISCOVER-OFFER and REQUEST-ACK")
	}
	for _, what := range []string{"non unique addresses", "rejected leases"} {
		for _, n := range perfCounts(out, what) {
			if n != 0 {
				t.Errorf("perfdhcp counts %d %s", n, what)
			}
		}
	}
	// Not all: a client whose two offers lapse or whose servers' writes
	// meet may go unanswered (perfdhcp does not retransmit); most do.
	if sent[0] < 1000 || recv[0] < sent[0]*8/10 || recv[1] < sent[1]*8/10 {
		t.Errorf("too few exchanges completed: DISCOVER %d, OFFER %d, REQUEST %d, ACK %d", sent[0], recv[0], sent[1], recv[1])
	}
	all, err := dbs[0].Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, l := range all {
		if !l.Expires.After(time.Now()) {
			continue
		}
		if o, dup := held[l.IP]; dup {
			t.Errorf("%s held by %s and %s in the store", l.IP, o, l.MAC)
		}
		held[l.IP] = l.MAC
	}
	for i, f := range fulls {
		t.Logf("server %d: refreshes %d, dropped %d full %d stale", i, f.stats.Refreshes.Load(), f.stats.Full.Load(), f.stats.Stale.Load())
	}
	t.Logf("%d leases in the store, %d live", len(all), len(held))
}

// TestTwoProxiesOneLAN: two ProxyDHCP servers on one link (beside the
// site's DHCP server, not here) both answer a PXE client's DISCOVER,
// each naming itself (server identifier, next server, TFTP server) with
// the same boot file, and each answers the client's boot server request
// on port 4011: whichever offer the client takes (PXE firmware takes
// the first), it boots. Root.
func TestTwoProxiesOneLAN(t *testing.T) {
	ips := []string{"192.0.2.1", "192.0.2.3"}
	lan := newSharedLAN(t, ips...)
	for i, ip := range ips {
		p := &Proxy{ServerIP: netip.MustParseAddr(ip), Interface: "eth0", Booter: Policy{BIOSFile: "undionly.kpxe", EFIFile: "ipxe.efi"}}
		for _, port := range []int{dhcpv4.ServerPort, 4011} {
			c := in(t, lan.servers[i], func() (*net.UDPConn, error) { return ListenInterface(context.Background(), "eth0", port) })
			t.Cleanup(func() { c.Close() })
			if port == 4011 {
				serveOn(t, c, p.ServeBootServer)
			} else {
				serveOn(t, c, p.Serve)
			}
		}
	}
	// The client: port 68 on the bridge, where the offers are broadcast.
	client := in(t, lan.cli, func() (*net.UDPConn, error) { return ListenInterface(context.Background(), "br0", dhcpv4.ClientPort) })
	t.Cleanup(func() { client.Close() })
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 2, 1}
	disc := pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS), withXID(42), dhcpv4.WithHwAddr(mac), dhcpv4.WithBroadcast(true))...)
	if _, err := client.WriteTo(disc.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
		t.Fatal(err)
	}
	offers := map[string]view{} // by server identifier
	buf := make([]byte, maxPacket)
	if err := client.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for len(offers) < len(ips) {
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("offers from %d of %d proxies (%v): %v", len(offers), len(ips), offers, err)
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || p.OpCode != dhcpv4.OpcodeBootReply || p.TransactionID != disc.TransactionID {
			continue
		}
		v := viewOf(t, p)
		offers[v.ServerID] = v
	}
	for _, ip := range ips {
		v, ok := offers[ip]
		if !ok {
			t.Errorf("no offer from %s: %v", ip, offers)
			continue
		}
		if v.Type != "OFFER" || v.YIAddr != "0.0.0.0" || v.SIAddr != ip || v.TFTPServer != ip || v.BootFile != "undionly.kpxe" {
			t.Errorf("offer from %s: %+v, want an OFFER without an address naming %s with undionly.kpxe", ip, v, ip)
		}
	}
	// Either offer boots: each server's boot server answers.
	conn := in(t, lan.cli, func() (net.PacketConn, error) { return net.ListenPacket("udp4", "192.0.2.2:0") })
	t.Cleanup(func() { conn.Close() })
	for i, ip := range ips {
		req := pkt(t, dhcpv4.MessageTypeRequest, with(pxe(vcEFI, ArchEFI64), withXID(byte(50+i)), dhcpv4.WithHwAddr(mac),
			dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 2)), serverID(ip))...)
		ack := exchange(t, conn, &net.UDPAddr{IP: net.ParseIP(ip), Port: 4011}, req)
		if v := viewOf(t, ack); v.Type != "ACK" || v.File != "ipxe.efi" || v.ServerID != ip {
			t.Errorf("boot server %s: %+v, want an ACK of ipxe.efi from %s", ip, v, ip)
		}
	}
}
