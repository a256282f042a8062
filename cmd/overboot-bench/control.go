package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// The control section measures the control plane: logins at a menu and
// many machines booting at once, against `overboot serve` (a child
// process, so its RSS is its own) on 127.0.0.1 over real TCP. Each
// simulated machine talks from its own loopback address (127.0.0.0/8 is
// all loopback on Linux), so the server's per-address rate limits and
// address-bound tokens apply as they would on a network.
func controlSection() Section {
	return Section{Name: "control", Run: runControl}
}

const (
	ctlUsers       = 10000 // users in the store
	ctlMachines    = 1000  // machine records in the store (enrolled)
	ctlLogins      = 200   // logins one after another: p50/p99
	ctlLoginBurst  = 20    // then logins at once (argon2id memory per login)
	ctlBoots       = 200   // machines booting at once
	ctlDiskSize    = "64M" // upper-disk-size: 200 sparse disks fit anywhere
	ctlPassword    = "bench-password-0"
	ctlSeedVersion = 1 // bump when the seed store's contents change
)

// runControl runs both scenarios over one store: the login server first
// (profile default: upper = iscsi, enroll = login), then the same data
// directory under a second server whose profile is enroll = open-insecure
// for the machines that boot at once.
func runControl(ctx context.Context, env *Env) ([]Result, error) {
	bin := filepath.Join(env.BuildDir, "overboot")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (make build)", bin, err)
	}
	if err := os.MkdirAll(env.WorkDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(env.WorkDir, "control-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	abs, err := filepath.Abs(tmp)
	if err != nil {
		return nil, err
	}
	tmp = abs
	for name, body := range map[string]string{"kernel": "BENCH-KERNEL", "initramfs": "BENCH-INITRAMFS", "root": "BENCH-ROOT-IMAGE"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(tmp, "data")
	t0 := time.Now()
	seed, params, cached, err := seedStore(ctx, env, data)
	if err != nil {
		return nil, fmt.Errorf("seed the store: %w", err)
	}
	how := "made"
	if cached {
		how = "copied from the cache"
	}
	fmt.Fprintf(env.Out, "store: %d users, %d enrolled machines (%s in %.1fs; %s)\n", ctlUsers, ctlMachines, how, time.Since(t0).Seconds(), seed)
	fmt.Fprintf(env.Out, "users share one argon2id hash (%s, made by enroll.HashPassword) copied %d times: hashing each at the real cost would take long, and a login verifies one hash either way\n", params, ctlUsers)
	fmt.Fprintf(env.Out, "server: %s serve --config FILE (child process; the client is this process); data %s\n", bin, data)

	var rs []Result
	var errs []error
	lr, err := runLogins(ctx, env, bin, tmp, data)
	rs = append(rs, lr...)
	if err != nil {
		errs = append(errs, fmt.Errorf("logins: %w", err))
	}
	if ctx.Err() == nil {
		br, err := runBoots(ctx, env, bin, tmp, data)
		rs = append(rs, br...)
		if err != nil {
			errs = append(errs, fmt.Errorf("machines at once: %w", err))
		}
	}
	return rs, errors.Join(errs...)
}

// seedStore puts the seed store at data/state.db: copied from the cache
// (10,000 users and 1,000 machines take a while to insert one fsync'd
// transaction at a time), else made through the state API (AddUser,
// SeeMachine) and cached. The cache's name carries the hash's parameters
// (from a hash made now) and the schema version, so a change to either
// makes a new one. It returns the cache's path and the parameters.
func seedStore(ctx context.Context, env *Env, data string) (seed, params string, cached bool, err error) {
	hash, err := enroll.HashPassword(ctlPassword)
	if err != nil {
		return "", "", false, err
	}
	if f := strings.Split(hash, "$"); len(f) == 6 {
		params = f[3]
	}
	seed = filepath.Join(env.WorkDir, "control", fmt.Sprintf("seed-v%d-%du-%dm-schema%d-%s.db",
		ctlSeedVersion, ctlUsers, ctlMachines, state.SchemaVersion, strings.NewReplacer("=", "", ",", "-").Replace(params)))
	cached, err = makeSeed(ctx, seed, hash, filepath.Join(data, state.FileName))
	return seed, params, cached, err
}

func makeSeed(ctx context.Context, seed, hash, dst string) (cached bool, err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false, err
	}
	if _, err := os.Stat(seed); err == nil {
		return true, copyFile(seed, dst, 0o600)
	}
	db, err := state.Open(dst)
	if err != nil {
		return false, err
	}
	defer db.Close()
	for i := range ctlUsers {
		if err := db.AddUser(ctx, ctlUser(i), hash); err != nil {
			return false, err
		}
	}
	for i := range ctlMachines {
		m := state.Machine{MAC: ctlMAC(0, i), Profile: "default", Address: ctlAddr(1, i).String()}
		if _, err := db.Enter(ctx, m, "login", state.Quota{}); err != nil {
			return false, err
		}
	}
	if err := db.Close(); err != nil { // checkpoints the WAL into the file
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(seed), 0o755); err != nil {
		return false, err
	}
	if err := copyFile(dst, seed+".partial", 0o600); err != nil {
		return false, err
	}
	return false, os.Rename(seed+".partial", seed)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func ctlUser(i int) string { return fmt.Sprintf("user%05d", i) }

// ctlMAC is machine i of group g (0: the store's enrolled machines, 1:
// the machines that boot at once).
func ctlMAC(g, i int) string {
	return fmt.Sprintf("02:00:%02x:00:%02x:%02x", g, i>>8, i&0xff)
}

// ctlAddr is client i's loopback address in block b: 127.b.x.y, never
// 127.0.0.1 (the server's).
func ctlAddr(b, i int) net.IP {
	return net.IPv4(127, byte(b), byte(i/250), byte(i%250+1))
}

// child is a running `overboot serve`.
type child struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	log  string // its stdout and stderr
	done chan error
	once sync.Once
}

func startServer(ctx context.Context, bin, dir, name, data, profile string) (*child, error) {
	port, iport := freePort(), freePort()
	conf := fmt.Sprintf("[server]\nlisten = 127.0.0.1:%s\niscsi = 127.0.0.1:%s\ndata = %s\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nupper = iscsi\nupper-disk-size = %s\n%s",
		port, iport, data, filepath.Join(dir, "kernel"), filepath.Join(dir, "initramfs"), filepath.Join(dir, "root"), ctlDiskSize, profile)
	confPath := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startServe(ctx, bin, confPath, filepath.Join(dir, name+".log"), "http://127.0.0.1:"+port)
}

// startServe runs `overboot serve --config confPath` (output to logPath)
// and waits until it answers GET /boot.ipxe at base.
func startServe(ctx context.Context, bin, confPath, logPath, base string) (*child, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(bin, "serve", "--config", confPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, base: base, log: logPath, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	for i := 0; ; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/boot.ipxe", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c, nil
			}
		}
		select {
		case err := <-c.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("overboot serve exited (%v):\n%s", err, tail(string(b), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if i > 300 || ctx.Err() != nil {
			c.stop()
			return nil, fmt.Errorf("overboot serve did not answer on %s", c.base)
		}
	}
}

// rss is the server's VmHWM and VmRSS, in MB.
func (c *child) rss() (hwm, cur float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		var kb float64
		fmt.Sscan(f[1], &kb)
		switch f[0] {
		case "VmHWM:":
			hwm = kb / 1024
		case "VmRSS:":
			cur = kb / 1024
		}
	}
	return hwm, cur
}

// stop ends the server (SIGINT: a graceful shutdown; SIGKILL after 40s).
func (c *child) stop() {
	c.once.Do(func() {
		c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.done:
		case <-time.After(40 * time.Second):
			c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
		}
	})
}

