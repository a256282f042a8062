package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/state"
)

// The dhcp section's full-DHCP part measures server/dhcp's Full (the
// address-giving server) as `overboot serve` runs it, backed by the
// state store (server.DHCPLeases) on SQLite and on PostgreSQL, beside
// dnsmasq in the same run:
//
//   - perfdhcp (ISC's, Debian's kea-admin) in a client network
//     namespace acts as a relay (giaddr = its address on a bridge there)
//     and runs DISCOVER-OFFER and REQUEST-ACK exchanges at fullRates new
//     exchanges a second for fullSeconds each, over fullClients MACs,
//     against overboot's Full on SQLite, Full on PostgreSQL (a private
//     cluster the section starts, fsync on, a fresh database per run)
//     and dnsmasq (`--no-ping`, the same pool, its lease file in a temp
//     dir), each in a server namespace joined to the bridge by a veth
//     pair. Each server starts empty for each run. Then two Fulls on
//     one PostgreSQL database, each in its own namespace on the bridge,
//     perfdhcp sending to the broadcast address (both get every request,
//     both answer every DISCOVER) at twoRate: the duplicates counted
//     (perfdhcp's non unique addresses, and addresses two MACs hold in
//     the store), goal 0. Figures: perfdhcp's drops ratio and its
//     average and maximum delays, per exchange.
//   - In process: Full's new clients a second, DISCOVER then REQUEST of
//     inProcClients never-seen MACs by inProcWorkers goroutines through
//     Full's handler (no sockets), for the first 500 and for those after
//     the table holds 2,000 leases: whether the rate stays flat as the
//     table grows.
const (
	fullClients   = 200 // perfdhcp -R: the pool is a /24's
	fullSeconds   = 4
	inProcClients = 2500
	inProcWorkers = 32
	pdServerIP    = "192.0.2.1"
	pdClientIP    = "192.0.2.2"
	pdServerDev   = "obpdsrv0"
	pdClientDev   = "obpdcli0"
	pdPoolStart   = "192.0.2.10"
	pdPoolEnd     = "192.0.2.250"
)

var fullRates = []int{200, 500, 2000}

// twoRate is the two servers' run's rate: the storm goal's.
const twoRate = 2000

// pdServer2IP is the second server's address in the two servers' run.
const pdServer2IP = "192.0.2.3"

// perfStats is what perfdhcp reports for one exchange.
type perfStats struct {
	name                string // DISCOVER-OFFER or REQUEST-ACK
	sent, recv          int
	drops, avgMS, maxMS float64
	nonUnique, rejected int
}

// perfRun is one perfdhcp run: DISCOVER-OFFER and REQUEST-ACK.
type perfRun struct{ do, ra perfStats }

