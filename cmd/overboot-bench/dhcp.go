package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/overboot/overboot/internal/netnsrun"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/server/dhcp"
)

// The dhcp section measures server/dhcp's Proxy (ProxyDHCP) answering
// many PXE clients at once (and, in dhcpfull.go, its Full beside
// dnsmasq): dhcpClients simulated clients each send one
// request at the same moment, and each must get its answer (matched by
// transaction ID) within dhcpTimeout. Nothing is sent again: a request
// without an answer in time is lost, and counted.
//
// Paths, each dhcpRounds rounds after a warm-up round:
//
//   - "lo :67": Proxy.Serve, DHCPDISCOVER -> DHCPOFFER over 127.0.0.1,
//     each client its own UDP socket. The clients send from 127.0.0.1,
//     so the server answers back to that address (replyAddr): no
//     broadcast.
//   - "lo :4011": Proxy.ServeBootServer, the PXE boot server request
//     (DHCPREQUEST with ciaddr and option 54) -> DHCPACK, the same way.
//   - "veth :67 bcast": Proxy.Serve as firmware meets it, when run as
//     root: two network namespaces this section makes (and deletes)
//     joined by a veth pair, the server's socket from
//     dhcp.ListenInterface as `overboot serve` opens it, and the clients
//     sending from 0.0.0.0:68 to 255.255.255.255:67, so every offer is
//     broadcast to 255.255.255.255:68. One client socket (port 68 is one
//     port) reads every offer and hands it to its client by transaction
//     ID.
//
// The Proxy is wired as the server wires it (server.ServeProxyDHCP):
// dhcp.Policy with the script and HTTP boot URLs, its log at Info (one
// record per answer) into a text handler that discards the text, and the
// server socket's receive buffer as dhcp.ListenInterface asks for it
// (dhcp.RecvBuffer; with the default 208 KiB, 200 DISCOVERs at once lost
// up to 34 to the kernel). Half the clients are BIOS PXE ROMs
// (PXEClient:Arch:00000, option 93 = 0), half x86-64 UEFI
// (PXEClient:Arch:00007, option 93 = 7), each with its own MAC and GUID
// (option 97); every answer is checked (type, chaddr, boot file).
// Answers per second are the answered over the time from the first send
// to the last answer. Each round also reads the server socket's drop
// counter (/proc/net/udp), which tells where a lost request went.
func dhcpSection() Section {
	return Section{Name: "dhcp", Run: runDHCP}
}

const (
	dhcpClients = 200
	dhcpRounds  = 7
	dhcpTimeout = 5 * time.Second // a request unanswered this long after it was sent is lost
	dhcpURL     = "http://192.0.2.1:8080"
)

// dhcpClient is one simulated PXE client.
type dhcpClient struct {
	mac  net.HardwareAddr
	xid  dhcpv4.TransactionID
	file string // the boot file its answer must name
	req  []byte
}

// dhcpRound is what one round saw.
type dhcpRound struct {
	answered, lost int
	bad            []error         // answers that were not what the client should get
	lat            []time.Duration // send to answer, of the answered
	wall           time.Duration   // first send to last answer
	drops          int64           // the server socket's kernel drop counter, this round
}

func (r dhcpRound) rate() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.answered) / r.wall.Seconds()
}

// dhcpPath is one way of reaching the Proxy.
type dhcpPath struct {
	name, what string
	typ        dhcpv4.MessageType // what the clients send
	serverIP   netip.Addr         // the Proxy's ServerIP
	// round sends every client's request at once and waits for the
	// answers.
	round func(ctx context.Context, cs []dhcpClient) (dhcpRound, error)
	close func()
}

