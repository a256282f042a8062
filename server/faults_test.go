package server

// Faults of a site with several servers on one PostgreSQL store (issue 18
// item 7): PostgreSQL restarted during a storm, PostgreSQL down for a
// while under running machines and new boots, a server killed during a
// storm. The servers are in this process (Open over the same database,
// each with its own data directory, each serving HTTP on its own
// loopback port); PostgreSQL is a private cluster of the test's own
// (internal/pgtest), stopped and started again with pg_ctl. The machines
// are simulated (simMachine): each does over HTTP, from its own loopback
// address, what iPXE and the agent do, and waits as they wait.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server/config"
)

// faultOutage is how long TestFaultPostgresDown keeps PostgreSQL down.
var faultOutage = flag.Duration("fault-outage", time.Minute, "how long TestFaultPostgresDown keeps PostgreSQL down")

// simRequestBound bounds every request of a simulated machine: a request
// that takes longer is a hang, and fails the test. A real agent's stall
// timer is 30 s.
const simRequestBound = 30 * time.Second

// simMaxWait bounds how long a simulated machine keeps waiting on
// 503s and wait scripts (the agent's own bound is 10 minutes).
const simMaxWait = 5 * time.Minute

// faultSite is several servers on one PostgreSQL database.
type faultSite struct {
	pg      *pgtest.Cluster
	conn    string
	servers []*Server
	bases   []string
	stops   []func() // stop serving (kill: no drain)
	image   []byte
}

// newFaultSite starts a private PostgreSQL cluster and n servers on one
// database in it, each serving a lazy root (enroll = open) from a data
// directory of its own.
func newFaultSite(t *testing.T, n int) *faultSite {
	t.Helper()
	pg, err := pgtest.Start(pgtest.Options{})
	if errors.Is(err, pgtest.ErrMissing) {
		testneed.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
	})
	conn, err := pg.CreateDatabase(context.Background(), "faults")
	if err != nil {
		t.Fatal(err)
	}
	site := &faultSite{pg: pg, conn: conn}
	files := t.TempDir()
	// A lazy root: whole 4 KiB blocks that begin as a squashfs does.
	site.image = make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'f', 'a', 'u', 'l', 't'})
	rng.Read(site.image)
	copy(site.image, "hsqs")
	for name, b := range map[string][]byte{"kernel": bytes.Repeat([]byte("K"), 64<<10), "initramfs": bytes.Repeat([]byte("I"), 96<<10), "root": site.image} {
		if err := os.WriteFile(filepath.Join(files, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lns := make([]net.Listener, n)
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		site.bases = append(site.bases, "http://"+lns[i].Addr().String())
	}
	for i := range n {
		dir := t.TempDir()
		// The others are the mirrors of what is named by digest (the
		// registry leaves loopback URLs out of what machines are told).
		var others []string
		for j, b := range site.bases {
			if j != i {
				others = append(others, b)
			}
		}
		mirrors := ""
		if len(others) > 0 {
			mirrors = "mirrors = " + strings.Join(others, " ") + "\n"
		}
		text := fmt.Sprintf("[server]\nname = fault%d\ndata = %s/data\nstore = %s\n"+mirrors+"[profile default]\nkernel = %[4]s/kernel\ninitramfs = %[4]s/initramfs\nroot = %[4]s/root\nlower-mode = lazy\nenroll = open\nmax-machines = unlimited\ncmdline = console=ttyS0\n", i, dir, conn, files)
		cfg, err := config.Parse("fault.conf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		s, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.Drain = time.Nanosecond // a stop is a kill: connections cut
		ln := lns[i]
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- s.Serve(ctx, ln) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("server %d: %v", i, err)
				}
			})
		}
		t.Cleanup(func() {
			stop()
			s.Close()
			if t.Failed() {
				t.Logf("server %d's log:\n%s", i, tail(logs.String(), 40))
			}
		})
		site.servers = append(site.servers, s)
		site.stops = append(site.stops, stop)
	}
	return site
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// simStats is what every simulated machine saw that the test asserts on.
// Safe for concurrent use.
type simStats struct {
	mu         sync.Mutex
	violations []string // answers that must never come: a 500, a 503 without Retry-After, a hang, a failed image read
	waitScript atomic.Int64
	retryAfter atomic.Int64 // 503s with Retry-After
	docs       atomic.Int64 // documents received
	imageReads atomic.Int64 // Range reads of the image and the tree answered
	running    atomic.Int64 // machines that reached their root and read it (Reading)
	// lostReports are reports whose server was gone (best effort, as
	// the agent's: the boot goes on).
	lostReports atomic.Int64
}