// logIssues returns the server log's WARN and ERROR lines, and how many
// mention SQLite lock contention.
func (c *child) logIssues() (lines []string, busy int) {
	b, _ := os.ReadFile(c.log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
			low := strings.ToLower(l)
			if strings.Contains(low, "busy") || strings.Contains(low, "locked") {
				busy++
			}
		}
	}
	return lines, busy
}

var (
	logMsgRE = regexp.MustCompile(`msg=("[^"]*"|\S+)`)
	logErrRE = regexp.MustCompile(`err=("[^"]*"|\S+)`)
)

// printIssues prints the server log's WARN and ERROR lines grouped by
// message and error, with a count and one example each.
func printIssues(env *Env, c *child) (int, int) {
	lines, busy := c.logIssues()
	fmt.Fprintf(env.Out, "server log: %d WARN/ERROR lines (%d about SQLITE_BUSY or a locked database)\n", len(lines), busy)
	count := map[string]int{}
	example := map[string]string{}
	var keys []string
	for _, l := range lines {
		key := logMsgRE.FindString(l) + " " + logErrRE.FindString(l)
		if count[key] == 0 {
			keys = append(keys, key)
			example[key] = l
		}
		count[key]++
	}
	slices.SortStableFunc(keys, func(a, b string) int { return count[b] - count[a] })
	for i, k := range keys {
		if i == 10 {
			fmt.Fprintf(env.Out, "  ... %d more kinds\n", len(keys)-10)
			break
		}
		l := example[k]
		if len(l) > 300 {
			l = l[:300] + "..."
		}
		fmt.Fprintf(env.Out, "  %d x, e.g. %s\n", count[k], l)
	}
	return len(lines), busy
}

