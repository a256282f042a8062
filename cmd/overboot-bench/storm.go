package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/nginxtest"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/state"
)

// The storm section: 1,000 simulated machines (stormsim.go) power on at
// once and boot a lazy root, each from its own loopback address, against
// four set-ups in one run: one server on SQLite; one on PostgreSQL; two
// on PostgreSQL behind nginx (proxy_cache, sliced Range); two on
// PostgreSQL, one killed (SIGKILL) when 30 % of the machines have sent
// their last report. Servers are `overboot serve` child processes (their
// RSS is their own; the kill is a real process death); PostgreSQL is a
// private cluster (internal/pgtest), nginx a private one
// (internal/nginxtest). Nothing is asserted on timings: the figures are
// for people to read.
func stormSection() Section {
	return Section{Name: "storm", Run: runStorm}
}

// The storm's sizes. The artifacts are synthetic files smaller than real
// ones (a Debian kernel is about 8 MB, overboot's initramfs 5.5 MB), so
// that 1,000 machines in four set-ups stay within a few minutes on two
// cores; every byte of them still crosses HTTP.
const (
	stormMachines  = 1000
	stormKernel    = 2 << 20  // bytes
	stormInitramfs = 3 << 20  // bytes
	stormImage     = 64 << 20 // the lazy root's image, bytes
	stormKillAt    = 0.30     // of the machines done, when a server is killed
	stormChunk     = 256 << 10
)

// stormImageReads stand for a boot's reads of a lazy root, as the keeper
// asks them: whole 256 KiB chunks (its chunk size), single ones for
// scattered reads and runs of four (1 MiB: its read-ahead request) for
// files read through, the first chunk first (its Open). 9.25 MiB in 16
// requests: fewer than a real systemd boot reads (tens of MB), chosen to
// keep the run bearable; the bytes scale with the list.
func stormImageReads() []byteRange {
	chunks := [][2]int64{ // first chunk, chunks
		{0, 1}, {1, 4}, {17, 1}, {40, 4}, {61, 1}, {96, 4}, {130, 1}, {131, 4},
		{150, 1}, {180, 4}, {201, 1}, {202, 4}, {230, 1}, {240, 4}, {251, 1}, {255, 1},
	}
	out := make([]byteRange, len(chunks))
	for i, c := range chunks {
		out[i] = byteRange{c[0] * stormChunk, c[1] * stormChunk}
	}
	return out
}

// stormTreeReads are the dm-verity tree's reads: its first chunk (the
// keeper's Open) and the next, which hold the hashes of the whole
// image's level 0 for a 64 MiB image (clipped to the tree's size).
func stormTreeReads() []byteRange {
	return []byteRange{{0, stormChunk}, {stormChunk, stormChunk}}
}

func stormSpecDefault() *stormSpec {
	return &stormSpec{ImageReads: stormImageReads(), TreeReads: stormTreeReads(), Attempts: 4, Retry: time.Second, Timeout: 60 * time.Second}
}