func (st *simStats) violation(format string, args ...any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.violations) < 50 {
		st.violations = append(st.violations, fmt.Sprintf(format, args...))
	}
}

// simMachine is one machine with a lazy root, from its own address.
type simMachine struct {
	MAC     string
	Servers []string // its DHCP offers these, in order: each boot goes through the next
	c       *http.Client
	st      *simStats
	// Think is a pause between the steps of a boot (a real kernel takes
	// seconds to reach the agent).
	Think time.Duration
	// Reading, when set, keeps the machine reading its root (Range reads
	// of the image and the tree) after its last report, until it is
	// closed: a running machine.
	Reading <-chan struct{}
	// sawWait: one of its requests was told to wait (a wait script or a
	// 503 with Retry-After).
	sawWait atomic.Bool
	// sawWaitScript: its script request was answered with a script that
	// says why it waits (StoreWaitMessage).
	sawWaitScript atomic.Bool
	kernel        string       // its kernel's URL, once its script named it
	done          atomic.Bool  // a boot reached its last report
	lostReports   atomic.Int64 // reports whose server was gone
}

func newSimMachine(i, block int, servers []string, st *simStats) *simMachine {
	ip := net.IPv4(127, byte(block), byte(i/250), byte(i%250+1))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &simMachine{
		MAC:     fmt.Sprintf("02:00:%02x:00:%02x:%02x", block, i>>8, i&0xff),
		Servers: servers,
		st:      st,
		c: &http.Client{Timeout: simRequestBound, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2, DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// errBootAgain ends a boot that a machine can only begin again: a
// single-use URL it was given answers 404, or its server is gone.
var errBootAgain = errors.New("boot again")

// run boots the machine through its servers in turn until one boot
// reaches the last report, at most attempts boots. It returns the number
// of boots begun.
func (m *simMachine) run(ctx context.Context, attempts int) (int, error) {
	var err error
	for i := range attempts {
		if err = m.boot(ctx, m.Servers[i%len(m.Servers)]); err == nil || !errors.Is(err, errBootAgain) {
			return i + 1, err
		}
	}
	return attempts, err
}

var (
	scriptKernel = regexp.MustCompile(`(?m)^kernel (?:--name \S+ )?(http://\S+) .*overboot\.doc=(\S+)`)
	scriptInitrd = regexp.MustCompile(`(?m)^initrd (?:--name \S+ )?(http://\S+)`)
	scriptSleep  = regexp.MustCompile(`(?m)^sleep (\d+) \|\|$`)
)

// boot is one boot through base, as iPXE and the agent do it.
func (m *simMachine) boot(ctx context.Context, base string) error {
	// iPXE: the machine's script. A wait script is shown, slept and
	// asked again; a 503 with Retry-After is waited (iPXE's HTTP code).
	var script string
	for script == "" {
		code, b, err := m.do(ctx, http.MethodGet, base+"/ipxe?mac="+strings.ReplaceAll(m.MAC, ":", "-"), "", nil, "script")
		switch {
		case err != nil:
			return fmt.Errorf("script: %w: %w", err, errBootAgain)
		case code == http.StatusOK && strings.Contains(string(b), StoreWaitMessage):
			m.st.waitScript.Add(1)
			m.sawWait.Store(true)
			m.sawWaitScript.Store(true)
			s := scriptSleep.FindStringSubmatch(string(b))
			if s == nil {
				m.st.violation("%s: a wait script without a sleep:\n%s", m.MAC, b)
				return errors.New("wait script without a sleep")
			}
			n, _ := strconv.Atoi(s[1])
			if err := m.sleep(ctx, time.Duration(n)*time.Second); err != nil {
				return err
			}
		case code == http.StatusOK:
			script = string(b)
		default:
			return fmt.Errorf("script: HTTP %d: %s", code, b)
		}
	}
	k := scriptKernel.FindStringSubmatch(script)
	if k == nil {
		return fmt.Errorf("no kernel with a document in the script:\n%s", script)
	}
	// Artifacts: named by digest, served from files; never the store.
	for _, u := range append([]string{k[1]}, firsts(scriptInitrd.FindAllStringSubmatch(script, -1))...) {
		code, b, err := m.do(ctx, http.MethodGet, u, "", nil, "artifact")
		if err != nil { // its server is gone: iPXE's script tries again
			return fmt.Errorf("artifact: %w: %w", err, errBootAgain)
		}
		if code != http.StatusOK || len(b) == 0 {
			m.st.violation("%s: artifact %s: HTTP %d, %d bytes", m.MAC, u, code, len(b))
			return fmt.Errorf("artifact: HTTP %d", code)
		}
		if m.kernel == "" {
			m.kernel = u
		}
	}
	if err := m.sleep(ctx, m.Think); err != nil {
		return err
	}
	// The agent: its document.
	code, b, err := m.do(ctx, http.MethodGet, k[2], "", nil, "document")
	switch {
	case err != nil:
		return fmt.Errorf("document: %w: %w", err, errBootAgain)
	case code == http.StatusNotFound:
		return fmt.Errorf("document: HTTP 404 %s: %w", b, errBootAgain)
	case code != http.StatusOK:
		return fmt.Errorf("document: HTTP %d %s", code, b)
	}
	doc, err := boot.ParseDocument(bytes.NewReader(b))
	if err != nil {
		return err
	}
	h := doc.Lower.HTTP
	if h == nil || h.Verity == nil || doc.Report == "" {
		return fmt.Errorf("document: not a lazy root with a tree and a report URL: %s", b)
	}
	m.st.docs.Add(1)
	report := func(phase, outcome string) error {
		r, err := boot.PhaseReport{Phase: phase, Outcome: outcome, Uptime: 1}.Marshal()
		if err != nil {
			return err
		}
		code, b, err := m.do(ctx, http.MethodPost, doc.Report, "", r, "report")
		switch {
		case err != nil && ctx.Err() == nil:
			// Best effort, as the agent's: the boot goes on.
			m.st.lostReports.Add(1)
			m.lostReports.Add(1)
			return nil
		case err != nil:
			return err
		case code != http.StatusNoContent:
			return fmt.Errorf("report %s %s: HTTP %d %s", phase, outcome, code, b)
		}
		return nil
	}
	read := func() error {
		for _, r := range []struct {
			urls     []string
			off, len int64
		}{{h.URLs(), 0, 4096}, {h.URLs(), h.Size - 8192, 8192}, {h.Verity.HashURLs(), 0, min(4096, h.Verity.HashSize)}} {
			// The first source that answers, as the keeper reads.
			var code int
			var b []byte
			err := errors.New("no source")
			for _, u := range r.urls {
				if code, b, err = m.do(ctx, http.MethodGet, u, fmt.Sprintf("bytes=%d-%d", r.off, r.off+r.len-1), nil, "image"); err == nil {
					break
				}
			}
			if err != nil { // every source is gone
				return fmt.Errorf("root read: %w: %w", err, errBootAgain)
			}
			if code != http.StatusPartialContent || int64(len(b)) != r.len {
				m.st.violation("%s: a Range read of its root: HTTP %d, %d bytes", m.MAC, code, len(b))
				return fmt.Errorf("root read: HTTP %d", code)
			}
			m.st.imageReads.Add(1)
		}
		return nil
	}
	for _, p := range []string{boot.PhaseEarly, boot.PhaseModules, boot.PhaseNetwork, boot.PhaseDocument, boot.PhaseLower} {
		if err := report(p, boot.OutcomeRunning); err != nil {
			return err
		}
		if p == boot.PhaseLower {
			if err := read(); err != nil {
				return err
			}
			if err := m.sleep(ctx, m.Think); err != nil {
				return err
			}
		}
		if err := report(p, boot.OutcomeOK); err != nil {
			return err
		}
	}
	for _, p := range []string{boot.PhaseUpper, boot.PhaseOverlay} {
		if err := report(p, boot.OutcomeRunning); err != nil {
			return err
		}
		if err := report(p, boot.OutcomeOK); err != nil {
			return err
		}
	}
	if err := report(boot.PhaseSwitchRoot, boot.OutcomeRunning); err != nil {
		return err
	}
	m.done.Store(true)
	if m.Reading != nil {
		m.st.running.Add(1)
	}
	// Running: the keeper reads the root on demand.
	for m.Reading != nil {
		select {
		case <-m.Reading:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if err := read(); err != nil {
			return err
		}
	}
	return nil
}

func firsts(ms [][]string) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m[1])
	}
	return out
}

// do sends one request and waits as the agent and iPXE do on a 503 with
// Retry-After (at most simMaxWait in all); it returns the last answer. A
// 500, a 503 without Retry-After, or a request that outlives
// simRequestBound is a violation.
func (m *simMachine) do(ctx context.Context, method, u, rng string, body []byte, what string) (int, []byte, error) {
	began := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := m.c.Do(req)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				m.st.violation("%s: %s %s: no answer within %v", m.MAC, what, redactPath(req.URL.Path), simRequestBound)
			}
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, nil, err
		}
		ra := resp.Header.Get("Retry-After")
		switch {
		case resp.StatusCode == http.StatusInternalServerError:
			m.st.violation("%s: %s %s: HTTP 500: %s", m.MAC, what, redactPath(req.URL.Path), b)
		case resp.StatusCode == http.StatusServiceUnavailable && ra == "":
			m.st.violation("%s: %s %s: HTTP 503 without Retry-After: %s", m.MAC, what, redactPath(req.URL.Path), b)
		case resp.StatusCode == http.StatusServiceUnavailable && time.Since(began) < simMaxWait:
			m.st.retryAfter.Add(1)
			m.sawWait.Store(true)
			n, err := strconv.Atoi(ra)
			if err != nil || n <= 0 || n > 60 {
				m.st.violation("%s: %s: Retry-After %q", m.MAC, what, ra)
				return resp.StatusCode, b, nil
			}
			if err := m.sleep(ctx, time.Duration(n)*time.Second); err != nil {
				return 0, nil, err
			}
			continue
		}
		return resp.StatusCode, b, nil
	}
}