func runDHCP(ctx context.Context, env *Env) ([]Result, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // Info, as the server's
	booter := dhcp.Policy{ScriptURL: dhcpURL + "/boot.ipxe", HTTPBootURL: dhcpURL + "/boot/ipxe.efi"}
	fmt.Fprintf(env.Out, "%d PXE clients at once (half BIOS Arch:00000, half UEFI Arch:00007; options 60, 93, 97), %d rounds after a warm-up; no retries: no answer within %s is a lost request; Proxy with dhcp.Policy, log at Info (discarded)\n",
		dhcpClients, dhcpRounds, dhcpTimeout)

	var paths []dhcpPath
	defer func() { closePaths(paths) }()
	for _, v := range []struct {
		typ    dhcpv4.MessageType
		rcvbuf int
	}{{dhcpv4.MessageTypeDiscover, dhcp.RecvBuffer}, {dhcpv4.MessageTypeRequest, dhcp.RecvBuffer}} {
		p, err := startLoopbackProxy(ctx, v.typ, v.rcvbuf, booter, log)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(env.Out, "veth :67 bcast: skipped: needs root (network namespaces)")
	} else if p, err := startVethProxy(ctx, booter, log); err != nil {
		fmt.Fprintf(env.Out, "veth :67 bcast: skipped: %v\n", err)
	} else {
		paths = append(paths, p)
	}

	var rs []Result
	var errs []error
	for pi, p := range paths {
		fmt.Fprintf(env.Out, "%s: %s\n", p.name, p.what)
		var rounds []dhcpRound
		lost, requests, bad, drops := 0, 0, 0, int64(0)
		for i := range dhcpRounds + 1 {
			if ctx.Err() != nil {
				return rs, ctx.Err()
			}
			cs, err := makeDHCPClients(p, byte(pi), byte(i))
			if err != nil {
				return rs, err
			}
			r, err := p.round(ctx, cs)
			if err != nil {
				return rs, fmt.Errorf("%s: %w", p.name, err)
			}
			warm := ""
			if i == 0 {
				warm = " (warm-up)"
			}
			fmt.Fprintf(env.Out, "  round %d%s: %d answered, %d lost, %d wrong; %.0f answers/s (%.1f ms first send to last answer); latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; server socket drops %d\n",
				i, warm, r.answered, r.lost, len(r.bad), r.rate(), ms(r.wall), pct(r.lat, 50), pct(r.lat, 99), pct(r.lat, 100), r.drops)
			for _, e := range r.bad[:min(3, len(r.bad))] {
				fmt.Fprintf(env.Out, "    wrong answer: %v\n", e)
			}
			// The warm-up's losses count too: a request is a request.
			lost += r.lost
			requests += len(cs)
			bad += len(r.bad)
			drops += r.drops
			if i > 0 {
				rounds = append(rounds, r)
			}
		}
		medianOf := func(f func(dhcpRound) float64) float64 {
			v := make([]float64, len(rounds))
			for i, r := range rounds {
				v[i] = f(r)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		res := func(metric string, v float64, better, goal, note string) Result {
			return Result{Section: "dhcp", Metric: p.name + " " + metric, Ours: v, RefName: "-", Better: better, Goal: goal, Note: note}
		}
		rs = append(rs,
			res("answers/s", medianOf(dhcpRound.rate), "higher", "report", fmt.Sprintf("%d clients at once, median of %d rounds", dhcpClients, dhcpRounds)),
			res("latency p50, ms", medianOf(func(r dhcpRound) float64 { return pct(r.lat, 50) }), "lower", "report", "send to answer"),
			res("latency p99, ms", medianOf(func(r dhcpRound) float64 { return pct(r.lat, 99) }), "lower", "report", ""),
			res("lost requests", float64(lost), "lower", "= 0", fmt.Sprintf("of %d sent, warm-up included; socket drops %d", requests, drops)),
		)
		if bad > 0 {
			rs = append(rs, res("wrong answers", float64(bad), "lower", "= 0", ""))
		}
		if lost > 0 || bad > 0 {
			errs = append(errs, fmt.Errorf("%s: %d of %d requests lost, %d wrong answers", p.name, lost, requests, bad))
		}
	}
	closePaths(paths)
	paths = nil
	frs, err := runFullDHCP(ctx, env)
	return append(rs, frs...), errors.Join(append(errs, err)...)
}

func closePaths(ps []dhcpPath) {
	for _, p := range slices.Backward(ps) {
		p.close()
	}
}

// makeDHCPClients makes a round's clients: client i has MAC
// 02:0b:PP:RR:ii:ii (PP the path, RR the round), the same bytes as its
// transaction ID, and a GUID of its own.
func makeDHCPClients(path dhcpPath, pi, round byte) ([]dhcpClient, error) {
	cs := make([]dhcpClient, dhcpClients)
	for i := range cs {
		hi, lo := byte(i>>8), byte(i)
		c := &cs[i]
		c.mac = net.HardwareAddr{0x02, 0x0b, pi, round, hi, lo}
		c.xid = dhcpv4.TransactionID{pi, round, hi, lo}
		guid := []byte{0, 0x0b, 0xbe, 0x4c, 0, pi, round, hi, lo, 0x80, 0, 0, 0, 0, 0, hi, lo}
		vc, arch := "PXEClient:Arch:00000:UNDI:002001", iana.INTEL_X86PC
		c.file = "undionly.kpxe"
		if i%2 == 1 {
			vc, arch = "PXEClient:Arch:00007:UNDI:003016", iana.EFI_X86_64
			c.file = "ipxe.efi"
		}
		p, err := dhcpv4.New(
			dhcpv4.WithHwAddr(c.mac),
			dhcpv4.WithTransactionID(c.xid),
			dhcpv4.WithMessageType(path.typ),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
			dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1464)),
		)
		if err != nil {
			return nil, err
		}
		if path.typ == dhcpv4.MessageTypeDiscover {
			p.SetBroadcast() // as PXE ROMs do
		} else {
			// A boot server request comes from the address the site's
			// DHCP server gave, and names the boot server.
			p.ClientIPAddr = net.IPv4(192, 0, 2, byte(10+i%200)).To4()
			p.UpdateOption(dhcpv4.OptServerIdentifier(path.serverIP.AsSlice()))
		}
		c.req = p.ToBytes()
	}
	return cs, nil
}