// writeStormFiles writes the synthetic kernel, initramfs and root image
// (random bytes; the image starts as a squashfs does, which the server
// checks of a lazy root, and is whole 4 KiB blocks) into dir.
func writeStormFiles(dir string, kernel, initramfs, image int) error {
	if image%4096 != 0 {
		return fmt.Errorf("image of %d bytes: want whole 4 KiB blocks", image)
	}
	rng := rand.NewChaCha8([32]byte{'s', 't', 'o', 'r', 'm'})
	for _, f := range []struct {
		name string
		n    int
	}{{"kernel", kernel}, {"initramfs", initramfs}, {"root", image}} {
		b := make([]byte, f.n)
		rng.Read(b)
		if f.name == "root" {
			copy(b, "hsqs")
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// stormProfile is the servers' profile: a lazy root, a RAM upper,
// anyone may boot (enroll = open), no bound on the machines.
func stormProfile(files string) string {
	return fmt.Sprintf("[profile default]\nkernel = %[1]s/kernel\ninitramfs = %[1]s/initramfs\nroot = %[1]s/root\nlower-mode = lazy\nenroll = open\nmax-machines = unlimited\n", files)
}

// stormSetup is one of the storm's configurations.
type stormSetup struct {
	Name     string
	Servers  int
	Postgres bool
	Nginx    bool
	Kill     bool // kill the first server at stormKillAt
}

func stormSetups() []stormSetup {
	return []stormSetup{
		{Name: "sqlite", Servers: 1},
		{Name: "postgres", Servers: 1, Postgres: true},
		{Name: "2pg+nginx", Servers: 2, Postgres: true, Nginx: true},
		{Name: "2pg,1killed", Servers: 2, Postgres: true, Kill: true},
	}
}

// stormFigures are one set-up's figures.
type stormFigures struct {
	Setup            stormSetup
	Done, Lost       int
	Failed           int // requests that failed
	FailedKilled     int // of them, to the killed server from the kill on
	Retried          int // machines that booted more than once
	Doc, Last        []time.Duration
	Wall, KillAt     time.Duration
	RSS              []float64 // each server's VmHWM, MB
	PGPeak           int       // connections to the store's database
	Direct           int64     // artifact bytes machines read from the servers
	ToCache          int64     // bytes the servers sent nginx (its upstream bytes, headers included)
	FromCache        int64     // bytes nginx served from its cache (HIT)
	Passed           int64     // bytes nginx passed on from the servers (MISS, or not cached)
	CacheHits, Cache int       // nginx's requests answered from the cache, of all cached-location requests
	Recorded         int       // machines whose last report the store holds
	Latency          [nControl][]time.Duration
	LogLines         []int // each server's WARN and ERROR log lines
	// Overflows are the connections the kernel dropped at a full accept
	// queue during the storm (TcpExt ListenOverflows, the whole host's):
	// their clients try again after 1 s, 3 s, 7 s...
	Overflows int64
	Errs      []error // a sample of the failures
}

func runStorm(ctx context.Context, env *Env) ([]Result, error) {
	bin, err := filepath.Abs(filepath.Join(env.BuildDir, "overboot"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (make build)", bin, err)
	}
	if err := os.MkdirAll(env.WorkDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(env.WorkDir, "storm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if tmp, err = filepath.Abs(tmp); err != nil {
		return nil, err
	}
	if err := writeStormFiles(tmp, stormKernel, stormInitramfs, stormImage); err != nil {
		return nil, err
	}
	spec := stormSpecDefault()
	var perMachine int64 = stormKernel + stormInitramfs
	for _, r := range spec.ImageReads {
		perMachine += r.Len
	}
	fmt.Fprintf(env.Out, "%d machines at once per set-up, each from its own address 127.X.Y.Z: GET /ipxe?mac= (enroll = open), kernel (%d MiB) and initramfs (%d MiB) from the script's first URL that answers, GET the document, 8 reports, %d Range reads of the %d MiB lazy root (%d MiB) and %d of its dm-verity tree, 7 more reports ending with switch_root running; a failed boot is begun again through the next server offered (at most %d times)\n",
		stormMachines, stormKernel>>20, stormInitramfs>>20, len(spec.ImageReads), stormImage>>20, (perMachine-stormKernel-stormInitramfs)>>20, len(spec.TreeReads), spec.Attempts)
	fmt.Fprintf(env.Out, "servers: %s serve, child processes; PostgreSQL: a private cluster (initdb, unix socket, fsync off); nginx: proxy_cache, 1 MiB slices\n", bin)

	fmt.Fprintf(env.Out, "load average before (the machine is shared): %s\n", loadAvg())
	t0 := time.Now()
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	fmt.Fprintf(env.Out, "PostgreSQL started in %.1fs (%s)\n", time.Since(t0).Seconds(), pg.Dir)

	var figs []stormFigures
	var errs []error
	for i, su := range stormSetups() {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(env.Out, "-- %s: %d server(s)%s%s%s\n", su.Name, su.Servers, map[bool]string{true: " on PostgreSQL", false: " on SQLite"}[su.Postgres],
			map[bool]string{true: ", nginx in front (cache =)", false: ""}[su.Nginx], map[bool]string{true: ", the first killed (SIGKILL) at 30 % done", false: ""}[su.Kill])
		f, err := runStormSetup(ctx, env, bin, tmp, pg, i, su, spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", su.Name, err))
			continue
		}
		printStormFigures(env.Out, f)
		fmt.Fprintf(env.Out, "  load average after it (the machine is shared): %s\n", loadAvg())
		figs = append(figs, f)
	}
	printStormTable(env.Out, figs)
	return stormResults(figs), errors.Join(errs...)
}

// runStormSetup runs one set-up: its store, nginx, servers, the storm.
func runStormSetup(ctx context.Context, env *Env, bin, tmp string, pg *pgtest.Cluster, idx int, su stormSetup, spec *stormSpec) (stormFigures, error) {
	f := stormFigures{Setup: su}
	dir := filepath.Join(tmp, fmt.Sprintf("setup%d", idx))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, err
	}
	var conn, dbName string
	if su.Postgres {
		dbName = fmt.Sprintf("storm_%d_%d", idx, time.Now().UnixNano()%1e6)
		var err error
		if conn, err = pg.CreateDatabase(ctx, dbName); err != nil {
			return f, err
		}
	}
	ports := make([]string, su.Servers)
	for i := range ports {
		ports[i] = freePort()
	}
	var ng *nginxtest.Nginx
	if su.Nginx {
		ups := make([]string, su.Servers)
		for i, p := range ports {
			ups[i] = "127.0.0.1:" + p
		}
		var err error
		// Each machine holds a connection or two; a proxied request two.
		// nginx's default accept queue (511) drops hundreds of the
		// machines' first SYNs (they try again 1 s later): a site
		// expecting storms raises it, as here, to the kernel's somaxconn.
		if ng, err = nginxtest.Run(nginxtest.Options{Upstreams: ups, Slice: "1m", Connections: 8192, Backlog: 4096}); err != nil {
			return f, err
		}
		defer ng.Stop()
	}
	servers := make([]*child, su.Servers)
	defer func() {
		for _, c := range servers {
			if c != nil {
				c.stop()
			}
		}
	}()
	for i := range servers {
		var b strings.Builder
		fmt.Fprintf(&b, "[server]\nname = storm%d\nlisten = 127.0.0.1:%s\ndata = %s\n", i, ports[i], filepath.Join(dir, fmt.Sprintf("data%d", i)))
		if conn != "" {
			fmt.Fprintf(&b, "store = %s\n", conn)
		}
		if ng != nil {
			fmt.Fprintf(&b, "cache = %s\n", ng.URL)
		}
		// The other servers: the registry lists them by itself, but
		// leaves loopback addresses out of what machines are told.
		var others []string
		for j, p := range ports {
			if j != i {
				others = append(others, "http://127.0.0.1:"+p)
			}
		}
		if len(others) > 0 {
			fmt.Fprintf(&b, "mirrors = %s\n", strings.Join(others, " "))
		}
		b.WriteString("\n" + stormProfile(tmp))
		confPath := filepath.Join(dir, fmt.Sprintf("server%d.conf", i))
		if err := os.WriteFile(confPath, []byte(b.String()), 0o644); err != nil {
			return f, err
		}
		c, err := startServe(ctx, bin, confPath, filepath.Join(dir, fmt.Sprintf("server%d.log", i)), "http://127.0.0.1:"+ports[i])
		if err != nil {
			return f, fmt.Errorf("server %d: %w", i, err)
		}
		servers[i] = c
	}

	// The watchers: PostgreSQL's connections, progress, the kill.
	var pgMon *sql.DB
	if su.Postgres {
		cfg, err := pgx.ParseConfig(pg.Conn("postgres"))
		if err != nil {
			return f, err
		}
		pgMon = stdlib.OpenDB(*cfg)
		defer pgMon.Close()
	}
	machines := make([]stormMachine, stormMachines)
	for i := range machines {
		own := i % su.Servers
		m := stormMachine{MAC: ctlMAC(0x50+idx, i), Addr: ctlAddr(20+idx, i)}
		for j := range su.Servers {
			m.Servers = append(m.Servers, servers[(own+j)%su.Servers].base)
		}
		machines[i] = m
	}
	var prog stormProgress
	outs := make([]machineOutcome, len(machines))
	start := time.Now()
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	var killedHWM float64
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		lastPrint := time.Now()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			if pgMon != nil {
				var n int
				if err := pgMon.QueryRowContext(wctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, dbName).Scan(&n); err == nil && n > f.PGPeak {
					f.PGPeak = n
				}
			}
			if su.Kill && f.KillAt == 0 && float64(prog.done.Load()) >= stormKillAt*stormMachines {
				killedHWM, _ = servers[0].rss()
				f.KillAt = time.Since(start)
				servers[0].kill()
				fmt.Fprintf(env.Out, "  %5.1fs: killed server 0 (SIGKILL) with %d machines done\n", f.KillAt.Seconds(), prog.done.Load())
			}
			if time.Since(lastPrint) >= 2*time.Second {
				lastPrint = time.Now()
				fmt.Fprintf(env.Out, "  %5.1fs: %d documents, %d done, %d failed requests, %d boots begun again\n",
					time.Since(start).Seconds(), prog.docs.Load(), prog.done.Load(), prog.failed.Load(), prog.retries.Load())
			}
		}
	}()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			outs[i] = spec.run(ctx, machines[i], start, &prog)
		}()
	}
	over0 := listenOverflows()
	start = time.Now()
	close(gate)
	wg.Wait()
	f.Wall = time.Since(start)
	f.Overflows = listenOverflows() - over0
	stopWatch()
	watchers.Wait()
	if ctx.Err() != nil {
		return f, ctx.Err()
	}

	for i, c := range servers {
		hwm, _ := c.rss()
		if su.Kill && i == 0 {
			hwm = killedHWM
		}
		f.RSS = append(f.RSS, hwm)
	}
	killedBase := ""
	if su.Kill {
		killedBase = servers[0].base
	}
	for _, o := range outs {
		if o.Done {
			f.Done++
			f.Doc = append(f.Doc, o.ToDoc)
			f.Last = append(f.Last, o.ToLast)
		} else {
			f.Lost++
			f.Errs = append(f.Errs, fmt.Errorf("lost after %d attempts: %w", o.Attempts, o.Err))
		}
		if o.Attempts > 1 {
			f.Retried++
		}
		for k := range nControl {
			f.Latency[k] = append(f.Latency[k], o.Latency[k]...)
		}
		for _, fl := range o.Failures {
			f.Failed++
			if fl.Base == killedBase && f.KillAt > 0 && fl.At >= f.KillAt {
				f.FailedKilled++
			} else if len(f.Errs) < 50 {
				f.Errs = append(f.Errs, fl.Err)
			}
		}
		for base, n := range o.Bytes {
			if ng == nil || base != ng.URL {
				f.Direct += n
			}
		}
	}
	if ng != nil {
		// nginx logs a request after its last byte: wait for them all.
		time.Sleep(200 * time.Millisecond)
		log, err := ng.Log()
		if err != nil {
			return f, err
		}
		for _, e := range log {
			f.ToCache += e.UpstreamBytes
			if e.Cache == "-" {
				continue
			}
			f.Cache++
			if e.Cache == "HIT" {
				f.CacheHits++
				f.FromCache += e.Bytes
			} else {
				f.Passed += e.Bytes
			}
		}
	}
	// What the store holds: stop the servers first (SQLite is theirs).
	for _, c := range servers {
		c.stop()
		lines, _ := c.logIssues()
		f.LogLines = append(f.LogLines, len(lines))
		for j, l := range lines {
			if j == 3 {
				fmt.Fprintf(env.Out, "  ... %d more\n", len(lines)-3)
				break
			}
			fmt.Fprintf(env.Out, "  server %s log: %s\n", c.base, tail(l, 1))
		}
	}
	db, err := state.OpenStore(ctx, state.Where{Data: filepath.Join(dir, "data0"), Postgres: conn})
	if err != nil {
		return f, err
	}
	defer db.Close()
	macs := make([]string, len(machines))
	for i, m := range machines {
		macs[i] = m.MAC
	}
	if f.Recorded, err = lastReported(ctx, db, macs); err != nil {
		return f, err
	}
	return f, nil
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// listenOverflows reads the kernel's count of connections dropped at a
// full accept queue (-1 when it cannot).
func listenOverflows() int64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return -1
	}
	// Pairs of lines: "TcpExt: names..." then "TcpExt: values...".
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "ListenOverflows" {
				var v int64
				fmt.Sscan(values[j], &v)
				return v
			}
		}
	}
	return -1
}

