package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// The console section: the operator's console (server/console) served by
// the real server handler in this process (server.Open, Handler) over a
// store holding 10,000 machines, each with a boot of 12 events, and one
// machine with 100 boots of 15 events: SQLite, then PostgreSQL (a
// private cluster, internal/pgtest) when the machine can run one. A browser signed in with
// a read token asks for the pages through the handler (httptest
// recorders: the server's time, no network); 50 browsers follow the
// event stream over loopback (httptest.Server). Nothing is asserted on
// timings: the figures are for people to read against the goal
// (under 100 ms a page).
func consoleSection() Section {
	return Section{Name: "console", Run: runConsole}
}

// consoleGoal is the goal for a page's server time.
const consoleGoal = 100 * time.Millisecond

// consoleSpec sizes a run.
type consoleSpec struct {
	Machines int // in the store
	BigBoots int // boots of the machine whose page is measured (15 events each)
	Requests int // timed requests per page
	Streams  int // browsers following the event stream
	Events   int // events fanned out to them, timed
}

func consoleSpecDefault() consoleSpec {
	return consoleSpec{Machines: 10000, BigBoots: state.KeepBoots, Requests: 20, Streams: 50, Events: 20}
}

// consolePage is one page's timings and size.
type consolePage struct {
	Key   string // a short name for the results
	Name  string
	Path  string
	Times []time.Duration // server time of each timed request
	Bytes int             // the body of the last one
}

// consoleFigures are a run's figures.
type consoleFigures struct {
	Spec                consoleSpec
	Store               string        // "SQLite" or "PostgreSQL"
	Rows                int           // machines, boots and boot events in the store
	Boots, Events       int           //
	Txs                 int           // store transactions the set-up took
	Setup               time.Duration // filling the store
	Pages               []consolePage
	HeapPerStream       float64 // bytes per open event stream (both ends, this process)
	StackPerStream      float64 // goroutine stack bytes per open event stream (both ends)
	GoroutinesPerStream float64 // of the server's, per open stream
	FanOut              []time.Duration
	Spread              []time.Duration // first client to last, per event
	Burst               []time.Duration // Streams list pages at once after a change: until the last is served
}

func (f *consoleFigures) page(key string) *consolePage {
	for i := range f.Pages {
		if f.Pages[i].Key == key {
			return &f.Pages[i]
		}
	}
	return nil
}

func runConsole(ctx context.Context, env *Env) ([]Result, error) {
	// The store lives in a temporary directory on tmpfs when there is
	// one: SQLite syncs every transaction (synchronous = FULL), and the
	// set-up is 130,000 of them; the timed requests only read, from the
	// page cache either way.
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "overboot-console-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(env.Out, "load average before (the machine is shared): %s\n", loadAvg())
	fmt.Fprintln(env.Out, "-- SQLite")
	f, err := measureConsole(ctx, filepath.Join(dir, "sqlite"), "", consoleSpecDefault(), env.Out)
	if err != nil {
		return nil, err
	}
	printConsoleTable(env.Out, f)
	fmt.Fprintf(env.Out, "load average after it (the machine is shared): %s\n", loadAvg())
	rs := consoleResults(f)

	// The same on PostgreSQL: a private cluster (internal/pgtest, fsync
	// off: the set-up's writes are not what is measured).
	fmt.Fprintln(env.Out, "-- PostgreSQL")
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		fmt.Fprintf(env.Out, "no PostgreSQL run: %v\n", err)
		return rs, nil
	}
	defer pg.Stop()
	conn, err := pg.CreateDatabase(ctx, fmt.Sprintf("console_%d", time.Now().UnixNano()%1e6))
	if err != nil {
		return rs, err
	}
	if f, err = measureConsole(ctx, filepath.Join(dir, "postgres"), conn, consoleSpecDefault(), env.Out); err != nil {
		return rs, fmt.Errorf("postgres: %w", err)
	}
	printConsoleTable(env.Out, f)
	fmt.Fprintf(env.Out, "load average after it (the machine is shared): %s\n", loadAvg())
	return append(rs, consoleResults(f)...), nil
}