// checkAnswer reports what is wrong with an answer to c, or nil.
func checkAnswer(c *dhcpClient, typ dhcpv4.MessageType, p *dhcpv4.DHCPv4) error {
	want := dhcpv4.MessageTypeOffer
	if typ == dhcpv4.MessageTypeRequest {
		want = dhcpv4.MessageTypeAck
	}
	switch {
	case p.OpCode != dhcpv4.OpcodeBootReply || p.MessageType() != want:
		return fmt.Errorf("xid %s: %s %s, want a reply %s", p.TransactionID, p.OpCode, p.MessageType(), want)
	case p.ClientHWAddr.String() != c.mac.String():
		return fmt.Errorf("xid %s: chaddr %s, want %s", p.TransactionID, p.ClientHWAddr, c.mac)
	case p.BootFileName != c.file || string(p.Options.Get(dhcpv4.OptionBootfileName)) != c.file:
		return fmt.Errorf("xid %s: boot file %q (option 67 %q), want %q", p.TransactionID, p.BootFileName, p.Options.Get(dhcpv4.OptionBootfileName), c.file)
	}
	return nil
}

// serveProxy runs p's Serve (a DISCOVER path) or ServeBootServer (a
// REQUEST path) on conn until stop is called.
func serveProxy(ctx context.Context, p *dhcp.Proxy, typ dhcpv4.MessageType, conn net.PacketConn) (stop func()) {
	serve := p.Serve
	if typ == dhcpv4.MessageTypeRequest {
		serve = p.ServeBootServer
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(sctx, conn) }()
	return func() {
		cancel()
		if err := <-served; err != nil {
			fmt.Fprintf(os.Stderr, "overboot-bench: dhcp: %s: %v\n", p.Interface, err)
		}
	}
}

// startLoopbackProxy serves a Proxy on a free port of 127.0.0.1 (a plain
// socket, as the package's loopback tests open: SO_BINDTODEVICE would
// change nothing on lo), each client with its own socket. rcvbuf > 0
// sets the server socket's SO_RCVBUF(FORCE), as dhcp.ListenInterface does.
func startLoopbackProxy(ctx context.Context, typ dhcpv4.MessageType, rcvbuf int, booter dhcp.Booter, log *slog.Logger) (dhcpPath, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return dhcpPath{}, err
	}
	path := dhcpPath{name: "lo :67", typ: typ, serverIP: netip.MustParseAddr("127.0.0.1"),
		what: "Proxy.Serve, DISCOVER -> OFFER over 127.0.0.1, each client its own socket (answers go back to the client's 127.0.0.1 port: no broadcast)"}
	if typ == dhcpv4.MessageTypeRequest {
		path.name, path.what = "lo :4011", "Proxy.ServeBootServer, boot server REQUEST (ciaddr, option 54) -> ACK over 127.0.0.1, each client its own socket"
	}
	if rcvbuf > 0 {
		if err := setRcvBufForce(conn, rcvbuf); err != nil {
			if err := conn.SetReadBuffer(rcvbuf); err != nil {
				conn.Close()
				return dhcpPath{}, err
			}
		}
	}
	path.what += fmt.Sprintf("; server socket SO_RCVBUF %d bytes (as the kernel reports it)", rcvBuf(conn))
	p := &dhcp.Proxy{ServerIP: path.serverIP, Interface: "lo", Booter: booter, Log: log}
	stop := serveProxy(ctx, p, typ, conn)
	path.close = func() { stop(); conn.Close() }
	server := conn.LocalAddr().(*net.UDPAddr)
	path.round = func(ctx context.Context, cs []dhcpClient) (dhcpRound, error) {
		d0 := udpDrops("/proc/net/udp", server.Port)
		r, err := loopbackRound(server, cs, typ)
		r.drops = udpDrops("/proc/net/udp", server.Port) - d0
		return r, err
	}
	return path, nil
}

