package main

// The storm's simulated machine: what one diskless machine with a lazy
// root does over HTTP from its iPXE script to its last phase report, from
// its own address. It follows every URL list in order (the first source
// that answers), as iPXE does with "kernel A || kernel B" and the keeper
// with a document's mirrors, and after a failure it can only recover
// from (a script, document or report that does not come, or every source
// of an artifact failing) it boots again from the start through the next
// server it was offered, as a machine whose DHCP or ProxyDHCP names two
// servers does.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overboot/overboot/boot"
)

// byteRange is one Range request: Len bytes from Off.
type byteRange struct{ Off, Len int64 }

// stormSpec is what every simulated machine does, the same for all.
type stormSpec struct {
	// ImageReads are the lazy root's reads of its image, and TreeReads
	// of its dm-verity tree (clipped to the tree's size), in order.
	ImageReads, TreeReads []byteRange
	Attempts              int           // whole boots tried, through the servers in turn
	Retry                 time.Duration // the pause before the next attempt
	Timeout               time.Duration // one request, headers to last byte
}

// stormMachine is one simulated machine.
type stormMachine struct {
	MAC  string // 02:..., as iPXE's ${net0/mac}
	Addr net.IP // its own source address
	// Servers are the base URLs (http://HOST:PORT) its DHCP offers, in
	// order: each whole boot goes through the next.
	Servers []string
}

// failure is one request that failed: the machine went on to the next
// source, or gave up the attempt.
type failure struct {
	At   time.Duration // since the storm's start
	Base string        // scheme://host:port of the request
	Err  error
}

// machineOutcome is what one machine saw.
type machineOutcome struct {
	Done     bool // its last report was answered
	Attempts int  // whole boots begun
	// ToDoc and ToLast are the time from the storm's start to its
	// document and to its last report's answer (the attempt that got
	// there).
	ToDoc, ToLast time.Duration
	Failures      []failure
	Bytes         map[string]int64 // artifact bytes received, by base URL
	// Latency holds the time of each answered script, document and
	// report request (sending to the last byte), by kind.
	Latency [nControl][]time.Duration
	Err     error // why the last attempt failed, when not Done
}

// The control requests, whose answers the store makes.
const (
	cScript = iota
	cDoc
	cReport
	nControl
)

var controlNames = [nControl]string{"GET /ipxe", "GET /doc/TOKEN", "POST /report/TOKEN"}

var controlShort = [nControl]string{"/ipxe", "/doc", "/report"}

// stormProgress counts what all machines have reached, for progress lines
// and for the moment a server is killed. Safe for concurrent use.
type stormProgress struct {
	docs, done, failed, retries atomic.Int64
}

// bootScript is what a kernel script tells iPXE to fetch.
type bootScript struct {
	Kernel  []string   // the kernel's URLs, in their "||" order
	Initrds [][]string // each initrd's URLs, in order
	Doc     string     // overboot.doc
}

// parseBootScript reads the URLs of an iPXE kernel script (see
// server/ipxe.KernelScript): "kernel [--name N] URL ARGS || kernel ... ||
// goto ..." and "initrd --name N URL || initrd --name N URL2 || ...",
// the document URL from the first kernel's overboot.doc argument.
func parseBootScript(s string) (bootScript, error) {
	var b bootScript
	for _, line := range strings.Split(s, "\n") {
		var kernel, initrd []string
		for _, cmd := range strings.Split(line, "||") {
			f := strings.Fields(cmd)
			if len(f) == 0 || (f[0] != "kernel" && f[0] != "initrd") {
				continue
			}
			u := ""
			for _, a := range f[1:] {
				if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
					u = a
					break
				}
			}
			if u == "" {
				return bootScript{}, fmt.Errorf("script line %q: %s without a URL", strings.TrimSpace(line), f[0])
			}
			if f[0] == "initrd" {
				initrd = append(initrd, u)
				continue
			}
			kernel = append(kernel, u)
			for _, a := range f[1:] {
				if d, ok := strings.CutPrefix(a, "overboot.doc="); ok && b.Doc == "" {
					b.Doc = d
				}
			}
		}
		switch {
		case kernel != nil && b.Kernel != nil:
			return bootScript{}, errors.New("script loads two kernels")
		case kernel != nil:
			b.Kernel = kernel
		case initrd != nil:
			b.Initrds = append(b.Initrds, initrd)
		}
	}
	switch {
	case b.Kernel == nil:
		return b, fmt.Errorf("script without a kernel:\n%s", tail(s, 10))
	case b.Initrds == nil:
		return b, errors.New("script without an initrd")
	case b.Doc == "":
		return b, errors.New("script's kernel has no overboot.doc")
	}
	return b, nil
}