// consoleImages are the digests the machines' boots got.
var consoleImages = []string{
	"sha256:" + strings.Repeat("a1", 32),
	"sha256:" + strings.Repeat("b2", 32),
	"sha256:" + strings.Repeat("c3", 32),
}

// consoleEvent is one event of a simulated boot, at its offset from the
// boot's start.
type consoleEvent struct {
	At time.Duration
	E  state.BootEvent
}

// consoleBoot is a boot's events, in time order: the server's steps and
// the agent's phases as a lazy root's boot reports them; 12 events, or
// 15 when long (the server's root, and the agent's running reports of
// its network and lower phases). failed stops it at its lower phase with
// a failure; running stops it there under way.
func consoleBoot(long, failed, running bool) []consoleEvent {
	const MB = 1 << 20
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	srv := func(phase string, n int64, secs float64) state.BootEvent {
		return state.BootEvent{Source: telemetry.SourceServer, Phase: phase, Outcome: telemetry.OK, Bytes: n, Seconds: secs}
	}
	agent := func(phase, outcome string, secs float64) state.BootEvent {
		return state.BootEvent{Source: telemetry.SourceAgent, Phase: phase, Outcome: outcome, Seconds: secs}
	}
	evs := []consoleEvent{
		{0, srv("script", 0, 0)},
		{ms(420), srv("kernel", 8*MB, 0.35)},
		{ms(980), srv("initramfs", 5*MB+MB/2, 0.5)},
		{ms(2050), agent(boot.PhaseEarly, telemetry.OK, 0.04)},
		{ms(2600), agent(boot.PhaseModules, telemetry.OK, 0.5)},
	}
	if long {
		evs = append(evs, consoleEvent{ms(2620), agent(boot.PhaseNetwork, telemetry.Running, 0)})
	}
	evs = append(evs,
		consoleEvent{ms(3100), agent(boot.PhaseNetwork, telemetry.OK, 0.48)},
		consoleEvent{ms(3210), srv("document", 0, 0)},
		consoleEvent{ms(3260), agent(boot.PhaseDocument, telemetry.OK, 0.15)})
	if long || running {
		evs = append(evs, consoleEvent{ms(3280), agent(boot.PhaseLower, telemetry.Running, 0)})
	}
	switch {
	case running:
		return evs
	case failed:
		e := agent(boot.PhaseLower, telemetry.Failed, 0.6)
		e.Message = "lower: dm-verity: hash mismatch at block 1234 of the image"
		return append(evs, consoleEvent{ms(3880), e})
	}
	if long {
		evs = append(evs, consoleEvent{ms(3700), srv("root", 9*MB, 0.4)})
	}
	return append(evs,
		consoleEvent{ms(3880), agent(boot.PhaseLower, telemetry.OK, 0.6)},
		consoleEvent{ms(4030), agent(boot.PhaseUpper, telemetry.OK, 0.15)},
		consoleEvent{ms(4060), agent(boot.PhaseOverlay, telemetry.OK, 0.03)},
		consoleEvent{ms(4100), agent(boot.PhaseSwitchRoot, telemetry.Running, 0)})
}

// The fleet's mix, by a machine's index: 1 in 100 waits for approval, 1
// in 100 is booting (started two minutes ago), 1 in 50 failed; the rest
// are up.
func consolePending(i int) bool { return i%100 == 5 }
func consoleRunning(i int) bool { return i%100 == 3 }
func consoleFailed(i int) bool  { return i%50 == 7 }

func consoleMAC(i int) string  { return ctlMAC(0x6c, i) }
func consoleHost(i int) string { return fmt.Sprintf("node%05d", i) }
func consoleAddr(i int) string { return ctlAddr(60, i).String() }