// loopbackRound: each client opens its socket, then all send at once
// and each waits dhcpTimeout for its answer.
func loopbackRound(server *net.UDPAddr, cs []dhcpClient, typ dhcpv4.MessageType) (dhcpRound, error) {
	conns := make([]net.PacketConn, len(cs))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return dhcpRound{}, err
		}
		conns[i] = c
	}
	sent, got := make([]time.Time, len(cs)), make([]time.Time, len(cs))
	bad, sendErr := make([]error, len(cs)), make([]error, len(cs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() {
			c, buf := conns[i], make([]byte, 4096)
			<-start
			sent[i] = time.Now()
			if _, err := c.WriteTo(cs[i].req, server); err != nil {
				sendErr[i] = err
				return
			}
			c.SetReadDeadline(sent[i].Add(dhcpTimeout))
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return // the deadline: lost
				}
				p, err := dhcpv4.FromBytes(buf[:n])
				if err != nil || p.TransactionID != cs[i].xid {
					continue // not its answer
				}
				got[i] = time.Now()
				bad[i] = checkAnswer(&cs[i], typ, p)
				return
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(sendErr...); err != nil {
		return dhcpRound{}, fmt.Errorf("the clients could not send: %w", err)
	}
	return tally(sent, got, bad), nil
}

// tally counts a round: an answer later than dhcpTimeout is lost.
func tally(sent, got []time.Time, bad []error) dhcpRound {
	var r dhcpRound
	var first, last time.Time
	for i := range sent {
		if first.IsZero() || sent[i].Before(first) {
			first = sent[i]
		}
		if got[i].IsZero() || got[i].Sub(sent[i]) > dhcpTimeout {
			r.lost++
			continue
		}
		r.answered++
		r.lat = append(r.lat, got[i].Sub(sent[i]))
		if got[i].After(last) {
			last = got[i]
		}
		if bad[i] != nil {
			r.bad = append(r.bad, bad[i])
		}
	}
	if !last.IsZero() {
		r.wall = last.Sub(first)
	}
	return r
}

// udpDrops sums the drops column of the UDP sockets whose local port is
// port in a /proc/net/udp file (-1 when it cannot be read).
func udpDrops(file string, port int) int64 {
	f, err := os.Open(file)
	if err != nil {
		return -1
	}
	defer f.Close()
	var sum int64
	suffix := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || !strings.HasSuffix(fs[1], suffix) {
			continue
		}
		n, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
		if err == nil {
			sum += n
		}
	}
	return sum
}

// The veth path's addresses: TEST-NET-1, inside namespaces of our own.
const (
	vethServerIP  = "192.0.2.1"
	vethServerDev = "obsrv0"
	vethClientDev = "obcli0"
)

