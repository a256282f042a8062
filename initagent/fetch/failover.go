package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Failover: one resource (an image, its dm-verity tree) at several URLs
// of the same bytes (servers, HTTP caches), read from the first that
// answers. It is an http.RoundTripper under the caller's client, so Fetch
// and a RangeReader keep their own request, check and retry logic and ask
// for the first URL as before; each such request goes to one source, and,
// when that source fails, to the next, within the same request:
//
//   - a source fails when it cannot be reached, resets or closes the
//     connection, sends no byte for the source stall (headers or body),
//     answers a 5xx, 408, 429, 404 or 410, or 200 to a Range request;
//     it is then left alone for a while (10 s, doubling up to 5 min after
//     each new failure) and the requests go to the next; once that time
//     is up, the next request tries it again first (an earlier source is
//     preferred: the list is in the order of preference);
//   - a source is refused for good when its copy is not the same
//     resource: another size (Content-Range's total, Content-Length of a
//     whole answer, a 416), or an ETag other than the one it gave at
//     first (a 412 to If-Match);
//   - every move from one source to another is logged once, with why.
//
// Sources need not agree on validators (two nginx hosts' ETags differ for
// the same file): each source's own ETag and Last-Modified are learned at
// its first answer, the caller's If-Match and If-Range are translated to
// them (dropped for a source not yet heard from: its size is checked
// instead, and the caller's digest or dm-verity checks the bytes), and
// answers carry the validators of the first source that answered, so the
// caller sees one resource. Bytes are never checked here: the sources
// are as trustworthy as the first, which is to say not at all.
//
// Requests for other URLs (a redirect's target, the boot document, a
// report) pass through unchanged.

// SourceStall is how long a source may send nothing (no answer, no body
// bytes) before a request leaves it for the next source.
const SourceStall = 3 * time.Second

// How long a failed source is left alone: sourceRetry after a first
// failure, doubling after each further one up to sourceRetryMax.
const (
	sourceRetry    = 10 * time.Second
	sourceRetryMax = 5 * time.Minute
)

// FailoverOptions tune WithMirrors. Zero values are the documented
// defaults.
type FailoverOptions struct {
	// ExpectSize, when positive, is the resource's size: a source with
	// another is refused. Otherwise the first answer's size is the one.
	ExpectSize int64
	// Stall is the source stall (0: SourceStall).
	Stall time.Duration
	// Logf receives the moves from one source to another (nil: discard).
	// URLs in them are redacted (RedactImageURL).
	Logf func(format string, args ...any)
}

// WithMirrors returns a copy of client (nil: DefaultClient()) whose
// requests for urls[0] go to the first of urls that answers, as described
// above. With one URL it returns client unchanged.
func WithMirrors(client *http.Client, urls []string, opt FailoverOptions) (*http.Client, error) {
	client = orDefault(client)
	if len(urls) < 2 {
		return client, nil
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	f, err := newFailover(base, urls, opt)
	if err != nil {
		return nil, err
	}
	c := *client
	c.Transport = f
	return &c, nil
}

// failover is the RoundTripper of WithMirrors.
type failover struct {
	base    http.RoundTripper
	primary string // the URL callers ask for: urls[0]
	stall   time.Duration
	retry   time.Duration // sourceRetry; tests shorten it
	logf    func(string, ...any)

	mu    sync.Mutex // guards the fields below and every source's
	srcs  []*source
	cur   int // the source that answered last
	known bool
	size  int64 // the resource's, -1 while unknown
	etag  string
	mtime string // Last-Modified
}

// source is one URL of the resource.
type source struct {
	u       *url.URL
	where   string
	refused error     // not the same resource: never asked again
	down    time.Time // failed: asked again only after this
	fails   int       // failures in a row
	failed  time.Time // when it last failed
	lastErr error     // why it last failed
	heard   bool      // etag and mtime are its own, from its first answer
	etag    string
	mtime   string
}

func newFailover(base http.RoundTripper, urls []string, opt FailoverOptions) (*failover, error) {
	f := &failover{base: base, primary: urls[0], stall: opt.Stall, retry: sourceRetry, logf: opt.Logf, size: -1}
	if f.stall <= 0 {
		f.stall = SourceStall
	}
	if f.logf == nil {
		f.logf = func(string, ...any) {}
	}
	if opt.ExpectSize > 0 {
		f.size = opt.ExpectSize
	}
	seen := map[string]bool{}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("mirror %s: want an http:// or https:// URL", RedactImageURL(raw))
		}
		if seen[raw] {
			return nil, fmt.Errorf("mirror %s given twice", RedactImageURL(raw))
		}
		seen[raw] = true
		f.srcs = append(f.srcs, &source{u: u, where: RedactImageURL(raw)})
	}
	return f, nil
}