// fillConsoleStore writes the fleet into the store at data, each event
// at its simulated time (the store's clock), through the store's own
// methods, one transaction each (it has no bulk path): machine 0 gets
// spec.BigBoots boots of 15 events, half an hour apart.
func fillConsoleStore(ctx context.Context, where state.Where, spec consoleSpec) (boots, events, txs int, err error) {
	db, err := state.OpenStore(ctx, where)
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	end := time.Now()
	var clock time.Time
	db.SetClock(func() time.Time { return clock })
	addBoot := func(i int, start time.Time, evs []consoleEvent) error {
		clock = start
		b, err := db.StartBoot(ctx, state.Boot{MAC: consoleMAC(i), Profile: "default", Address: consoleAddr(i), Image: consoleImages[i%len(consoleImages)]}, evs[0].E)
		if err != nil {
			return err
		}
		txs++
		for _, e := range evs[1:] {
			clock = start.Add(e.At)
			if _, err := db.AddBootEvent(ctx, b.ID, e.E); err != nil {
				return err
			}
			txs++
		}
		boots++
		events += len(evs)
		return nil
	}
	for i := range spec.Machines {
		if err := ctx.Err(); err != nil {
			return boots, events, txs, err
		}
		m := state.Machine{MAC: consoleMAC(i), Profile: "default", Address: consoleAddr(i), Hostname: consoleHost(i)}
		start := end.Add(-55 * time.Minute).Add(time.Duration(i) * (50 * time.Minute) / time.Duration(spec.Machines))
		clock = start.Add(-time.Second)
		if consolePending(i) {
			if err := db.Ask(ctx, state.Request{MAC: m.MAC, Profile: m.Profile, Address: m.Address, Hostname: m.Hostname}, state.Quota{}); err != nil {
				return boots, events, txs, err
			}
			txs++
			continue
		}
		if consoleRunning(i) {
			start = end.Add(-2 * time.Minute)
			clock = start.Add(-time.Second)
		}
		if _, err := db.Enter(ctx, m, "open", state.Quota{}); err != nil {
			return boots, events, txs, err
		}
		txs++
		if i == 0 {
			for k := range spec.BigBoots {
				at := end.Add(-time.Duration(spec.BigBoots-k) * 30 * time.Minute)
				if err := addBoot(i, at, consoleBoot(true, k%10 == 9, false)); err != nil {
					return boots, events, txs, err
				}
			}
			continue
		}
		if err := addBoot(i, start, consoleBoot(false, consoleFailed(i), consoleRunning(i))); err != nil {
			return boots, events, txs, err
		}
	}
	return boots, events, txs, nil
}

// consoleBrowser is a signed-in browser on the console, asking the
// handler directly.
type consoleBrowser struct {
	h      http.Handler
	cookie string // the session's
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// consoleRequest is a request from the console's browser (or, with
// remote set, a machine) to the handler.
func consoleRequest(method, path, remote, cookie string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, "http://127.0.0.1"+path, body)
	r.RemoteAddr = remote + ":40000"
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

// signInConsole signs in with a new token of the read scope, as an
// operator does: the form, then the form posted with its CSRF token.
func signInConsole(ctx context.Context, h http.Handler, db *state.DB) (*consoleBrowser, error) {
	tok, _, err := enroll.NewAPIToken(ctx, db, "console-bench", enroll.ScopeRead)
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, consoleRequest(http.MethodGet, "/console/signin", "127.0.0.1", "", nil))
	m := consoleCSRF.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		return nil, fmt.Errorf("sign-in form: %d, no CSRF token", rec.Code)
	}
	var cs []string
	for _, c := range rec.Result().Cookies() {
		cs = append(cs, c.Name+"="+c.Value)
	}
	form := url.Values{"csrf": {m[1]}, "token": {tok}}
	r := consoleRequest(http.MethodPost, "/console/signin", "127.0.0.1", strings.Join(cs, "; "), strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://127.0.0.1")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "overboot_console" && c.Value != "" {
			return &consoleBrowser{h: h, cookie: c.Name + "=" + c.Value}, nil
		}
	}
	return nil, fmt.Errorf("sign in: %d, no session cookie: %s", rec.Code, tail(rec.Body.String(), 3))
}

// get asks for path and returns the body and the server's time.
func (b *consoleBrowser) get(path string) (string, time.Duration, error) {
	r := consoleRequest(http.MethodGet, path, "127.0.0.1", b.cookie, nil)
	rec := httptest.NewRecorder()
	t0 := time.Now()
	b.h.ServeHTTP(rec, r)
	d := time.Since(t0)
	if rec.Code != http.StatusOK {
		return "", d, fmt.Errorf("GET %s: %d %s", path, rec.Code, tail(rec.Body.String(), 3))
	}
	return rec.Body.String(), d, nil
}