// stormReports are the agent's reports of a document boot with a lazy
// lower and a tmpfs upper (no disk phase), in order: every phase running
// then ok, and switch_root running only (on success the agent becomes the
// root's init). The agent holds its reports until the document names
// where they go, so the first eight leave together after it.
func stormReports() (early, lower, rest [][]byte, err error) {
	up := 0.5
	mk := func(phase string, secs float64, ok bool) []byte {
		r := boot.PhaseReport{Phase: phase, Outcome: boot.OutcomeRunning, Uptime: up}
		if ok {
			up += secs
			r = boot.PhaseReport{Phase: phase, Outcome: boot.OutcomeOK, Seconds: secs, Uptime: up}
		}
		b, e := r.Marshal()
		err = errors.Join(err, e)
		return b
	}
	for _, p := range []string{boot.PhaseEarly, boot.PhaseModules, boot.PhaseNetwork, boot.PhaseDocument} {
		early = append(early, mk(p, 0, false), mk(p, 0.2, true))
	}
	lower = [][]byte{mk(boot.PhaseLower, 0, false), mk(boot.PhaseLower, 0.3, true)}
	for _, p := range []string{boot.PhaseUpper, boot.PhaseOverlay} {
		rest = append(rest, mk(p, 0, false), mk(p, 0.05, true))
	}
	rest = append(rest, mk(boot.PhaseSwitchRoot, 0, false))
	return early, lower, rest, err
}

// readBufs are body read buffers: a Go client needs a large one to keep
// up on loopback, and only requests in flight hold one.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// stormClient is one machine's HTTP client: connections from its address.
func stormClient(ip net.IP) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConnsPerHost: 2, DisableCompression: true,
		ReadBufferSize: 64 << 10, IdleConnTimeout: time.Minute,
	}}
}

// baseOf is a URL's scheme://host:port.
func baseOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}

// bootRun is one machine's boot in progress.
type bootRun struct {
	spec  *stormSpec
	m     stormMachine
	c     *http.Client
	start time.Time
	prog  *stormProgress
	out   *machineOutcome
	reps  [3][][]byte // stormReports
}

// run boots machine m through its servers in turn, at most spec.Attempts
// times, and says what it saw. start is the storm's start.
func (sp *stormSpec) run(ctx context.Context, m stormMachine, start time.Time, prog *stormProgress) machineOutcome {
	out := machineOutcome{Bytes: map[string]int64{}}
	early, lower, rest, err := stormReports()
	if err != nil {
		out.Err = err
		return out
	}
	c := stormClient(m.Addr)
	defer c.CloseIdleConnections()
	r := &bootRun{spec: sp, m: m, c: c, start: start, prog: prog, out: &out, reps: [3][][]byte{early, lower, rest}}
	for i := 0; i < sp.Attempts && ctx.Err() == nil; i++ {
		if i > 0 {
			prog.retries.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(sp.Retry):
			}
		}
		out.Attempts++
		base := m.Servers[i%len(m.Servers)]
		if out.Err = r.attempt(ctx, base); out.Err == nil {
			out.Done = true
			prog.done.Add(1)
			return out
		}
	}
	return out
}

