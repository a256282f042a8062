package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts of the transport NewHTTPClient builds. They are backstops: a
// request's own context (Policy.Stall for what the agent fetches, the
// report timeout for a report) normally ends a silent request first.
const (
	DialTimeout           = 10 * time.Second
	TLSHandshakeTimeout   = 10 * time.Second
	ResponseHeaderTimeout = 60 * time.Second
	KeepAlive             = 30 * time.Second
	IdleConnTimeout       = 90 * time.Second
)

// MaxResponseHeaderBytes caps an answer's headers in every client the
// agent makes (net/http's default is 10 MB each, in a process the OOM
// killer spares). overboot's and nginx's headers are well under 1 KiB.
const MaxResponseHeaderBytes = 64 << 10

// MaxRedirects bounds the redirects one request follows.
const MaxRedirects = 10

// NewHTTPClient returns the agent's HTTP client, which everything it
// fetches (the boot document, the image) and every phase report goes
// through; the agent makes one and shares it, so a connection to the
// server is reused across them. It uses no proxy (an initramfs has no
// proxy settings to honour), asks for no compression (the image is hashed
// as the server stores it), caps response headers at
// MaxResponseHeaderBytes, and follows redirects as CheckRedirect allows.
// It has no overall timeout: a download takes as long as it takes while
// bytes arrive (Policy.Stall, Policy.SlowBytes). For https it trusts the
// site CA given to TrustSiteCA, and nothing else.
func NewHTTPClient() *http.Client {
	t := siteTrust.Load()
	if t == nil {
		t = &Trust{File: "none loaded"}
	}
	return NewHTTPClientTrusting(t)
}

// NewHTTPClientTrusting is NewHTTPClient trusting t for https.
func NewHTTPClientTrusting(t *Trust) *http.Client {
	c := &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{Timeout: DialTimeout, KeepAlive: KeepAlive}).DialContext,
			TLSHandshakeTimeout:    TLSHandshakeTimeout,
			ResponseHeaderTimeout:  ResponseHeaderTimeout,
			IdleConnTimeout:        IdleConnTimeout,
			MaxIdleConnsPerHost:    4,
			MaxResponseHeaderBytes: MaxResponseHeaderBytes,
			DisableCompression:     true,
			ReadBufferSize:         bufSize,
		},
		CheckRedirect: CheckRedirect,
	}
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = t.tlsConfig()
	tr.DialTLSContext = t.dialTLS(tr)
	return c
}

// CheckRedirect is the agent's one redirect policy (http.Client's
// CheckRedirect), the download's and the Range reader's alike. A redirect
// is followed for GET and HEAD only: a redirected POST would arrive as a
// GET elsewhere, so its 3xx is the answer. Otherwise it is refused, with a
// *RedirectError, when it is the MaxRedirects+1-th, goes to a scheme other
// than http or https, from https to http (a downgrade), or to a link-local
// address (169.254.0.0/16, fe80::/10: a cloud's metadata service is no
// image server). A host name is not resolved here: the check is on the
// literal address.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if m := via[0].Method; m != http.MethodGet && m != http.MethodHead {
		return http.ErrUseLastResponse
	}
	prev := via[len(via)-1].URL
	refuse := func(why string) error {
		return &RedirectError{Why: why}
	}
	switch {
	case len(via) > MaxRedirects:
		return refuse(fmt.Sprintf("more than %d redirects (a loop?)", MaxRedirects))
	case req.URL.Scheme != "http" && req.URL.Scheme != "https":
		return refuse(fmt.Sprintf("redirect to scheme %q: only http and https are followed", req.URL.Scheme))
	case prev.Scheme == "https" && req.URL.Scheme == "http":
		return refuse("redirect from https to http")
	}
	if ip, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil && ip.Unmap().IsLinkLocalUnicast() {
		return refuse(fmt.Sprintf("redirect to link-local address %s", ip))
	}
	return nil
}

// RedirectError is a redirect CheckRedirect refused. Retrying meets it
// again: it counts as a malformed answer (ErrProtocol). It never quotes
// the URL, which may carry a token.
type RedirectError struct{ Why string }

func (e *RedirectError) Error() string { return "refused " + e.Why }

// DefaultClient returns one NewHTTPClient shared by the callers that pass
// a nil client.
var DefaultClient = sync.OnceValue(NewHTTPClient)

func orDefault(c *http.Client) *http.Client {
	if c == nil {
		return DefaultClient()
	}
	return c
}

// StatusError is an HTTP answer that is not a success.
type StatusError struct {
	Code   int
	Status string // as the response has it, e.g. "404 Not Found"
}

func (e *StatusError) Error() string { return "HTTP " + e.Status }

// Permanent reports whether retrying cannot change the answer: any 4xx but
// 408 Request Timeout and 429 Too Many Requests. A 5xx, or a 3xx the
// client did not follow, may change.
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 && !e.Retryable()
}

// Retryable reports whether the server says to ask again: a 5xx, 408
// Request Timeout or 429 Too Many Requests. Fetch and Get retry any answer
// that is not Permanent; a RangeReader, which expects a 206, only these.
func (e *StatusError) Retryable() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// Is makes 404 and 410 match ErrNotFound.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && (e.Code == http.StatusNotFound || e.Code == http.StatusGone)
}