// timePage asks for path once untimed (the status table built, the
// templates warm), then n times timed; want must be in the body.
func (b *consoleBrowser) timePage(key, name, path, want string, n int) (consolePage, error) {
	p := consolePage{Key: key, Name: name, Path: path}
	if _, _, err := b.get(path); err != nil {
		return p, err
	}
	for range n {
		body, d, err := b.get(path)
		if err != nil {
			return p, err
		}
		if !strings.Contains(body, want) {
			return p, fmt.Errorf("GET %s: the page lacks %q", path, want)
		}
		p.Times, p.Bytes = append(p.Times, d), len(body)
	}
	return p, nil
}

// bootEvent makes a change the status table must show: machine i asks
// for its script, which records a new boot (the recorder tells the
// table and the event streams).
func bootEvent(h http.Handler, i int) error {
	r := consoleRequest(http.MethodGet, "/ipxe?mac="+strings.ReplaceAll(consoleMAC(i), ":", "-"), consoleAddr(i), "", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("machine %d's script: %d %s", i, rec.Code, tail(rec.Body.String(), 3))
	}
	return nil
}

// upMachine is the k-th machine that is up (not pending, booting or
// failed, not machine 0), from the end of the fleet.
func upMachine(spec consoleSpec, k int) int {
	for i := spec.Machines - 1; i > 0; i-- {
		if consolePending(i) || consoleRunning(i) || consoleFailed(i) {
			continue
		}
		if k == 0 {
			return i
		}
		k--
	}
	return -1
}