// printErrors prints how many errors of each kind, then the first few.
func printErrors(env *Env, errs []error) {
	count := map[string]int{}
	var keys []string
	for _, err := range errs {
		k := errKind(err)
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	for _, k := range keys {
		fmt.Fprintf(env.Out, "  errors: %d x %s\n", count[k], k)
	}
	for i, err := range errs {
		if i == 3 {
			fmt.Fprintf(env.Out, "  ... %d more errors\n", len(errs)-3)
			break
		}
		fmt.Fprintf(env.Out, "  error: %v\n", err)
	}
}

// statusError is a non-2xx answer.
type statusError struct {
	method, path, status, body string // path without its query, tokens hidden
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: %s: %s", e.method, e.path, e.status, e.body)
}

var machinePrefixRE = regexp.MustCompile(`^machine [0-9]+: `)

// errKind names an error for counting: the request and its status, or
// what else went wrong.
func errKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.method + " " + se.path + ": " + se.status
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "transport: " + ne.Error()
	}
	msg := machinePrefixRE.ReplaceAllString(err.Error(), "")
	if i := strings.IndexAny(msg, ":\n"); i > 0 {
		msg = msg[:i]
	}
	return msg
}

// clientFrom is an HTTP client whose connections come from ip.
func clientFrom(ip net.IP) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableCompression: true},
		Timeout:   10 * time.Minute,
	}
}

// call sends one request and reads the whole answer: its status, body and
// the time from sending to the last byte. A non-2xx answer is an error.
func call(ctx context.Context, c *http.Client, method, u string, body []byte) ([]byte, time.Duration, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message would show the URL's token
			err = fmt.Errorf("%s %s: %w", method, redact(req.URL.Path), ue.Err)
		}
		return nil, time.Since(t), err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t)
	if err != nil {
		return b, d, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return b, d, &statusError{method, redact(req.URL.Path), resp.Status, strings.ReplaceAll(strings.TrimSpace(tail(string(b), 3)), "\n", " | ")}
	}
	return b, d, nil
}

var tokenRE = regexp.MustCompile(`/(doc|login|report|san|entry)/[0-9a-f]{64}`)

// redact hides tokens and query strings (passwords) in error messages.
func redact(u string) string {
	u, _, _ = strings.Cut(u, "?")
	return tokenRE.ReplaceAllString(u, "/$1/TOKEN")
}

// pct is the nearest-rank percentile of ds, in ms.
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