func runFullDHCP(ctx context.Context, env *Env) ([]Result, error) {
	var rs []Result
	var errs []error
	if r, err := inProcessFull(ctx, env); err != nil {
		errs = append(errs, fmt.Errorf("in process: %w", err))
	} else {
		rs = append(rs, r...)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(env.Out, "perfdhcp: skipped: needs root (network namespaces)")
		return rs, errors.Join(errs...)
	}
	perfdhcp, err := exec.LookPath("perfdhcp")
	if err != nil {
		fmt.Fprintln(env.Out, "perfdhcp: skipped: perfdhcp missing (apt-get install kea-admin)")
		return rs, errors.Join(errs...)
	}
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		fmt.Fprintln(env.Out, "perfdhcp: skipped: dnsmasq missing (apt-get install dnsmasq-base)")
		return rs, errors.Join(errs...)
	}
	lan, err := newPerfLAN(2)
	if err != nil {
		return rs, errors.Join(append(errs, err)...)
	}
	defer lan.close()
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		errs = append(errs, fmt.Errorf("PostgreSQL: %w", err))
	} else {
		defer pg.Stop()
	}
	fmt.Fprintf(env.Out, "perfdhcp -4 -l br0 -r RATE -R %d -p %d (a relay, giaddr %s) against overboot's Full (SQLite state store; PostgreSQL, a private cluster with fsync; fresh each run) and dnsmasq --no-ping (fresh lease file each run), pool %s-%s\n",
		fullClients, fullSeconds, pdClientIP, pdPoolStart, pdPoolEnd)
	row := func(rate int, name string, x perfStats) {
		fmt.Fprintf(env.Out, "  %d/s %-8s %s: sent %d received %d drops %.1f %% avg %.3f ms max %.3f ms\n",
			rate, name, exchangeName(x), x.sent, x.recv, x.drops, x.avgMS, x.maxMS)
	}
	for _, rate := range fullRates {
		runs := map[string]perfRun{}
		for _, kind := range []string{"sqlite", "postgres"} {
			if kind == "postgres" && pg == nil {
				continue
			}
			r, err := lan.runOverboot(ctx, env, perfdhcp, pg, kind, rate)
			if err != nil {
				errs = append(errs, fmt.Errorf("overboot (%s) at %d/s: %w", kind, rate, err))
				continue
			}
			runs[kind] = r
		}
		ref, err := lan.runDnsmasq(ctx, env, perfdhcp, dnsmasq, rate)
		if err != nil {
			errs = append(errs, fmt.Errorf("dnsmasq at %d/s: %w", rate, err))
			continue
		}
		for _, kind := range []string{"sqlite", "postgres"} {
			ours, ok := runs[kind]
			if !ok {
				continue
			}
			note := "SQLite store"
			if kind == "postgres" {
				note = "PostgreSQL store"
			}
			for _, x := range []struct {
				name string
				o, r perfStats
			}{{"DISCOVER-OFFER", ours.do, ref.do}, {"REQUEST-ACK", ours.ra, ref.ra}} {
				x.o.name, x.r.name = x.name, x.name
				row(rate, kind, x.o)
				if kind == "sqlite" || runs["sqlite"] == (perfRun{}) {
					row(rate, "dnsmasq", x.r)
				}
				res := func(metric string, o, r float64, better, goal string) Result {
					return Result{Section: "dhcp", Metric: fmt.Sprintf("perfdhcp %d/s %s %s (%s)", rate, short(x.name), metric, kind), Ours: o, Ref: r, RefName: "dnsmasq", Better: better, Goal: goal, Note: note}
				}
				goal := "report"
				if rate == 2000 {
					goal = "= 0"
				}
				rs = append(rs, res("drops %", x.o.drops, x.r.drops, "lower", goal))
				goal = "report"
				if rate == 2000 {
					goal = "< 10 ms"
				}
				rs = append(rs, res("avg ms", x.o.avgMS, x.r.avgMS, "lower", goal), res("max ms", x.o.maxMS, x.r.maxMS, "lower", "report"))
				if x.o.nonUnique > 0 || x.o.rejected > 0 {
					errs = append(errs, fmt.Errorf("overboot (%s) at %d/s: perfdhcp counts %d non unique addresses and %d rejected leases", kind, rate, x.o.nonUnique, x.o.rejected))
				}
			}
		}
	}
	if pg != nil {
		r, dups, err := lan.runTwo(ctx, env, perfdhcp, pg, twoRate)
		if err != nil {
			errs = append(errs, fmt.Errorf("two servers at %d/s: %w", twoRate, err))
		} else {
			for _, x := range []perfStats{r.do, r.ra} {
				row(twoRate, "2 x pg", x)
				rs = append(rs,
					Result{Section: "dhcp", Metric: fmt.Sprintf("perfdhcp %d/s %s drops %% (two servers, PostgreSQL)", twoRate, short(x.name)), Ours: x.drops, RefName: "-", Better: "lower", Goal: "report"},
					Result{Section: "dhcp", Metric: fmt.Sprintf("perfdhcp %d/s %s avg ms (two servers, PostgreSQL)", twoRate, short(x.name)), Ours: x.avgMS, RefName: "-", Better: "lower", Goal: "report"})
			}
			fmt.Fprintf(env.Out, "  %d/s two servers: duplicates %d (perfdhcp non unique %d + %d, addresses two MACs hold in the store %d)\n",
				twoRate, dups+r.do.nonUnique+r.ra.nonUnique, r.do.nonUnique, r.ra.nonUnique, dups)
			rs = append(rs, Result{Section: "dhcp", Metric: fmt.Sprintf("perfdhcp %d/s duplicates (two servers, PostgreSQL)", twoRate), Ours: float64(dups + r.do.nonUnique + r.ra.nonUnique), RefName: "-", Better: "lower", Goal: "= 0"})
			if n := dups + r.do.nonUnique + r.ra.nonUnique; n > 0 {
				errs = append(errs, fmt.Errorf("two servers at %d/s: %d duplicates", twoRate, n))
			}
		}
	}
	return rs, errors.Join(errs...)
}

func exchangeName(x perfStats) string { return x.name }

func short(exchange string) string {
	if exchange == "DISCOVER-OFFER" {
		return "D-O"
	}
	return "R-A"
}