// startVethProxy makes a server and a client network namespace joined by
// a veth pair, the server end with vethServerIP and the client end with
// no address (firmware has none yet), and serves a Proxy on port 67 of
// the server end with a socket from dhcp.ListenInterface.
func startVethProxy(ctx context.Context, booter dhcp.Booter, log *slog.Logger) (path dhcpPath, err error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return dhcpPath{}, fmt.Errorf("ip (iproute2) missing: %w", err)
	}
	id := strconv.Itoa(os.Getpid())
	srvNS, cliNS := "obbench-dhcp-srv-"+id, "obbench-dhcp-cli-"+id
	var undo []func()
	cleanup := func() {
		for _, f := range slices.Backward(undo) {
			f()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	for _, ns := range []string{srvNS, cliNS} {
		if err := ipCmd("netns", "add", ns); err != nil {
			return dhcpPath{}, err
		}
		undo = append(undo, func() {
			if err := ipCmd("netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "overboot-bench: dhcp:", err)
			}
		})
	}
	for _, args := range [][]string{
		{"-n", srvNS, "link", "set", "lo", "up"},
		{"-n", cliNS, "link", "set", "lo", "up"},
		{"link", "add", vethServerDev, "netns", srvNS, "type", "veth", "peer", "name", vethClientDev, "netns", cliNS},
		{"-n", srvNS, "addr", "add", vethServerIP + "/24", "dev", vethServerDev},
		{"-n", srvNS, "link", "set", vethServerDev, "up"},
		{"-n", cliNS, "link", "set", vethClientDev, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return dhcpPath{}, err
		}
	}
	srv, err := inNetNS(srvNS, func() (*net.UDPConn, error) { return dhcp.ListenInterface(ctx, vethServerDev, dhcpv4.ServerPort) })
	if err != nil {
		return dhcpPath{}, err
	}
	undo = append(undo, func() { srv.Close() })
	cli, err := inNetNS(cliNS, func() (*net.UDPConn, error) {
		c, err := dhcp.ListenInterface(ctx, vethClientDev, dhcpv4.ClientPort)
		if err != nil {
			return nil, err
		}
		// The one client socket takes every offer of a round: a buffer
		// big enough that the measuring end never drops one.
		if err := setRcvBufForce(c, 16<<20); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return dhcpPath{}, err
	}
	undo = append(undo, func() { cli.Close() })

	ip := netip.MustParseAddr(vethServerIP)
	p := &dhcp.Proxy{ServerIP: ip, Interface: vethServerDev, Booter: booter, Log: log}
	stop := serveProxy(ctx, p, dhcpv4.MessageTypeDiscover, srv)
	undo = append(undo, stop)
	path = dhcpPath{name: "veth :67 bcast", typ: dhcpv4.MessageTypeDiscover, serverIP: ip, close: cleanup,
		what: fmt.Sprintf("Proxy.Serve on a dhcp.ListenInterface socket (%s, 0.0.0.0:67, SO_RCVBUF %d bytes) in a network namespace; clients in another, behind a veth pair, send from 0.0.0.0:68 to 255.255.255.255:67 and the offers are broadcast to 255.255.255.255:68 (one client socket reads them all)", vethServerDev, rcvBuf(srv))}
	path.round = func(ctx context.Context, cs []dhcpClient) (dhcpRound, error) {
		drops := func(ns string, port int) int64 {
			n, err := inNetNS(ns, func() (int64, error) { return udpDrops("/proc/thread-self/net/udp", port), nil })
			if err != nil {
				return -1
			}
			return n
		}
		s0, c0 := drops(srvNS, dhcpv4.ServerPort), drops(cliNS, dhcpv4.ClientPort)
		r, err := broadcastRound(cli, cs)
		r.drops = drops(srvNS, dhcpv4.ServerPort) - s0
		if c := drops(cliNS, dhcpv4.ClientPort) - c0; c != 0 && err == nil {
			err = fmt.Errorf("the client socket dropped %d offers: the measurement is void", c)
		}
		return r, err
	}
	return path, nil
}

// broadcastRound: every client sends its DISCOVER to 255.255.255.255:67
// from the one client socket at once; one reader takes the offers.
func broadcastRound(conn *net.UDPConn, cs []dhcpClient) (dhcpRound, error) {
	idx := make(map[dhcpv4.TransactionID]int, len(cs))
	for i, c := range cs {
		idx[c.xid] = i
	}
	sent, got := make([]time.Time, len(cs)), make([]time.Time, len(cs))
	bad, sendErr := make([]error, len(cs)), make([]error, len(cs))
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for left := len(cs); left > 0; {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return // the deadline
			}
			p, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			i, ok := idx[p.TransactionID]
			if !ok || !got[i].IsZero() {
				continue // another round's, or again
			}
			got[i] = time.Now()
			bad[i] = checkAnswer(&cs[i], dhcpv4.MessageTypeDiscover, p)
			left--
		}
	}()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() {
			<-start
			sent[i] = time.Now()
			_, sendErr[i] = conn.WriteTo(cs[i].req, bcast)
		})
	}
	close(start)
	wg.Wait()
	last := slices.MaxFunc(sent, time.Time.Compare)
	conn.SetReadDeadline(last.Add(dhcpTimeout))
	<-read
	if err := errors.Join(sendErr...); err != nil {
		return dhcpRound{}, fmt.Errorf("the clients could not send: %w", err)
	}
	return tally(sent, got, bad), nil
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNetNS runs fn inside network namespace ns.
func inNetNS[T any](ns string, fn func() (T, error)) (T, error) { return netnsrun.Do(ns, fn) }

// setRcvBufForce sets SO_RCVBUFFORCE (root: above net.core.rmem_max).
func setRcvBufForce(c *net.UDPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_RCVBUFFORCE: %w", serr)
	}
	return nil
}

// rcvBuf is a socket's SO_RCVBUF as the kernel reports it (twice what
// was set: the kernel counts its bookkeeping), or -1.
func rcvBuf(c *net.UDPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			n = v
		}
	})
	return n
}