var (
	loginURLRE = regexp.MustCompile(`(/login/[0-9a-f]{64})\?username=`)
	docURLRE   = regexp.MustCompile(`overboot\.doc=(http://\S+/doc/[0-9a-f]{64})`)
)

func ctlResult(metric string, v float64, goal, note string) Result {
	return Result{Section: "control", Metric: metric, Ours: v, RefName: "-", Better: "lower", Goal: goal, Note: note}
}

// runLogins: logins to a personal root, one after another, each from its
// own address as its own user (the limits are 5 tries per user and 10 per
// address: one each here), then a burst of logins at once.
func runLogins(ctx context.Context, env *Env, bin, dir, data string) ([]Result, error) {
	srv, err := startServer(ctx, bin, dir, "login", data, "enroll = login\nmax-machines = unlimited\n")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	hwm0, _ := srv.rss()

	// prepare fetches the menu of the store's machine k from address a
	// and makes user u's login URL from it; login sends it and returns
	// the time from sending to the last byte of the kernel script.
	type prepared struct {
		c        *http.Client
		user     string
		loginURL string
	}
	prepare := func(k, u, a int) (prepared, error) {
		c := clientFrom(ctlAddr(2, a))
		mac := strings.ReplaceAll(ctlMAC(0, k), ":", "-")
		menu, _, err := call(ctx, c, http.MethodGet, srv.base+"/ipxe?mac="+mac, nil)
		if err != nil {
			return prepared{}, fmt.Errorf("menu: %w", err)
		}
		m := loginURLRE.FindStringSubmatch(string(menu))
		if m == nil {
			return prepared{}, fmt.Errorf("menu without a login URL:\n%s", tail(string(menu), 10))
		}
		// The menu sends the form in hex (${username:hexraw}).
		q := url.Values{"username": {hex.EncodeToString([]byte(ctlUser(u)))}, "password": {hex.EncodeToString([]byte(ctlPassword))}}
		return prepared{c: c, user: ctlUser(u), loginURL: srv.base + m[1] + "?" + q.Encode()}, nil
	}
	login := func(p prepared) (time.Duration, error) {
		defer p.c.CloseIdleConnections()
		b, d, err := call(ctx, p.c, http.MethodGet, p.loginURL, nil)
		if err != nil {
			return d, err
		}
		if s := string(b); !docURLRE.MatchString(s) || !strings.Contains(s, "user "+p.user) {
			return d, fmt.Errorf("login answer is not the user's kernel script:\n%s", tail(s, 10))
		}
		return d, nil
	}

	fmt.Fprintf(env.Out, "%d logins one after another (GET /ipxe for the menu, then GET /login/TOKEN timed to the last byte of the kernel script), each from its own address as its own user; then %d at once\n", ctlLogins, ctlLoginBurst)
	var times []time.Duration
	var errs []error
	t0 := time.Now()
	for i := range ctlLogins {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p, err := prepare(i*ctlMachines/ctlLogins, i*ctlUsers/ctlLogins, i)
		if err == nil {
			var d time.Duration
			d, err = login(p)
			if err == nil {
				times = append(times, d)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	seqWall := time.Since(t0)
	hwmSeq, _ := srv.rss()

	// The burst: every menu first, then all the logins at once.
	var burst []prepared
	for j := range ctlLoginBurst {
		// Machines, users and addresses none of the logins above used.
		p, err := prepare(j*ctlMachines/ctlLoginBurst+3, j*ctlUsers/ctlLoginBurst+25, ctlLogins+j)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		burst = append(burst, p)
	}
	btimes := make([]time.Duration, len(burst))
	berrs := make([]error, len(burst))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for j, p := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			btimes[j], berrs[j] = login(p)
		}()
	}
	tb := time.Now()
	close(start)
	wg.Wait()
	burstWall := time.Since(tb)
	var bok []time.Duration
	for j := range burst {
		if berrs[j] != nil {
			errs = append(errs, berrs[j])
		} else {
			bok = append(bok, btimes[j])
		}
	}
	hwmBurst, rssEnd := srv.rss()
	srv.stop()

	fmt.Fprintf(env.Out, "logins, one after another: %d ok of %d in %.1fs; login p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		len(times), ctlLogins, seqWall.Seconds(), pct(times, 50), pct(times, 99), pct(times, 100))
	fmt.Fprintf(env.Out, "logins, %d at once: %d ok in %.2fs; p50 %.1f ms, max %.1f ms\n", len(burst), len(bok), burstWall.Seconds(), pct(bok, 50), pct(bok, 100))
	fmt.Fprintf(env.Out, "login server VmHWM: %.0f MB at start, %.0f MB after the one-at-a-time logins, %.0f MB after %d at once (VmRSS at the end %.0f MB)\n",
		hwm0, hwmSeq, hwmBurst, len(burst), rssEnd)
	printErrors(env, errs)
	nIssues, nBusy := printIssues(env, srv)
	rs := []Result{
		ctlResult(fmt.Sprintf("login to personal root, p50, ms (n=%d)", len(times)), pct(times, 50), "report", "10k users; GET /login/TOKEN to the kernel script"),
		ctlResult(fmt.Sprintf("login to personal root, p99, ms (n=%d)", len(times)), pct(times, 99), "report", "one after another, each its own address and user"),
		ctlResult("login errors", float64(len(errs)), "= 0", ""),
		ctlResult(fmt.Sprintf("%d logins at once: wall, s", len(burst)), burstWall.Seconds(), "report", "argon2id: 64 MiB per verification in flight"),
		ctlResult("login server peak RSS, MB (one at a time)", hwmSeq, "report", "VmHWM of overboot serve"),
		ctlResult(fmt.Sprintf("login server peak RSS, MB (%d at once)", len(burst)), hwmBurst, "report", "VmHWM of overboot serve"),
		ctlResult("login server log: WARN/ERROR lines", float64(nIssues), "report", fmt.Sprintf("%d about SQLITE_BUSY/locked", nBusy)),
	}
	if len(errs) > 0 {
		return rs, fmt.Errorf("%d errors (first: %v)", len(errs), errs[0])
	}
	return rs, nil
}

// request kinds of a simulated boot.
const (
	kBootstrap = iota
	kScript
	kDoc
	kReport
	nKinds
)

var kindNames = [nKinds]string{"GET /boot.ipxe", "GET /ipxe", "GET /doc/TOKEN", "POST /report/TOKEN"}

// phaseReports are the 18 reports each simulated machine posts: every
// phase of boot.Phases, running then ok.
func phaseReports() ([][]byte, error) {
	var out [][]byte
	up := 1.0
	for i, p := range boot.Phases {
		secs := 0.1 + float64(i)*0.2
		for _, r := range []boot.PhaseReport{
			{Phase: p, Outcome: boot.OutcomeRunning, Uptime: up},
			{Phase: p, Outcome: boot.OutcomeOK, Seconds: secs, Uptime: up + secs, Message: "bench"},
		} {
			b, err := r.Marshal()
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		up += secs
	}
	return out, nil
}

// machineRun is one simulated machine's boot.
type machineRun struct {
	times [nKinds][]time.Duration
	errs  []error
}

// runBoots: ctlBoots machines at once, each from its own address: the
// chain script, its script, its document (which creates its disk), then
// its phase reports.
func runBoots(ctx context.Context, env *Env, bin, dir, data string) ([]Result, error) {
	reports, err := phaseReports()
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, bin, dir, "machines", data, "enroll = open-insecure\nmax-machines = unlimited\n")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	hwm0, _ := srv.rss()

	fmt.Fprintf(env.Out, "%d machines at once, each from its own address: GET /boot.ipxe, GET /ipxe, GET /doc/TOKEN (creates its %s disk), then %d phase reports (every phase of boot.Phases, running then ok; a real document boot sends 15: no disk phase, no ok for switch_root; the server does not check the order)\n",
		ctlBoots, ctlDiskSize, len(reports))
	runs := make([]machineRun, ctlBoots)
	boot1 := func(i int, r *machineRun) {
		c := clientFrom(ctlAddr(3, i))
		defer c.CloseIdleConnections()
		mac := strings.ReplaceAll(ctlMAC(1, i), ":", "-")
		do := func(k int, method, u string, body []byte) ([]byte, bool) {
			b, d, err := call(ctx, c, method, u, body)
			if err != nil {
				r.errs = append(r.errs, fmt.Errorf("machine %d: %w", i, err))
				return nil, false
			}
			r.times[k] = append(r.times[k], d)
			return b, true
		}
		if b, ok := do(kBootstrap, http.MethodGet, srv.base+"/boot.ipxe", nil); !ok {
			return
		} else if !strings.Contains(string(b), "/ipxe?mac=") {
			r.errs = append(r.errs, fmt.Errorf("machine %d: /boot.ipxe does not chain /ipxe:\n%s", i, tail(string(b), 5)))
			return
		}
		script, ok := do(kScript, http.MethodGet, srv.base+"/ipxe?mac="+mac, nil)
		if !ok {
			return
		}
		m := docURLRE.FindStringSubmatch(string(script))
		if m == nil {
			r.errs = append(r.errs, fmt.Errorf("machine %d: script without a document URL:\n%s", i, tail(string(script), 10)))
			return
		}
		b, ok := do(kDoc, http.MethodGet, m[1], nil)
		if !ok {
			return
		}
		doc, err := boot.ParseDocument(bytes.NewReader(b))
		if err != nil || doc.Report == "" || doc.Upper.ISCSI == nil {
			r.errs = append(r.errs, fmt.Errorf("machine %d: document: %v (report %q)", i, err, redact(doc.Report)))
			return
		}
		for _, rep := range reports {
			do(kReport, http.MethodPost, doc.Report, rep)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			boot1(i, &runs[i])
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	hwm, rssEnd := srv.rss()
	srv.stop()

	var all [nKinds][]time.Duration
	var errs []error
	for _, r := range runs {
		for k := range nKinds {
			all[k] = append(all[k], r.times[k]...)
		}
		errs = append(errs, r.errs...)
	}
	// What the server recorded: every report should be a boot event.
	recorded, recErr := recordedReports(ctx, data)
	// The disks: made by truncate + mkfs.ext4 under the server's disk lock.
	mk, whole, span, nDisks, diskErr := diskTimes(filepath.Join(data, "disks"))

	fmt.Fprintf(env.Out, "%d machines at once: %.1fs wall, %d requests, %d errors; server VmHWM %.0f MB at start, %.0f MB at the end (VmRSS %.0f MB)\n",
		ctlBoots, wall.Seconds(), len(all[kBootstrap])+len(all[kScript])+len(all[kDoc])+len(all[kReport])+len(errs), len(errs), hwm0, hwm, rssEnd)
	for k := range nKinds {
		fmt.Fprintf(env.Out, "  %-20s n=%-5d p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms\n", kindNames[k], len(all[k]), pct(all[k], 50), pct(all[k], 99), pct(all[k], 100))
	}
	if diskErr != nil {
		fmt.Fprintf(env.Out, "  disks: %v\n", diskErr)
	} else {
		var sum time.Duration
		for _, d := range whole {
			sum += d
		}
		fmt.Fprintf(env.Out, "  disks: %d of %s, from their file times (statx birth and modification; the kernel's clock ticks in ms): mkdir to rename (truncate, mkfs.ext4, fsync) p50 %.1f ms, p99 %.1f ms, sum %.2fs; of which file birth to mkfs.ext4's last write p50 %.1f ms, p99 %.1f ms; first disk begun to last renamed %.1fs\n",
			nDisks, ctlDiskSize, pct(whole, 50), pct(whole, 99), sum.Seconds(), pct(mk, 50), pct(mk, 99), span.Seconds())
	}
	if recErr != nil {
		fmt.Fprintf(env.Out, "  recorded reports: %v\n", recErr)
	} else {
		fmt.Fprintf(env.Out, "  reports recorded as boot events: %d of %d answered 2xx\n", recorded, len(all[kReport]))
	}
	printErrors(env, errs)
	nIssues, nBusy := printIssues(env, srv)

	rs := []Result{
		ctlResult(fmt.Sprintf("%d machines at once: errors", ctlBoots), float64(len(errs)), "= 0", "non-2xx or transport errors"),
		ctlResult(fmt.Sprintf("%d machines at once: wall, s", ctlBoots), wall.Seconds(), "report", fmt.Sprintf("3 GETs + %d reports each", len(reports))),
	}
	short := [nKinds]string{"/boot.ipxe", "/ipxe", "/doc (makes the disk)", "/report"}
	for k := range nKinds {
		rs = append(rs,
			ctlResult(short[k]+" p50, ms", pct(all[k], 50), "report", fmt.Sprintf("n=%d", len(all[k]))),
			ctlResult(short[k]+" p99, ms", pct(all[k], 99), "report", ""))
	}
	if diskErr == nil {
		rs = append(rs,
			ctlResult("disk creation p50, ms (mkfs.ext4, fsync)", pct(whole, 50), "report", fmt.Sprintf("%d disks of %s, from file times", nDisks, ctlDiskSize)),
			ctlResult("disk creation p99, ms", pct(whole, 99), "report", ""))
	}
	if recErr == nil {
		rs = append(rs, ctlResult("reports answered 2xx but not recorded", float64(len(all[kReport])-recorded), "= 0", "boot events in the store"))
	}
	rs = append(rs,
		ctlResult("machines server peak RSS, MB", hwm, "report", "VmHWM of overboot serve (child process)"),
		ctlResult("machines server log: WARN/ERROR lines", float64(nIssues), "report", fmt.Sprintf("%d about SQLITE_BUSY/locked; 1 expected (open-insecure)", nBusy)))
	if len(errs) > 0 {
		return rs, fmt.Errorf("%d errors (first: %v)", len(errs), errs[0])
	}
	return rs, nil
}

// recordedReports counts the agent events of the simulated machines'
// latest boots, reading the store after the server stopped.
func recordedReports(ctx context.Context, data string) (int, error) {
	db, err := state.Open(filepath.Join(data, state.FileName))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	for i := range ctlBoots {
		bs, err := db.Boots(ctx, ctlMAC(1, i), 1)
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
		for _, e := range evs {
			if e.Source == "agent" {
				n++
			}
		}
	}
	return n, nil
}

// diskTimes reads the times the file system kept of each upper disk.
// The server makes a disk's directory, creates upper.img.new in it,
// truncates it, formats it with mkfs.ext4 (its last write), syncs it and
// renames it to upper.img (the directory's last change), then syncs the
// directory and marks the row ready. For each disk it returns mkfs (file
// birth to its last write) and whole (directory birth to the rename), and
// the span from the first directory's birth to the last rename.
func diskTimes(dir string) (mkfs, whole []time.Duration, span time.Duration, n int, err error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*", "upper.img"))
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if len(paths) == 0 {
		return nil, nil, 0, 0, fmt.Errorf("no disks under %s", dir)
	}
	stat := func(p string) (born, changed time.Time, err error) {
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BTIME|unix.STATX_MTIME, &st); err != nil {
			return born, changed, err
		}
		if st.Mask&unix.STATX_BTIME == 0 {
			return born, changed, fmt.Errorf("%s: the file system keeps no birth time", p)
		}
		return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)), time.Unix(st.Mtime.Sec, int64(st.Mtime.Nsec)), nil
	}
	var first, last time.Time
	for _, p := range paths {
		fb, fm, err := stat(p)
		if err != nil {
			return nil, nil, 0, len(paths), err
		}
		db, dm, err := stat(filepath.Dir(p))
		if err != nil {
			return nil, nil, 0, len(paths), err
		}
		mkfs = append(mkfs, fm.Sub(fb))
		whole = append(whole, dm.Sub(db))
		if first.IsZero() || db.Before(first) {
			first = db
		}
		if dm.After(last) {
			last = dm
		}
	}
	return mkfs, whole, last.Sub(first), len(paths), nil
}