// perfLAN is a bridge br0 in a client namespace (perfdhcp, a relay,
// pdClientIP/24 on the bridge) and n server namespaces, each joined to
// the bridge by a veth pair whose server end, pdServerDev, has the
// server's address (pdServerIP, then pdServer2IP).
type perfLAN struct {
	srvNS []string
	cliNS string
	undo  []func()
}

func newPerfLAN(n int) (lan *perfLAN, err error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("ip (iproute2) missing: %w", err)
	}
	id := strconv.Itoa(os.Getpid())
	lan = &perfLAN{cliNS: "obbench-pd-cli-" + id}
	for i := range n {
		lan.srvNS = append(lan.srvNS, fmt.Sprintf("obbench-pd-srv%d-%s", i, id))
	}
	defer func() {
		if err != nil {
			lan.close()
		}
	}()
	for _, ns := range append([]string{lan.cliNS}, lan.srvNS...) {
		if err := ipCmd("netns", "add", ns); err != nil {
			return nil, err
		}
		lan.undo = append(lan.undo, func() {
			if err := ipCmd("netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "overboot-bench: dhcp:", err)
			}
		})
		if err := ipCmd("-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	for _, args := range [][]string{
		{"-n", lan.cliNS, "link", "add", "br0", "type", "bridge"},
		{"-n", lan.cliNS, "addr", "add", pdClientIP + "/24", "dev", "br0"},
		{"-n", lan.cliNS, "link", "set", "br0", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return nil, err
		}
	}
	for i, ns := range lan.srvNS {
		port := fmt.Sprintf("%s%d", pdClientDev, i)
		ip := []string{pdServerIP, pdServer2IP}[i]
		for _, args := range [][]string{
			{"link", "add", pdServerDev, "netns", ns, "type", "veth", "peer", "name", port, "netns", lan.cliNS},
			{"-n", ns, "addr", "add", ip + "/24", "dev", pdServerDev},
			{"-n", ns, "link", "set", pdServerDev, "up"},
			{"-n", lan.cliNS, "link", "set", port, "master", "br0"},
			{"-n", lan.cliNS, "link", "set", port, "up"},
		} {
			if err := ipCmd(args...); err != nil {
				return nil, err
			}
		}
	}
	return lan, nil
}

func (l *perfLAN) close() {
	for _, f := range slices.Backward(l.undo) {
		f()
	}
	l.undo = nil
}

// perfdhcp runs perfdhcp at rate from the client namespace, sending to
// dst ("": the broadcast address, every server), and parses its report.
func (l *perfLAN) perfdhcp(ctx context.Context, env *Env, bin string, rate int, dst string) (perfRun, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(fullSeconds+30)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.cliNS, bin, "-4", "-l", "br0",
		"-r", strconv.Itoa(rate), "-R", strconv.Itoa(fullClients), "-p", strconv.Itoa(fullSeconds), "-W", "1000000")
	if dst != "" {
		cmd.Args = append(cmd.Args, dst)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) { // 3: some packets dropped
		return perfRun{}, fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	r, err := parsePerfdhcp(string(out))
	if err != nil {
		return perfRun{}, fmt.Errorf("%s: %w:\n%s", cmd, err, out)
	}
	return r, nil
}

// parsePerfdhcp reads perfdhcp's statistics for DISCOVER-OFFER and
// REQUEST-ACK.
func parsePerfdhcp(out string) (perfRun, error) {
	var r perfRun
	for _, x := range []struct {
		name string
		s    *perfStats
	}{{"DISCOVER-OFFER", &r.do}, {"REQUEST-ACK", &r.ra}} {
		i := strings.Index(out, "***Statistics for: "+x.name+"***")
		if i < 0 {
			return perfRun{}, fmt.Errorf("no statistics for %s", x.name)
		}
		block := out[i:]
		if j := strings.Index(block[3:], "***Statistics for:"); j >= 0 {
			block = block[:j+3]
		}
		num := func(key string) (float64, error) {
			m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `: ([0-9.]+|nan|inf)`).FindStringSubmatch(block)
			if m == nil {
				return 0, fmt.Errorf("%s: no %q", x.name, key)
			}
			if m[1] == "nan" || m[1] == "inf" {
				return 0, nil
			}
			return strconv.ParseFloat(m[1], 64)
		}
		var err error
		var v [7]float64
		for k, key := range []string{"sent packets", "received packets", "drops ratio", "avg delay", "max delay", "non unique addresses", "rejected leases"} {
			if v[k], err = num(key); err != nil {
				return perfRun{}, err
			}
		}
		*x.s = perfStats{name: x.name, sent: int(v[0]), recv: int(v[1]), drops: v[2], avgMS: v[3], maxMS: v[4], nonUnique: int(v[5]), rejected: int(v[6])}
	}
	return r, nil
}