// lastReported counts the machines whose latest boot in the store has
// the agent's last report (switch_root running).
func lastReported(ctx context.Context, db *state.DB, macs []string) (int, error) {
	n := 0
	for _, mac := range macs {
		bs, err := db.Boots(ctx, mac, 1)
		if err != nil {
			return n, err
		}
		if len(bs) == 0 {
			continue
		}
		evs, err := db.BootEvents(ctx, bs[0].ID)
		if err != nil {
			return n, err
		}
		if slices.ContainsFunc(evs, func(e state.BootEvent) bool {
			return e.Source == "agent" && e.Phase == boot.PhaseSwitchRoot && e.Outcome == boot.OutcomeRunning
		}) {
			n++
		}
	}
	return n, nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func printStormFigures(w io.Writer, f stormFigures) {
	fmt.Fprintf(w, "  %s: %d done, %d lost, %d failed requests (%d of them to the killed server), %d machines booted again; %.1fs wall\n",
		f.Setup.Name, f.Done, f.Lost, f.Failed, f.FailedKilled, f.Retried, f.Wall.Seconds())
	fmt.Fprintf(w, "  to the document p50 %.0f ms, p99 %.0f ms; to the last report p50 %.0f ms, p99 %.0f ms (from the storm's start)\n",
		pct(f.Doc, 50), pct(f.Doc, 99), pct(f.Last, 50), pct(f.Last, 99))
	for k := range nControl {
		fmt.Fprintf(w, "  %-20s n=%-6d p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", controlNames[k], len(f.Latency[k]), pct(f.Latency[k], 50), pct(f.Latency[k], 99), pct(f.Latency[k], 100))
	}
	pgc := "-"
	if f.Setup.Postgres {
		pgc = fmt.Sprint(f.PGPeak)
	}
	fmt.Fprintf(w, "  server VmHWM %s MB; PostgreSQL connections peak %s; the store holds the last report of %d machines; server log WARN/ERROR lines %v; connections dropped at a full accept queue %d\n", joinFloats(f.RSS), pgc, f.Recorded, f.LogLines, f.Overflows)
	fmt.Fprintf(w, "  artifact bytes: %.0f MiB from the servers to machines, %.0f MiB from the servers to nginx, %.0f MiB from nginx's cache (%d of %d requests HIT), %.0f MiB passed through\n",
		mb(f.Direct), mb(f.ToCache), mb(f.FromCache), f.CacheHits, f.Cache, mb(f.Passed))
	if len(f.Errs) > 0 {
		printErrors(&Env{Out: w}, f.Errs)
	}
}

func joinFloats(fs []float64) string {
	s := make([]string, len(fs))
	for i, v := range fs {
		s[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(s, " + ")
}

// printStormTable prints the set-ups side by side (the table in
// docs/benchmarks.md).
func printStormTable(w io.Writer, figs []stormFigures) {
	fmt.Fprintln(w, "| set-up | done | lost | failed requests | to document p50 / p99 | to last report p50 / p99 | server peak RSS | PostgreSQL connections | from servers | from cache |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, f := range figs {
		failed := fmt.Sprint(f.Failed)
		if f.Setup.Kill {
			failed = fmt.Sprintf("%d (%d to the killed server)", f.Failed, f.FailedKilled)
		}
		pgc := "-"
		if f.Setup.Postgres {
			pgc = fmt.Sprint(f.PGPeak)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %.2f / %.2f s | %.2f / %.2f s | %s MB | %s | %.0f MiB | %.0f MiB |\n",
			f.Setup.Name, f.Done, f.Lost, failed, pct(f.Doc, 50)/1000, pct(f.Doc, 99)/1000, pct(f.Last, 50)/1000, pct(f.Last, 99)/1000,
			joinFloats(f.RSS), pgc, mb(f.Direct+f.ToCache), mb(f.FromCache))
	}
}

func stormResult(metric string, v float64, goal, note string) Result {
	return Result{Section: "storm", Metric: metric, Ours: v, RefName: "-", Better: "lower", Goal: goal, Note: note}
}

func stormResults(figs []stormFigures) []Result {
	var rs []Result
	var sqlite *stormFigures
	for i, f := range figs {
		n := f.Setup.Name
		if n == "sqlite" {
			sqlite = &figs[i]
		}
		rs = append(rs,
			stormResult(n+": machines lost", float64(f.Lost), "= 0", fmt.Sprintf("of %d", stormMachines)),
			stormResult(n+": failed requests", float64(f.Failed-f.FailedKilled), "= 0", map[bool]string{true: fmt.Sprintf("+%d to the killed server", f.FailedKilled)}[f.Setup.Kill]),
			stormResult(n+": to document p99, ms", pct(f.Doc, 99), "report", fmt.Sprintf("p50 %.0f", pct(f.Doc, 50))),
			stormResult(n+": to last report p99, ms", pct(f.Last, 99), "report", fmt.Sprintf("p50 %.0f", pct(f.Last, 50))),
			stormResult(n+": server peak RSS, MB", slices.Max(f.RSS), "report", "VmHWM, the largest server"),
		)
		if f.Setup.Postgres {
			rs = append(rs, stormResult(n+": PostgreSQL connections, peak", float64(f.PGPeak), "report", "pg_stat_activity"))
		}
		if f.Setup.Nginx {
			rs = append(rs, stormResult(n+": MiB from servers / from cache", mb(f.Direct+f.ToCache), "report", fmt.Sprintf("cache %.0f MiB", mb(f.FromCache))))
		}
	}
	if sqlite != nil {
		for _, f := range figs {
			if f.Setup.Name != "postgres" {
				continue
			}
			rs = append(rs,
				Result{Section: "storm", Metric: "postgres p99 to last report, ms", Ours: pct(f.Last, 99), Ref: pct(sqlite.Last, 99), RefName: "SQLite", Better: "lower", Goal: "<= 2x"},
				Result{Section: "storm", Metric: "postgres p99 to document, ms", Ours: pct(f.Doc, 99), Ref: pct(sqlite.Doc, 99), RefName: "SQLite", Better: "lower", Goal: "<= 2x"})
			for k := range nControl {
				rs = append(rs, Result{Section: "storm", Metric: "postgres p99 of one " + controlShort[k] + ", ms", Ours: pct(f.Latency[k], 99), Ref: pct(sqlite.Latency[k], 99), RefName: "SQLite", Better: "lower", Goal: "report", Note: "one request"})
			}
		}
	}
	return rs
}

// kill ends the server at once (SIGKILL): no shutdown, its connections
// cut by the kernel.
func (c *child) kill() {
	c.once.Do(func() {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	})
}