// measureConsole fills a store (SQLite in dir, or the PostgreSQL
// database conn names), opens a server on it and takes the figures.
func measureConsole(ctx context.Context, dir, conn string, spec consoleSpec, out io.Writer) (consoleFigures, error) {
	f := consoleFigures{Spec: spec, Store: "SQLite"}
	if conn != "" {
		f.Store = "PostgreSQL"
	}
	if spec.Machines < 50 || spec.BigBoots < 1 || spec.Requests < 1 || spec.Streams < 1 || spec.Events < 1 {
		return f, fmt.Errorf("console: %+v: want at least 50 machines and one of everything else", spec)
	}
	// Each change is a boot of a machine that is up, a different one for
	// each timed change, search and event (the bursts reuse the first).
	if upMachine(spec, 2*spec.Requests+1+spec.Events) < 0 {
		return f, fmt.Errorf("console: %d requests and %d events for %d machines: want fewer", spec.Requests, spec.Events, spec.Machines)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, err
	}
	if err := writeStormFiles(dir, 64<<10, 64<<10, 64<<10); err != nil {
		return f, err
	}
	data := filepath.Join(dir, "data")
	t0 := time.Now()
	var err error
	if f.Boots, f.Events, f.Txs, err = fillConsoleStore(ctx, state.Where{Data: data, Postgres: conn}, spec); err != nil {
		return f, fmt.Errorf("filling the store: %w", err)
	}
	f.Setup = time.Since(t0)
	fmt.Fprintf(out, "store: %d machines, %d boots, %d boot events, in %d transactions (AddMachine/Enter, Ask, StartBoot, AddBootEvent: no bulk path) in %.1fs (%.0f µs each), %s\n",
		spec.Machines, f.Boots, f.Events, f.Txs, f.Setup.Seconds(), float64(f.Setup.Microseconds())/float64(max(f.Txs, 1)), f.Store)

	conf := "[server]\nname = console-bench\ndata = " + data + "\n"
	if conn != "" {
		conf += "store = " + conn + "\n"
	}
	cfg, err := config.Parse("console-bench.conf", strings.NewReader(conf+"\n"+stormProfile(dir)))
	if err != nil {
		return f, err
	}
	s, err := server.Open(ctx, cfg, nil)
	if err != nil {
		return f, err
	}
	defer s.Close()
	h := s.Handler()
	b, err := signInConsole(ctx, h, s.DB())
	if err != nil {
		return f, err
	}

	// 1. The machine list, and the other pages, from the cached table.
	last := (spec.Machines + 49) / 50
	failedFirst := consoleMAC(7) // the failed machine first by MAC
	search := upMachine(spec, 2*spec.Requests)
	pages := []struct{ key, name, path, want string }{
		{"overview", "overview", "/console", "Overview"},
		{"list", "machines, cached table", "/console/machines", consoleMAC(1)},
		{"search", "machines, search q=host", "/console/machines?q=" + consoleHost(search), consoleMAC(search)},
		{"failed", "machines, state=failed", "/console/machines?state=failed", failedFirst},
		{"sorted", "machines, sort=updated, last page", fmt.Sprintf("/console/machines?sort=updated&page=%d", last), fmt.Sprintf("page %d of %d", last, last)},
		{"machine", fmt.Sprintf("machine page, %d boots", spec.BigBoots), "/console/machines/" + consoleMAC(0), "<svg"},
		{"pending", "pending", "/console/pending", consoleMAC(5)},
	}
	for _, pg := range pages {
		p, err := b.timePage(pg.key, pg.name, pg.path, pg.want, spec.Requests)
		if err != nil {
			return f, err
		}
		f.Pages = append(f.Pages, p)
	}

	// 1b. The list, and the machine page, just after a change: the
	// table is built again from the store (the machine page reads it
	// too). Each change comes more than MinRebuild after the last
	// build, so the request times the build, not the wait a request
	// sooner than that has (up to MinRebuild). The change is another
	// machine's boot, so that machine 0 keeps its boots as timed above.
	for i, pg := range []consolePage{
		{Key: "changed", Name: "machines, first after a change", Path: "/console/machines"},
		{Key: "machine-changed", Name: fmt.Sprintf("machine page, %d boots, after a change", spec.BigBoots), Path: "/console/machines/" + consoleMAC(0)},
	} {
		for k := range spec.Requests {
			if err := sleepCtx(ctx, telemetry.MinRebuild+50*time.Millisecond); err != nil {
				return f, err
			}
			if err := bootEvent(h, upMachine(spec, i*spec.Requests+k)); err != nil {
				return f, err
			}
			body, d, err := b.get(pg.Path)
			if err != nil {
				return f, err
			}
			pg.Times, pg.Bytes = append(pg.Times, d), len(body)
		}
		f.Pages = append(f.Pages, pg)
	}

	// 4. The event stream: browsers following it over loopback.
	ts := httptest.NewServer(h)
	defer ts.Close()
	if err := consoleStreams(ctx, ts.Listener.Addr().String(), b, spec, &f); err != nil {
		return f, err
	}
	return f, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sseClient is one browser's event stream: a socket read by one
// goroutine, which notes when it first saw each machine's event.
type sseClient struct {
	conn net.Conn
	mu   sync.Mutex
	seen map[string]time.Time
	err  error
}

// dialEvents opens GET /console/events with the session's cookie and
// reads up to the stream's first message (retry:): then the server has
// subscribed it.
func dialEvents(ctx context.Context, addr, cookie string) (*sseClient, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(conn, "GET /console/events HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCookie: %s\r\n\r\n", addr, cookie)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, nil, fmt.Errorf("GET /console/events: %s", resp.Status)
	}
	lr := bufio.NewReaderSize(resp.Body, 512)
	line, err := lr.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "retry:") {
		conn.Close()
		return nil, nil, fmt.Errorf("GET /console/events: first line %q: %v", line, err)
	}
	return &sseClient{conn: conn, seen: map[string]time.Time{}}, lr, nil
}

func (c *sseClient) read(lr *bufio.Reader) {
	for {
		line, err := lr.ReadString('\n')
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		at := time.Now()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var u struct {
			MAC string `json:"mac"`
		}
		if json.Unmarshal([]byte(data), &u) != nil {
			continue
		}
		c.mu.Lock()
		if _, ok := c.seen[u.MAC]; !ok {
			c.seen[u.MAC] = at
		}
		c.mu.Unlock()
	}
}