// CloseIdleConnections passes on to the transport (http.Client's
// CloseIdleConnections looks for it).
func (f *failover) CloseIdleConnections() {
	if c, ok := f.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// outcome is what one source's answer to one request was.
type outcome int

const (
	answered outcome = iota // the caller gets it
	failed                  // try the next source; this one again later
	refused                 // try the next source; this one never again
)

// RoundTrip implements http.RoundTripper.
func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.String() != f.primary || (req.Method != http.MethodGet && req.Method != http.MethodHead) || (req.Body != nil && req.Body != http.NoBody) {
		return f.base.RoundTrip(req)
	}
	order := f.order()
	if len(order) == 0 {
		// Every source was refused: the first one's answer tells the
		// caller the resource is not what it was.
		return f.base.RoundTrip(req)
	}
	// When no source answers, the caller gets a transient failure if
	// there was one (it retries), else the last refusal.
	var keepResp *http.Response
	var keepErr error
	keepTransient := false
	keep := func(resp *http.Response, err error, transient bool) {
		if keepResp == nil && keepErr == nil || transient || !keepTransient {
			discard(keepResp)
			keepResp, keepErr, keepTransient = resp, err, transient
			return
		}
		discard(resp)
	}
	for _, i := range order {
		if err := req.Context().Err(); err != nil {
			discard(keepResp)
			return nil, err
		}
		sent := time.Now()
		resp, err := f.try(req, i)
		if err != nil && req.Context().Err() != nil {
			return nil, err // the caller's doing, not the source's
		}
		out, why := f.judge(req, i, resp, err)
		switch out {
		case answered:
			discard(keepResp)
			f.answered(i, sent)
			return resp, nil
		case failed:
			f.failed(i, why)
			keep(resp, err, true)
		case refused:
			f.refuse(i, why)
			keep(resp, err, false)
		}
	}
	if keepResp != nil {
		return keepResp, nil
	}
	return nil, keepErr
}

// order is the sources to try, in the order of preference: those not
// failed lately first, then the others (the list may be all down: the
// caller's retry then still finds the first that is back).
func (f *failover) order() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	var up, down []int
	for i, s := range f.srcs {
		switch {
		case s.refused != nil:
		case now.Before(s.down):
			down = append(down, i)
		default:
			up = append(up, i)
		}
	}
	return append(up, down...)
}

// try sends req to source i, with the source stall on the answer and on
// its body.
func (f *failover) try(req *http.Request, i int) (*http.Response, error) {
	f.mu.Lock()
	s := f.srcs[i]
	u := *s.u
	heard, etag, mtime := s.heard, s.etag, s.mtime
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(req.Context())
	st := &sourceStall{after: f.stall, timer: time.AfterFunc(f.stall, cancel)}
	r := req.Clone(ctx)
	r.URL, r.Host = &u, u.Host
	for _, h := range []string{"If-Match", "If-Range"} {
		v := r.Header.Get(h)
		if v == "" {
			continue
		}
		// The caller's validator is the resource's (the first answer's):
		// this source's own stands for it.
		switch {
		case !heard:
			v = ""
		case v == f.validators().etag:
			v = etag
		case v == f.validators().mtime:
			v = mtime
		default:
			v = ""
		}
		if v == "" {
			r.Header.Del(h)
		} else {
			r.Header.Set(h, v)
		}
	}
	resp, err := f.base.RoundTrip(r)
	if err != nil {
		fired := !st.timer.Stop()
		cancel()
		if fired && req.Context().Err() == nil {
			return nil, fmt.Errorf("no answer for %v", f.stall)
		}
		return nil, withoutURL(err)
	}
	st.timer.Reset(f.stall)
	resp.Body = &sourceBody{rc: resp.Body, st: st, cancel: cancel, f: f, i: i, callerCtx: req.Context()}
	return resp, nil
}

type validators struct{ etag, mtime string }

func (f *failover) validators() validators {
	f.mu.Lock()
	defer f.mu.Unlock()
	return validators{f.etag, f.mtime}
}