// attempt is one whole boot through the server at base.
func (r *bootRun) attempt(ctx context.Context, base string) error {
	mac := strings.ReplaceAll(r.m.MAC, ":", "-")
	script, err := r.get(ctx, cScript, base+"/ipxe?mac="+mac, nil, 200)
	if err != nil {
		return fmt.Errorf("script: %w", err)
	}
	bs, err := parseBootScript(string(script))
	if err != nil {
		return err
	}
	if err := r.first(ctx, "kernel", bs.Kernel, nil); err != nil {
		return err
	}
	for i, urls := range bs.Initrds {
		if err := r.first(ctx, fmt.Sprintf("initrd %d", i), urls, nil); err != nil {
			return err
		}
	}
	b, err := r.get(ctx, cDoc, bs.Doc, nil, 200)
	if err != nil {
		return fmt.Errorf("document: %w", err)
	}
	doc, err := boot.ParseDocument(bytes.NewReader(b))
	if err != nil {
		return err
	}
	h := doc.Lower.HTTP
	if h == nil || h.Mode != boot.LowerLazy || h.Verity == nil || doc.Report == "" {
		return errors.New("document: not a lazy root with a dm-verity tree and a report URL")
	}
	r.out.ToDoc = time.Since(r.start)
	r.prog.docs.Add(1)
	if err := r.report(ctx, doc.Report, r.reps[0]); err != nil {
		return err
	}
	if err := r.report(ctx, doc.Report, r.reps[1][:1]); err != nil {
		return err
	}
	for _, rg := range r.spec.ImageReads {
		if rg.Off+rg.Len > h.Size {
			return fmt.Errorf("image read %d+%d beyond its %d bytes", rg.Off, rg.Len, h.Size)
		}
		if err := r.first(ctx, "image", h.URLs(), &rg); err != nil {
			return err
		}
	}
	for _, rg := range r.spec.TreeReads {
		if rg.Off >= h.Verity.HashSize {
			continue
		}
		rg.Len = min(rg.Len, h.Verity.HashSize-rg.Off)
		if err := r.first(ctx, "tree", h.Verity.HashURLs(), &rg); err != nil {
			return err
		}
	}
	if err := r.report(ctx, doc.Report, r.reps[1][1:]); err != nil {
		return err
	}
	if err := r.report(ctx, doc.Report, r.reps[2]); err != nil {
		return err
	}
	r.out.ToLast = time.Since(r.start)
	return nil
}

// report posts reports in order; any failure ends the attempt.
func (r *bootRun) report(ctx context.Context, u string, reps [][]byte) error {
	for _, rep := range reps {
		if _, err := r.get(ctx, cReport, u, rep, http.StatusNoContent); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

// first reads what from the first of urls that answers (all of it, or
// the range rg), counting the bytes by source.
func (r *bootRun) first(ctx context.Context, what string, urls []string, rg *byteRange) error {
	for _, u := range urls {
		n, err := r.fetch(ctx, u, rg)
		if err == nil {
			r.out.Bytes[baseOf(u)] += n
			return nil
		}
	}
	return fmt.Errorf("%s: none of its %d sources answered", what, len(urls))
}

// get sends a control request of kind, a GET (or a POST of body), and
// returns the answer's body; an answer other than want is a failure.
func (r *bootRun) get(ctx context.Context, kind int, u string, body []byte, want int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.spec.Timeout)
	defer cancel()
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t := time.Now()
	resp, err := r.c.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != want {
			err = &statusError{method, redact(req.URL.Path), resp.Status, strings.ReplaceAll(strings.TrimSpace(tail(string(b), 3)), "\n", " | ")}
		}
		if err == nil {
			r.out.Latency[kind] = append(r.out.Latency[kind], time.Since(t))
			return b, nil
		}
	}
	return nil, r.failed(method, req.URL, err)
}

// fetch reads u (whole: a 200; or the range rg: a 206 of exactly that
// length) and discards the bytes; it returns how many came.
func (r *bootRun) fetch(ctx context.Context, u string, rg *byteRange) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.spec.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	want, wantLen := http.StatusOK, int64(-1)
	if rg != nil {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rg.Off, rg.Off+rg.Len-1))
		want, wantLen = http.StatusPartialContent, rg.Len
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return 0, r.failed(http.MethodGet, req.URL, err)
	}
	defer resp.Body.Close()
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	var n int64
	for {
		k, rerr := resp.Body.Read(*bp)
		n += int64(k)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, r.failed(http.MethodGet, req.URL, fmt.Errorf("after %d bytes: %w", n, rerr))
		}
	}
	switch {
	case resp.StatusCode != want:
		err = &statusError{http.MethodGet, req.URL.Path, resp.Status, ""}
	case wantLen >= 0 && n != wantLen:
		err = fmt.Errorf("%s: %d bytes for a range of %d", req.URL.Path, n, wantLen)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		err = fmt.Errorf("%s: %d bytes of %d", req.URL.Path, n, resp.ContentLength)
	}
	if err != nil {
		return n, r.failed(http.MethodGet, req.URL, err)
	}
	return n, nil
}

// failed records a failed request and returns its error, with the
// request named and no token shown.
func (r *bootRun) failed(method string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) { // its message would show the URL's token
		err = ue.Err
	}
	var se *statusError
	if !errors.As(err, &se) {
		err = fmt.Errorf("%s %s%s: %w", method, u.Host, redact(u.Path), err)
	}
	r.out.Failures = append(r.out.Failures, failure{At: time.Since(r.start), Base: u.Scheme + "://" + u.Host, Err: err})
	r.prog.failed.Add(1)
	return err
}