func (c *sseClient) sawAt(mac string) (time.Time, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.seen[mac]
	return t, ok, c.err
}

// heapNow is the live heap after a collection, the goroutines' stacks
// and their number.
func heapNow() (heap, stacks uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
}

// consoleStreams opens spec.Streams event streams, takes their cost in
// memory, times spec.Events boot events reaching all of them, then times
// the burst of list pages they ask for after one change.
func consoleStreams(ctx context.Context, addr string, b *consoleBrowser, spec consoleSpec, f *consoleFigures) error {
	h0, s0, g0 := heapNow()
	clients := make([]*sseClient, spec.Streams)
	var wg sync.WaitGroup
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.conn.Close()
			}
		}
		wg.Wait()
	}()
	readers := make([]*bufio.Reader, spec.Streams)
	for i := range clients {
		c, lr, err := dialEvents(ctx, addr, b.cookie)
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		clients[i], readers[i] = c, lr
	}
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.read(readers[i])
		}()
	}
	h1, s1, g1 := heapNow()
	n := float64(spec.Streams)
	f.HeapPerStream = (float64(h1) - float64(h0)) / n
	f.StackPerStream = (float64(s1) - float64(s0)) / n
	// Each stream has one reading goroutine of this client's: the rest
	// are the server's.
	f.GoroutinesPerStream = float64(g1-g0-spec.Streams) / n

	for k := range spec.Events {
		i := upMachine(spec, 2*spec.Requests+1+k)
		mac := consoleMAC(i)
		t0 := time.Now()
		if err := bootEvent(b.h, i); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var first, lastAt time.Time
			all := true
			for j, c := range clients {
				t, ok, err := c.sawAt(mac)
				if err != nil {
					return fmt.Errorf("stream %d: %w", j, err)
				}
				if !ok {
					all = false
					break
				}
				if first.IsZero() || t.Before(first) {
					first = t
				}
				if t.After(lastAt) {
					lastAt = t
				}
			}
			if all {
				f.FanOut = append(f.FanOut, lastAt.Sub(t0))
				f.Spread = append(f.Spread, lastAt.Sub(first))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("event %d (machine %s): not every stream had it after 10 s", k, mac)
			}
			if err := sleepCtx(ctx, time.Millisecond); err != nil {
				return err
			}
		}
	}

	// What the events set off: every open list page asks for itself
	// again (at most once a second): one change, then Streams list
	// pages at once. The first builds the table; the others wait for it
	// and render the cached table.
	for k := range min(spec.Requests, 5) {
		if err := sleepCtx(ctx, telemetry.MinRebuild+50*time.Millisecond); err != nil {
			return err
		}
		if err := bootEvent(b.h, upMachine(spec, k)); err != nil {
			return err
		}
		errs := make([]error, spec.Streams)
		var bw sync.WaitGroup
		t0 := time.Now()
		for j := range spec.Streams {
			bw.Add(1)
			go func() {
				defer bw.Done()
				_, _, errs[j] = b.get("/console/machines")
			}()
		}
		bw.Wait()
		f.Burst = append(f.Burst, time.Since(t0))
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

func msOf(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return float64(s[min(max(i, 0), len(s)-1)].Microseconds()) / 1000
}

// printConsoleTable prints the figures as the table in
// docs/benchmarks.md.
func printConsoleTable(w io.Writer, f consoleFigures) {
	fmt.Fprintf(w, "| page (%d machines, %s) | median | p90 | of the 100 ms goal | body |\n| --- | --- | --- | --- | --- |\n", f.Spec.Machines, f.Store)
	for _, p := range f.Pages {
		fmt.Fprintf(w, "| %s `%s` | %.1f ms | %.1f ms | %.2fx | %.1f KiB |\n", p.Name, p.Path, msOf(p.Times, 50), msOf(p.Times, 90), msOf(p.Times, 50)/ms(consoleGoal), float64(p.Bytes)/1024)
	}
	fmt.Fprintf(w, "event streams: %d open: %.1f KiB of heap, %.1f KiB of goroutine stacks and %.1f server goroutines each (both ends in this process: the client's part is a socket, 4.5 KiB of buffers and one goroutine, not counted in the goroutines)\n",
		f.Spec.Streams, f.HeapPerStream/1024, f.StackPerStream/1024, f.GoroutinesPerStream)
	fmt.Fprintf(w, "one boot event to all %d streams: median %.2f ms, p90 %.2f ms from the machine's request (recording the boot included) to the last stream reading it; first to last stream median %.2f ms\n",
		f.Spec.Streams, msOf(f.FanOut, 50), msOf(f.FanOut, 90), msOf(f.Spread, 50))
	a, bb := f.page("list"), f.page("changed")
	if a != nil && bb != nil {
		ma, mb := msOf(a.Times, 50), msOf(bb.Times, 50)
		fmt.Fprintf(w, "each event makes every open list page ask for itself again, at most once a second: in a boot storm (events all the time) %d browsers on the list cost %.0f ms of server time a second (one build %.1f ms + %d cached pages of %.1f ms), one browser %.1f ms a second; measured: %d list pages at once after one change served in median %.0f ms (p90 %.0f ms) wall\n",
			f.Spec.Streams, mb+float64(f.Spec.Streams-1)*ma, mb, f.Spec.Streams-1, ma, mb, f.Spec.Streams, msOf(f.Burst, 50), msOf(f.Burst, 90))
	}
}

func consoleResults(f consoleFigures) []Result {
	var rs []Result
	goal := ms(consoleGoal)
	pre := ""
	if f.Store == "PostgreSQL" {
		pre = "pg "
	}

	for _, p := range f.Pages {
		rs = append(rs, Result{Section: "console", Metric: p.Name + ", ms", Ours: msOf(p.Times, 50), Ref: goal, RefName: "goal 100ms", Better: "lower", Goal: "< 1x", Note: fmt.Sprintf("median of %d; p90 %.1f", len(p.Times), msOf(p.Times, 90))})
	}
	for _, p := range f.Pages {
		if p.Key == "overview" || p.Key == "list" || p.Key == "machine" || p.Key == "pending" {
			rs = append(rs, Result{Section: "console", Metric: p.Name + ", KiB", Ours: float64(p.Bytes) / 1024, RefName: "-", Better: "lower", Goal: "report", Note: "body"})
		}
	}
	rs = append(rs,
		Result{Section: "console", Metric: "event stream: heap per browser, KiB", Ours: f.HeapPerStream / 1024, RefName: "-", Better: "lower", Goal: "report", Note: fmt.Sprintf("%d streams, both ends", f.Spec.Streams)},
		Result{Section: "console", Metric: "event stream: stacks per browser, KiB", Ours: f.StackPerStream / 1024, RefName: "-", Better: "lower", Goal: "report", Note: "both ends"},
		Result{Section: "console", Metric: "event stream: server goroutines per browser", Ours: f.GoroutinesPerStream, RefName: "-", Better: "lower", Goal: "report"},
		Result{Section: "console", Metric: fmt.Sprintf("one event to %d browsers, ms", f.Spec.Streams), Ours: msOf(f.FanOut, 50), RefName: "-", Better: "lower", Goal: "report", Note: fmt.Sprintf("median; p90 %.2f", msOf(f.FanOut, 90))},
	)
	if a, b := f.page("list"), f.page("changed"); a != nil && b != nil {
		rs = append(rs, Result{Section: "console", Metric: fmt.Sprintf("storm: %d list pages' refetch, ms/s", f.Spec.Streams), Ours: msOf(b.Times, 50) + float64(f.Spec.Streams-1)*msOf(a.Times, 50), RefName: "-", Better: "lower", Goal: "report", Note: "server time a second"})
	}
	if len(f.Burst) > 0 {
		rs = append(rs, Result{Section: "console", Metric: fmt.Sprintf("%d list pages at once after a change, ms", f.Spec.Streams), Ours: msOf(f.Burst, 50), RefName: "-", Better: "lower", Goal: "report", Note: "wall, median"})
	}
	for i := range rs {
		rs[i].Metric = pre + rs[i].Metric
	}
	return rs
}