func (m *simMachine) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// checkStore asserts what must hold of the store after the storm: its
// Check passes; no boot without its first event; every machine's latest
// boot holds each of its reports once, up to switch_root.
//
// A machine whose reports went to a server that died holds only those
// that reached it: lossy names such machines, whose latest boot is not
// checked but for its first event.
func (site *faultSite) checkStore(t *testing.T, ms []*simMachine, lossy map[string]bool) {
	t.Helper()
	ctx := context.Background()
	db := site.servers[0].DB()
	if err := db.Check(ctx); err != nil {
		t.Errorf("the store's Check after the storm: %v", err)
	}
	cfg, err := pgx.ParseConfig(site.conn)
	if err != nil {
		t.Fatal(err)
	}
	raw := stdlib.OpenDB(*cfg)
	defer raw.Close()
	var bare int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM boots b WHERE NOT EXISTS (SELECT 1 FROM boot_events e WHERE e.boot_id = b.id)`).Scan(&bare); err != nil {
		t.Fatal(err)
	}
	if bare != 0 {
		t.Errorf("%d boots without an event", bare)
	}
	for _, m := range ms {
		bs, err := db.Boots(ctx, m.MAC, 1)
		if err != nil || len(bs) != 1 {
			t.Errorf("%s: its boots: %v %v", m.MAC, bs, err)
			continue
		}
		b := bs[0]
		if lossy[m.MAC] {
			continue
		}
		if b.Phase != boot.PhaseSwitchRoot || b.Outcome != boot.OutcomeRunning {
			t.Errorf("%s: its latest boot stands at %s %s, want switch_root running", m.MAC, b.Phase, b.Outcome)
		}
		var agent int
		if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM boot_events WHERE boot_id = $1 AND source = 'agent'`, b.ID).Scan(&agent); err != nil {
			t.Fatal(err)
		}
		if agent != 15 {
			t.Errorf("%s: its latest boot holds %d agent reports, want the 15 it sent", m.MAC, agent)
		}
		var first int
		if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM boot_events WHERE boot_id = $1 AND source = 'server' AND phase = 'script'`, b.ID).Scan(&first); err != nil {
			t.Fatal(err)
		}
		if first != 1 {
			t.Errorf("%s: its latest boot has %d script events, want its first", m.MAC, first)
		}
	}
}

// storm starts ms, each after a random pause up to spread, and returns a
// function that waits for them and says how many boots each began and
// how each ended.
func storm(ctx context.Context, ms []*simMachine, spread time.Duration, attempts int) func() ([]int, []error) {
	boots := make([]int, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if spread > 0 {
				if err := m.sleep(ctx, rand.N(spread)); err != nil {
					errs[i] = err
					return
				}
			}
			boots[i], errs[i] = m.run(ctx, attempts)
		}()
	}
	return func() ([]int, []error) { wg.Wait(); return boots, errs }
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (st *simStats) check(t *testing.T) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, v := range st.violations {
		t.Error(v)
	}
}

// TestFaultPostgresRestart: three servers on one PostgreSQL database
// serve a storm of machines with lazy roots; PostgreSQL is stopped
// (pg_ctl stop -m fast) once a third of them have their document, and
// started again a few seconds later, while more machines power on. No
// request is answered 500, every 503 carries Retry-After, none hangs past
// simRequestBound; the machines that powered on during the outage get a
// script that says why they wait (StoreWaitMessage); every machine reaches its last
// report in its first boot (no single-use URL lost to the outage), and
// afterwards the store's Check passes, every boot has its first event and
// every machine's boot holds each of its reports once.
func TestFaultPostgresRestart(t *testing.T) {
	site := newFaultSite(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st := &simStats{}
	var first, second []*simMachine
	for i := range 30 {
		m := newSimMachine(i, 61, []string{site.bases[i%3]}, st)
		m.Think = 300 * time.Millisecond
		first = append(first, m)
	}
	for i := range 12 {
		m := newSimMachine(i, 62, []string{site.bases[i%3]}, st)
		m.Think = 300 * time.Millisecond
		second = append(second, m)
	}
	wait1 := storm(ctx, first, time.Second, 1)
	waitFor(ctx, t, "a third of the documents", func() bool { return st.docs.Load() >= int64(len(first)/3) })
	if err := site.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL stopped with %d documents handed out", st.docs.Load())
	wait2 := storm(ctx, second, 0, 1)
	time.Sleep(3 * time.Second)
	if err := site.pg.Resume(); err != nil {
		t.Fatal(err)
	}
	boots1, errs1 := wait1()
	boots2, errs2 := wait2()
	st.check(t)
	for i, m := range append(first, second...) {
		boots, err := append(boots1, boots2...)[i], append(errs1, errs2...)[i]
		if err != nil || boots != 1 {
			t.Errorf("%s: %d boots: %v", m.MAC, boots, err)
		}
	}
	for _, m := range second {
		if !m.sawWaitScript.Load() {
			t.Errorf("%s powered on during the outage and its console was never told why it waits", m.MAC)
		}
	}
	t.Logf("wait scripts %d, 503s with Retry-After %d", st.waitScript.Load(), st.retryAfter.Load())
	site.checkStore(t, append(first, second...), nil)
}

// failInserts makes the store refuse new rows of table whose column col
// is val (a trigger), as a store that fails at that moment would, and
// returns the function that lifts it. PostgreSQL only.
func failInserts(t *testing.T, conn, table, col, val string) (lift func()) {
	t.Helper()
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		t.Fatal(err)
	}
	raw := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { raw.Close() })
	ctx := context.Background()
	fn := "fail_" + table
	if _, err := raw.ExecContext(ctx, `CREATE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		IF NEW.`+col+`::text = '`+val+`' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER `+fn+` BEFORE INSERT ON `+table+` FOR EACH ROW EXECUTE FUNCTION `+fn+`()`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := raw.ExecContext(ctx, `DROP TRIGGER `+fn+` ON `+table+`; DROP FUNCTION `+fn+`()`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultDocumentTokenGivenBack: the store fails after a boot
// document's single-use token was spent and before the document was made
// (here: the report token cannot be stored). The agent is answered 5xx
// and tries the same URL again: once the store works, that try gets the
// document, not "unknown, used or expired URL" (the token was given
// back); and the token is still single-use.
func TestFaultDocumentTokenGivenBack(t *testing.T) {
	conn := pgtest.Database(t)
	f := newFixServer(t, "store = "+conn+"\n", "", nil)
	const addr = "192.0.2.10"
	path := find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", addr))
	lift := failInserts(t, conn, "boot_tokens", "purpose", "report")
	if r, _ := f.doc(path, addr); r.StatusCode != http.StatusInternalServerError {
		t.Fatalf("the document while the store fails: HTTP %d", r.StatusCode)
	}
	lift()
	var r *http.Response
	for range 100 { // the give-back runs in the background
		if r, _ = f.doc(path, addr); r.StatusCode != http.StatusServiceUnavailable {
			break
		}
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("a try while the token is given back: 503 without Retry-After")
		}
		time.Sleep(giveBackEvery)
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("the agent's next try once the store works: HTTP %d", r.StatusCode)
	}
	if r, _ := f.doc(path, addr); r.StatusCode != http.StatusNotFound {
		t.Errorf("the token worked twice: HTTP %d", r.StatusCode)
	}
}

// TestFaultBootNotRecorded: when the store cannot record a boot (its first
// row), the machine is not handed a kernel script with a document token:
// its document and reports would belong to no boot.
func TestFaultBootNotRecorded(t *testing.T) {
	conn := pgtest.Database(t)
	f := newFixServer(t, "store = "+conn+"\n", "", nil)
	lift := failInserts(t, conn, "boots", "mac", "52:54:00:12:34:56")
	r := f.do(http.MethodGet, "/ipxe?mac=52-54-00-12-34-56", "192.0.2.10", nil)
	if b := body(t, r); r.StatusCode != http.StatusInternalServerError || strings.Contains(b, "/doc/") {
		t.Fatalf("a boot the store could not record: HTTP %d:\n%s", r.StatusCode, b)
	}
	lift()
	if s := f.script("52-54-00-12-34-56", "192.0.2.10"); !strings.Contains(s, "/doc/") {
		t.Errorf("once the store records it:\n%s", s)
	}
}

// TestFaultPostgresDown: PostgreSQL is down for a while (-fault-outage,
// a minute by default) under two servers. Machines that run on a lazy
// root go on reading it (Range reads of the image and its tree: no store
// needed) and a whole download goes on too; machines that power on
// during the outage wait, told why on their console, none gets through
// while the store is down, and all go on to their root once it is back.
// Nothing is answered 500 or hangs, and the store is whole afterwards.
func TestFaultPostgresDown(t *testing.T) {
	outage := *faultOutage
	site := newFaultSite(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), outage+10*time.Minute)
	defer cancel()
	st := &simStats{}
	reading := make(chan struct{})
	var running, fresh []*simMachine
	for i := range 6 {
		m := newSimMachine(i, 63, []string{site.bases[i%2]}, st)
		m.Reading = reading
		running = append(running, m)
	}
	for i := range 6 {
		fresh = append(fresh, newSimMachine(i, 64, []string{site.bases[i%2]}, st))
	}
	waitRunning := storm(ctx, running, 0, 1)
	waitFor(ctx, t, "the running machines on their roots", func() bool { return st.running.Load() == int64(len(running)) })
	if err := site.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL stopped for %v", outage)
	downAt, reads0 := time.Now(), st.imageReads.Load()
	waitFresh := storm(ctx, fresh, 0, 1)
	// A whole download (the RAM lower's) while the store is down.
	for _, m := range running[:2] {
		code, b, err := m.do(ctx, http.MethodGet, m.kernel, "", nil, "artifact")
		if err != nil || code != http.StatusOK || len(b) != 64<<10 {
			t.Errorf("%s: a whole download while the store is down: HTTP %d, %d bytes, %v", m.MAC, code, len(b), err)
		}
	}
	time.Sleep(time.Until(downAt.Add(outage)))
	for _, m := range fresh {
		if m.done.Load() {
			t.Errorf("%s powered on during the outage and got through it", m.MAC)
		}
	}
	readsDown := st.imageReads.Load() - reads0
	if err := site.pg.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL started again; the running machines read their roots %d times meanwhile", readsDown)
	if readsDown < int64(len(running)) {
		t.Errorf("the running machines read their roots %d times during the outage", readsDown)
	}
	bootsF, errsF := waitFresh()
	close(reading)
	bootsR, errsR := waitRunning()
	st.check(t)
	for i, m := range append(running, fresh...) {
		boots, err := append(bootsR, bootsF...)[i], append(errsR, errsF...)[i]
		if err != nil || boots != 1 {
			t.Errorf("%s: %d boots: %v", m.MAC, boots, err)
		}
	}
	for _, m := range fresh {
		if !m.sawWaitScript.Load() {
			t.Errorf("%s powered on during the outage and its console was never told why it waits", m.MAC)
		}
	}
	site.checkStore(t, append(running, fresh...), nil)
}

// TestFaultServerKilled: two servers on one store; one is killed
// (connections cut, no drain) while a storm of machines boots through
// both. Every machine reaches its last report: those whose server died
// boot again through the other (as a machine whose DHCP offers two
// servers does), none is lost, and the store is whole afterwards.
func TestFaultServerKilled(t *testing.T) {
	site := newFaultSite(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st := &simStats{}
	var ms []*simMachine
	for i := range 24 {
		m := newSimMachine(i, 65, []string{site.bases[i%2], site.bases[(i+1)%2]}, st)
		m.Think = 200 * time.Millisecond
		ms = append(ms, m)
	}
	wait := storm(ctx, ms, time.Second, 3)
	waitFor(ctx, t, "a fifth of the documents", func() bool { return st.docs.Load() >= int64(len(ms)/5) })
	site.stops[0]()
	t.Logf("server 0 killed with %d documents handed out", st.docs.Load())
	boots, errs := wait()
	st.check(t)
	again := 0
	lossy := map[string]bool{}
	for i, m := range ms {
		if errs[i] != nil || !m.done.Load() {
			t.Errorf("%s: lost after %d boots: %v", m.MAC, boots[i], errs[i])
		}
		if m.lostReports.Load() > 0 {
			lossy[m.MAC] = true
		}
		if boots[i] > 1 {
			again++
		}
	}
	if again == 0 {
		t.Error("no machine had to boot again: the kill hit nobody")
	}
	t.Logf("%d machines booted again through the other server; %d reached their root with reports lost with the server", again, len(lossy))
	site.checkStore(t, ms, lossy)
}