// pdFull is a Full as `overboot serve` makes it for the perfdhcp runs,
// at ip on pdServerDev, its leases in db.
func pdFull(db *state.DB, ip string) (*dhcp.Full, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return dhcp.NewFull(dhcp.FullConfig{Interface: pdServerDev, ServerIP: netip.MustParseAddr(ip),
		Subnet: netip.MustParsePrefix(pdServerIP + "/24").Masked(), Start: netip.MustParseAddr(pdPoolStart), End: netip.MustParseAddr(pdPoolEnd),
		LeaseTime: 10 * time.Minute}, server.DHCPLeases(db), dhcp.Policy{ScriptURL: dhcpURL + "/boot.ipxe", HTTPBootURL: dhcpURL + "/boot/ipxe.efi"}, log)
}

// openStore opens a fresh store of kind ("sqlite" in dir, "postgres": a
// new database in pg).
func openStore(ctx context.Context, kind, dir string, pg *pgtest.Cluster) (*state.DB, error) {
	if kind == "sqlite" {
		return state.Open(filepath.Join(dir, state.FileName))
	}
	conn, err := pg.CreateDatabase(ctx, fmt.Sprintf("bench%d", pgDatabases.Add(1)))
	if err != nil {
		return nil, err
	}
	return state.OpenPostgres(ctx, conn, "")
}

var pgDatabases atomic.Int64

// serveFull serves f on pdServerDev's port 67 in namespace ns until stop
// is called, which returns Serve's error.
func serveFull(ctx context.Context, ns string, f *dhcp.Full) (stop func() error, err error) {
	conn, err := inNetNS(ns, func() (*net.UDPConn, error) {
		return dhcp.ListenInterface(ctx, pdServerDev, dhcpv4.ServerPort)
	})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- f.Serve(sctx, conn) }()
	return func() error {
		cancel()
		err := <-served
		conn.Close()
		return err
	}, nil
}

// runOverboot serves a Full as `overboot serve` does (a
// dhcp.ListenInterface socket, the state store of kind behind
// server.DHCPLeases, log at Info into a discarded text handler) in the
// first server namespace, runs perfdhcp against it, and stops it.
func (l *perfLAN) runOverboot(ctx context.Context, env *Env, perfdhcp string, pg *pgtest.Cluster, kind string, rate int) (perfRun, error) {
	dir, err := os.MkdirTemp("", "overboot-bench-dhcp-")
	if err != nil {
		return perfRun{}, err
	}
	defer os.RemoveAll(dir)
	db, err := openStore(ctx, kind, dir, pg)
	if err != nil {
		return perfRun{}, err
	}
	defer db.Close()
	f, err := pdFull(db, pdServerIP)
	if err != nil {
		return perfRun{}, err
	}
	stop, err := serveFull(ctx, l.srvNS[0], f)
	if err != nil {
		return perfRun{}, err
	}
	r, err := l.perfdhcp(ctx, env, perfdhcp, rate, pdServerIP)
	if serr := stop(); err == nil && serr != nil {
		err = serr
	}
	return r, err
}

// runTwo serves two Fulls, each with its own handle on one new
// PostgreSQL database, in the two server namespaces, runs perfdhcp
// against both (the broadcast address), stops them, and returns
// perfdhcp's figures and how many addresses two MACs hold live in the
// store.
func (l *perfLAN) runTwo(ctx context.Context, env *Env, perfdhcp string, pg *pgtest.Cluster, rate int) (perfRun, int, error) {
	conn, err := pg.CreateDatabase(ctx, fmt.Sprintf("bench%d", pgDatabases.Add(1)))
	if err != nil {
		return perfRun{}, 0, err
	}
	var dbs []*state.DB
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	var stops []func() error
	for i, ip := range []string{pdServerIP, pdServer2IP} {
		db, err := state.OpenPostgres(ctx, conn, "")
		if err != nil {
			return perfRun{}, 0, err
		}
		dbs = append(dbs, db)
		f, err := pdFull(db, ip)
		if err != nil {
			return perfRun{}, 0, err
		}
		stop, err := serveFull(ctx, l.srvNS[i], f)
		if err != nil {
			return perfRun{}, 0, err
		}
		stops = append(stops, stop)
	}
	r, err := l.perfdhcp(ctx, env, perfdhcp, rate, "")
	for _, stop := range stops {
		if serr := stop(); err == nil && serr != nil {
			err = serr
		}
	}
	if err != nil {
		return r, 0, err
	}
	all, err := dbs[0].Leases(ctx)
	if err != nil {
		return r, 0, err
	}
	held, dups := map[string]bool{}, 0
	for _, l := range all {
		if !l.Expires.After(time.Now()) {
			continue
		}
		if held[l.IP] {
			dups++
		}
		held[l.IP] = true
	}
	return r, dups, nil
}