// judge classifies source i's answer to req.
func (f *failover) judge(req *http.Request, i int, resp *http.Response, err error) (outcome, error) {
	if err != nil {
		return failed, err
	}
	se := &StatusError{Code: resp.StatusCode, Status: resp.Status}
	switch c := resp.StatusCode; {
	case se.Retryable(), errors.Is(se, ErrNotFound):
		return failed, se
	case c == http.StatusPreconditionFailed:
		return refused, fmt.Errorf("its copy changed (HTTP %s to If-Match)", resp.Status)
	case c == http.StatusRequestedRangeNotSatisfiable:
		return refused, fmt.Errorf("its copy has another size (HTTP %s, Content-Range %q)", resp.Status, resp.Header.Get("Content-Range"))
	case c == http.StatusOK && req.Header.Get("Range") != "":
		return failed, errors.New("HTTP 200 with the whole resource for a Range request")
	case c != http.StatusOK && c != http.StatusPartialContent:
		return answered, nil // the caller's to judge (a redirect, a refusal)
	}
	size := int64(-1)
	if resp.StatusCode == http.StatusPartialContent {
		if cr, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil {
			size = cr.Total
		}
	} else if resp.Header.Get("Content-Encoding") == "" {
		size = resp.ContentLength
	}
	etag, mtime := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.srcs[i]
	if size >= 0 && f.size >= 0 && size != f.size {
		return refused, fmt.Errorf("its copy has %d bytes, not %d", size, f.size)
	}
	if s.heard && s.etag != "" && etag != s.etag {
		return refused, fmt.Errorf("its copy changed (ETag %s, then %s)", s.etag, etag)
	}
	if !s.heard {
		s.heard, s.etag, s.mtime = true, etag, mtime
	}
	if !f.known {
		f.known, f.etag, f.mtime = true, etag, mtime
		if f.size < 0 {
			f.size = size
		}
	}
	// The caller sees the resource's validators, whichever source
	// answered.
	setOrDel(resp.Header, "ETag", f.etag)
	setOrDel(resp.Header, "Last-Modified", f.mtime)
	return answered, nil
}

func setOrDel(h http.Header, key, v string) {
	if v == "" {
		h.Del(key)
	} else {
		h.Set(key, v)
	}
}

// answered notes that source i answered a request sent at sent: it is
// the current one now. An answer to a request sent before the source last
// failed (one in flight when it broke) says nothing of it now.
func (f *failover) answered(i int, sent time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.srcs[i]
	if sent.Before(s.failed) {
		return
	}
	s.fails, s.down = 0, time.Time{}
	if i == f.cur {
		return
	}
	from := f.srcs[f.cur]
	switch {
	case i < f.cur:
		f.logf("image source %s answers again: reading from it instead of %s", s.where, from.where)
	case from.refused != nil:
		f.logf("image source %s refused (%v): reading from %s", from.where, from.refused, s.where)
	case from.lastErr != nil:
		f.logf("image source %s failing (%v): reading from %s", from.where, from.lastErr, s.where)
	default:
		f.logf("image source %s: reading from %s", from.where, s.where)
	}
	f.cur = i
}

// failed notes a failure of source i: it is left alone for a while.
func (f *failover) failed(i int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.srcs[i]
	s.fails++
	s.failed = time.Now()
	s.lastErr = err
	s.down = time.Now().Add(min(f.retry<<min(s.fails-1, 10), sourceRetryMax))
}

// refuse notes that source i is not the same resource.
func (f *failover) refuse(i int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.srcs[i]
	if s.refused == nil {
		s.refused = err
		if i != f.cur {
			f.logf("image source %s refused: %v", s.where, err)
		}
	}
}

// discard closes an answer the caller will not see.
func discard(resp *http.Response) {
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}
}

// sourceStall ends an attempt on one source when it sends nothing for
// after.
type sourceStall struct {
	after time.Duration
	timer *time.Timer
}

// sourceBody is a source's answer body: it restarts the source stall at
// every read that brings bytes, and notes the source failed when the body
// breaks (reset, cut short, stalled) for a reason other than the caller's.
type sourceBody struct {
	rc        io.ReadCloser
	st        *sourceStall
	cancel    context.CancelFunc
	f         *failover
	i         int
	callerCtx context.Context

	once sync.Once
}

func (b *sourceBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.st.timer.Reset(b.st.after)
	}
	switch {
	case err == nil:
	case err == io.EOF:
		b.st.timer.Stop()
	default:
		fired := !b.st.timer.Stop()
		if fired && b.callerCtx.Err() == nil {
			err = fmt.Errorf("no data for %v", b.st.after)
		}
		if fired || b.callerCtx.Err() == nil {
			b.once.Do(func() { b.f.failed(b.i, err) })
		}
	}
	return n, err
}

func (b *sourceBody) Close() error {
	b.st.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