// notFound says what a 404 or 410 for an image means.
func notFound(se *StatusError) error {
	return fmt.Errorf("%w: HTTP %s: is the image published, and the URL right?", ErrNotFound, se.Status)
}

// checkStatus returns a *StatusError unless resp is a 2xx.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	return &StatusError{Code: resp.StatusCode, Status: resp.Status}
}

// do sends req. Its errors do not quote the URL (withoutURL).
func do(client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := orDefault(client).Do(req)
	return resp, withoutURL(err)
}

// withoutURL drops the URL that the HTTP client quotes in its errors
// (Get "http://server/doc/TOKEN": ...): it may carry a token, and callers
// name the URL themselves, redacted.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Post sends body to url once and returns nil for a 2xx answer, else a
// *StatusError or the transport's error, neither quoting the URL. It is
// for the phase reports, which are best effort: one attempt each, since a
// retry would hold up the reports behind it; ctx bounds it.
func Post(ctx context.Context, client *http.Client, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return withoutURL(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := do(client, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection serve the next report
	return checkStatus(resp)
}

// Get fetches a small resource, at most limit bytes, retrying as p says:
// the boot document. accept is the Accept header ("" = none). A body
// larger than limit is a permanent error. Errors do not quote the URL; an
// exhausted policy is an *ExhaustedError, a refusal a *StatusError.
func Get(ctx context.Context, client *http.Client, url, accept string, limit int64, p Policy) ([]byte, error) {
	var body []byte
	err := p.Retry(ctx, func(ctx context.Context, _ int) error {
		b, err := getOnce(ctx, client, url, accept, limit, p)
		body = b
		return err
	})
	return body, err
}

func getOnce(ctx context.Context, client *http.Client, url, accept string, limit int64, p Policy) ([]byte, error) {
	ctx, st := withStall(ctx, p.stall())
	defer st.release()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, Permanent(withoutURL(err))
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := do(client, req)
	if err != nil {
		return nil, st.noAnswer(err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return nil, err
	}
	st.slowly(p.slow())
	b, err := io.ReadAll(io.LimitReader(st.reader(resp.Body), limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w at byte %d", st.noData(err), len(b))
	}
	if int64(len(b)) > limit {
		return nil, Permanent(fmt.Errorf("larger than %d bytes", limit))
	}
	return b, nil
}

// stall ends a request when no byte has arrived for a while (while
// waiting for the answer, then between reads of its body), or when its
// body arrives slower than a minimum rate (slowly).
type stall struct {
	after  time.Duration
	timer  *time.Timer
	ctx    context.Context
	cancel context.CancelCauseFunc

	got atomic.Int64 // body bytes since the rate window began

	mu         sync.Mutex // guards the fields below
	rate       *time.Timer
	minBytes   int64
	window     time.Duration
	released   bool
	windowFrom time.Time
}

// errStalled is the cause a stall timer ends a request with.
var errStalled = errors.New("stalled")

// SlowError is an attempt abandoned for its rate: fewer than Min body
// bytes in Window. It is retried, like a stall.
type SlowError struct {
	Got, Min int64
	Window   time.Duration
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("too slow: %d bytes in %v, fewer than the minimum %d", e.Got, e.Window, e.Min)
}

// withStall returns ctx with a stall timer; release it when done.
func withStall(ctx context.Context, after time.Duration) (context.Context, *stall) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, &stall{after: after, ctx: ctx, cancel: cancel, timer: time.AfterFunc(after, func() { cancel(errStalled) })}
}

// slowly starts the rate check, once the answer's headers are in: the body
// must bring minBytes in every window (no check when either is <= 0).
func (s *stall) slowly(minBytes int64, window time.Duration) {
	if minBytes <= 0 || window <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	s.minBytes, s.window = minBytes, window
	s.got.Store(0)
	s.rate = time.AfterFunc(window, s.checkRate)
}

func (s *stall) checkRate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	if got := s.got.Swap(0); got < s.minBytes {
		s.cancel(&SlowError{Got: got, Min: s.minBytes, Window: s.window})
		return
	}
	s.rate.Reset(s.window)
}

// progress restarts the wait: n bytes arrived.
func (s *stall) progress(n int) {
	s.timer.Reset(s.after)
	s.got.Add(int64(n))
}

// release stops the timers and ends the request's context.
func (s *stall) release() {
	s.timer.Stop()
	s.mu.Lock()
	s.released = true
	if s.rate != nil {
		s.rate.Stop()
	}
	s.mu.Unlock()
	s.cancel(nil)
}

// noAnswer says that a request that got no answer was ended by the stall
// timer, when it was: the bare error would be "context canceled".
func (s *stall) noAnswer(err error) error {
	if context.Cause(s.ctx) == errStalled {
		return fmt.Errorf("no answer for %v", s.after)
	}
	return err
}

// noData is noAnswer for a body that stopped, or came too slowly.
func (s *stall) noData(err error) error {
	var slow *SlowError
	switch c := context.Cause(s.ctx); {
	case c == errStalled:
		return fmt.Errorf("no data for %v", s.after)
	case errors.As(c, &slow):
		return slow
	}
	return err
}

// reader returns r, restarting the wait at every read that brings bytes.
func (s *stall) reader(r io.Reader) io.Reader { return stallReader{r, s} }

type stallReader struct {
	r io.Reader
	s *stall
}

func (r stallReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.s.progress(n)
	}
	return n, err
}