// runDnsmasq runs dnsmasq (no DNS, --no-ping, the same pool, its lease
// file in a temp dir, no configuration file of the machine's) in the
// server namespace, perfdhcp against it, and stops it.
func (l *perfLAN) runDnsmasq(ctx context.Context, env *Env, perfdhcp, bin string, rate int) (perfRun, error) {
	dir, err := os.MkdirTemp("", "overboot-bench-dnsmasq-")
	if err != nil {
		return perfRun{}, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.srvNS[0], bin, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-ping",
		"--user=root", "--group=root", "--interface="+pdServerDev, "--bind-interfaces", "--no-resolv", "--no-hosts",
		"--dhcp-range="+pdPoolStart+","+pdPoolEnd+",255.255.255.0,10m", "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"), "--log-facility="+filepath.Join(dir, "log"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return perfRun{}, fmt.Errorf("dnsmasq: %w", err)
	}
	defer func() {
		cmd.Process.Signal(unix.SIGTERM) // dnsmasq ignores SIGINT
		cmd.Wait()
	}()
	// dnsmasq is listening once its pid file is there.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
			break
		}
		if i == 100 {
			return perfRun{}, fmt.Errorf("dnsmasq did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return l.perfdhcp(ctx, env, perfdhcp, rate, pdServerIP)
}

// inProcessFull: see runFullDHCP.
func inProcessFull(ctx context.Context, env *Env) ([]Result, error) {
	dir, err := os.MkdirTemp("", "overboot-bench-dhcp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	db, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// No packet leaves the process: 198.18.0.0/15 (RFC 2544, for
	// benchmarks) is only numbers here.
	f, err := dhcp.NewFull(dhcp.FullConfig{Interface: "bench", ServerIP: netip.MustParseAddr("198.18.0.1"),
		Subnet: netip.MustParsePrefix("198.18.0.0/16"), Start: netip.MustParseAddr("198.18.1.0"), End: netip.MustParseAddr("198.18.255.254"),
		LeaseTime: time.Hour}, server.DHCPLeases(db), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	done := make([]time.Time, inProcClients)
	var next atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range inProcWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= inProcClients {
					return
				}
				mac := net.HardwareAddr{0x02, 0x0c, 0, 0, byte(i >> 8), byte(i)}
				if !dora(ctx, f, mac) {
					failed.Add(1)
				}
				mu.Lock()
				done[n] = time.Now()
				n++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	rate := func(from, to int) float64 {
		t0 := start
		if from > 0 {
			t0 = done[from-1]
		}
		return float64(to-from) / done[to-1].Sub(t0).Seconds()
	}
	first, late := rate(0, 500), rate(2000, inProcClients)
	fmt.Fprintf(env.Out, "in process (SQLite state store, %d workers, DISCOVER + REQUEST of never-seen MACs): first 500 %.0f clients/s, after 2,000 leases %.0f clients/s; %d of %d failed\n",
		inProcWorkers, first, late, failed.Load(), inProcClients)
	rs := []Result{
		{Section: "dhcp", Metric: "Full in process, new clients/s, first 500", Ours: first, RefName: "-", Better: "higher", Goal: "report", Note: "SQLite store"},
		{Section: "dhcp", Metric: "Full in process, new clients/s, after 2,000", Ours: late, RefName: "-", Better: "higher", Goal: "flat", Note: fmt.Sprintf("%.2fx the first 500", late/first)},
	}
	if failed.Load() > 0 {
		return rs, fmt.Errorf("%d of %d in-process exchanges failed", failed.Load(), inProcClients)
	}
	return rs, nil
}

// dora runs DISCOVER, then REQUEST of the offered address, through f's
// handler, and reports whether mac got an ACK.
func dora(ctx context.Context, f *dhcp.Full, mac net.HardwareAddr) bool {
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ClientPort}
	d, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		return false
	}
	offer, _ := f.Handle(ctx, d.ToBytes(), peer)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		return false
	}
	r, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		return false
	}
	ack, _ := f.Handle(ctx, r.ToBytes(), peer)
	return ack != nil && ack.MessageType() == dhcpv4.MessageTypeAck
}
