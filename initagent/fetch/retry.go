package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policy is the agent's one retry policy for what it fetches over HTTP:
// the boot document, the image, and the lazy root's Range requests, each
// with its own parameters. Zero values are the documented defaults.
type Policy struct {
	// Attempts bounds the attempts, the first included (0: DefaultAttempts;
	// negative: no bound but Patience).
	Attempts int
	// Patience, when positive, bounds the time: the policy gives up once
	// attempts have failed for this long with no progress between them
	// (0: no bound but Attempts).
	Patience   time.Duration
	Backoff    time.Duration // wait before the second attempt, doubling up to MaxBackoff, with jitter (<= 0: DefaultBackoff)
	MaxBackoff time.Duration // the longest wait, before jitter (<= 0: DefaultMaxBackoff)
	Stall      time.Duration // an attempt that receives no byte for this long is abandoned (<= 0: DefaultStall)
	// SlowBytes and SlowWindow are an attempt's minimum rate once its
	// answer's headers are in: a body that brings fewer than SlowBytes in
	// a SlowWindow is abandoned and retried, as a stall is, so a server
	// trickling a byte at a time cannot hold an attempt for ever
	// (SlowBytes 0: DefaultSlowBytes, negative: no minimum; SlowWindow
	// <= 0: DefaultSlowWindow).
	SlowBytes  int64
	SlowWindow time.Duration
	// MaxMalformed bounds the malformed answers (an answer that will be
	// as wrong the next time: a Content-Range for other bytes, a
	// Content-Length that disagrees with it, a multipart answer to one
	// range, a refused redirect, oversized headers) without progress
	// between them: the last one ends the retries with a *ProtocolError,
	// which matches ErrProtocol (0: DefaultMaxMalformed; negative: no
	// bound but Attempts and Patience).
	MaxMalformed int
	// Sleep waits between attempts; tests replace it (nil: a real timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Retrying, when set, hears of each failed attempt that another will
	// follow, and the wait before it, so the console says why a fetch
	// takes long (nil: silent).
	Retrying func(attempt int, wait time.Duration, err error)
	// Busy bounds the time spent waiting on answers that ask for it (a
	// *BusyError: HTTP 503 with Retry-After, see HonorRetryAfter), which
	// spend no attempt: the server is alive and asks to be asked again
	// (0: DefaultBusy; negative: such an answer is an ordinary failed
	// attempt). Once it is spent, they count as failed attempts.
	Busy time.Duration
	// Waiting, when set, hears of each wait on a *BusyError: how long
	// this one is and how long the waits have lasted with it (nil:
	// silent).
	Waiting func(wait, waited time.Duration, err *BusyError)

	// outage, when set, is shared with the other loops asking the same
	// server (a RangeReader's): Patience counts from its beginning.
	outage *outage
}

// Policy defaults.
const (
	DefaultAttempts   = 5
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 8 * time.Second
	DefaultStall      = 30 * time.Second
	// At least 32 KiB in every 30 s (about 1 KiB/s): a boot storm of a
	// thousand machines sharing one gigabit link still gets 100 times
	// that; a byte every 500 ms does not.
	DefaultSlowBytes    = 32 << 10
	DefaultSlowWindow   = 30 * time.Second
	DefaultMaxMalformed = 4
	// DefaultBusy: an overboot server answers 503 with Retry-After while
	// its state store (PostgreSQL) is down; a restart of PostgreSQL
	// takes seconds, an upgrade or a failover minutes.
	DefaultBusy = 10 * time.Minute
	// MaxRetryAfter caps one wait a Retry-After asks for.
	MaxRetryAfter = time.Minute
	// Jitter spreads each wait over ±Jitter of it, so that machines
	// that lost the server together do not come back together.
	Jitter = 0.25
)

func (p Policy) attempts() int {
	if p.Attempts == 0 {
		return DefaultAttempts
	}
	return p.Attempts
}

func (p Policy) stall() time.Duration {
	if p.Stall <= 0 {
		return DefaultStall
	}
	return p.Stall
}

// slow is the minimum rate: bytes per window, none when bytes <= 0.
func (p Policy) slow() (int64, time.Duration) {
	b, w := p.SlowBytes, p.SlowWindow
	if b == 0 {
		b = DefaultSlowBytes
	}
	if w <= 0 {
		w = DefaultSlowWindow
	}
	return b, w
}

func (p Policy) busy() time.Duration {
	if p.Busy == 0 {
		return DefaultBusy
	}
	return p.Busy
}

func (p Policy) maxMalformed() int {
	if p.MaxMalformed == 0 {
		return DefaultMaxMalformed
	}
	return p.MaxMalformed
}

// Wait returns the wait before attempt n (2, 3, ...): Backoff, doubled
// for each attempt after the second up to MaxBackoff, then spread by
// Jitter.
func (p Policy) Wait(n int) time.Duration {
	d, most := p.Backoff, p.MaxBackoff
	if d <= 0 {
		d = DefaultBackoff
	}
	if most <= 0 {
		most = DefaultMaxBackoff
	}
	for i := 2; i < n && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	return time.Duration(float64(d) * (1 - Jitter + 2*Jitter*rand.Float64()))
}

// Retry calls try for attempt 1, 2, ... until it returns nil, a permanent
// error (IsPermanent), or the attempts or the Patience run out (an
// *ExhaustedError with the last error), MaxMalformed malformed answers
// come without progress between them (a *ProtocolError), or ctx ends (its
// cause). A permanent error is returned as it is.
func (p Policy) Retry(ctx context.Context, try func(ctx context.Context, attempt int) error) error {
	return p.retry(ctx, func(ctx context.Context, attempt int) (bool, error) {
		return false, try(ctx, attempt)
	})
}

// retry is Retry for attempts that can make progress before they fail (a
// request for several chunks that brought some of them): an attempt that
// made progress counts as the first of a new series, for the bound on
// attempts, the backoff and Patience.
func (p Policy) retry(ctx context.Context, try func(ctx context.Context, attempt int) (progress bool, err error)) error {
	sleep := p.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	n := p.attempts()
	var since time.Time // the first failure since the start or the last progress
	malformed := 0      // malformed answers since the start or the last progress
	// The waits servers asked for (BusyError) since the start or the
	// last progress, and their bound.
	busy, waited := p.busy(), time.Duration(0)
	for attempt := 1; ; attempt++ {
		progress, err := try(ctx, attempt)
		if progress || err == nil {
			p.outage.end()
			attempt, since, malformed, waited = 1, time.Time{}, 0, 0
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case IsPermanent(err):
			return err
		}
		var be *BusyError
		if errors.As(err, &be) && busy > 0 && waited < busy {
			// Asked to wait: no attempt spent, no backoff; a little
			// longer than asked, so that machines told together do not
			// come back together.
			wait := min(be.Wait+time.Duration(float64(be.Wait)*Jitter*rand.Float64()), busy-waited)
			waited += wait
			if p.Waiting != nil {
				p.Waiting(wait, waited, be)
			}
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			attempt--
			continue
		}
		if isMalformed(err) {
			malformed++
			if m := p.maxMalformed(); m > 0 && malformed >= m {
				p.outage.fail(err)
				return &ProtocolError{Answers: malformed, Err: err}
			}
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if began := p.outage.fail(err); !began.IsZero() && began.Before(since) {
			since = began
		}
		if n > 0 && attempt >= n {
			return &ExhaustedError{Attempts: attempt, Err: err}
		}
		wait := p.Wait(attempt + 1)
		if p.Patience > 0 {
			left := since.Add(p.Patience).Sub(now)
			if left <= 0 {
				return &ExhaustedError{Attempts: attempt, For: p.Patience, Err: err}
			}
			wait = min(wait, left)
		}
		if p.Retrying != nil {
			p.Retrying(attempt, wait, err)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// outage is what the retry loops asking one server share (Policy.outage):
// it begins at the first failed attempt of any of them and ends at the next
// success of any. Patience counts from its beginning, so that a loop
// started during an outage does not wait Patience afresh, and the console
// hears of it once when it begins and once when it ends, not of every
// attempt. A nil *outage is none.
type outage struct {
	began func(err error)          // hears of the beginning, with the failure (nil: nobody)
	ended func(took time.Duration) // hears of the end (nil: nobody)
	// still hears again while the outage lasts, at most once every every,
	// with the latest failure, which may not be the first's (nil or
	// every <= 0: never).
	still func(err error, lasted time.Duration)
	every time.Duration

	mu    sync.Mutex
	since time.Time // zero between outages
	told  time.Time // when began or still last heard
}

// fail notes a failed attempt, and returns when the outage began.
func (o *outage) fail(err error) time.Time {
	if o == nil {
		return time.Time{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	switch {
	case o.since.IsZero():
		o.since, o.told = now, now
		if o.began != nil {
			o.began(err)
		}
	case o.still != nil && o.every > 0 && now.Sub(o.told) >= o.every:
		o.told = now
		o.still(err, now.Sub(o.since))
	}
	return o.since
}

// end notes a success: the outage, if any, is over.
func (o *outage) end() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	if o.ended != nil {
		o.ended(time.Since(o.since))
	}
	o.since = time.Time{}
}

// ExhaustedError is a fetch whose every attempt failed, until the attempts
// or the Patience ran out.
type ExhaustedError struct {
	Attempts int           // since the last progress
	For      time.Duration // the Patience that ran out; 0 when the attempts did
	Err      error         // the last attempt's
}

func (e *ExhaustedError) Error() string {
	if e.For > 0 {
		return fmt.Sprintf("%v for %v after %d attempts: %v", ErrUnavailable, e.For, e.Attempts, e.Err)
	}
	return fmt.Sprintf("%v after %d attempts: %v", ErrUnavailable, e.Attempts, e.Err)
}

// Unwrap makes an ExhaustedError match ErrUnavailable and its last error.
func (e *ExhaustedError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// ProtocolError is a fetch that gave up because the server's answers were
// malformed, the same way or not, MaxMalformed times without progress:
// retrying for ever would hang the reader. Err, the last one, names what
// was wrong.
type ProtocolError struct {
	Answers int
	Err     error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%v: %d malformed answers without progress, the last: %v: is a proxy or cache in between, and does it pass Range requests through?", ErrProtocol, e.Answers, e.Err)
}

// Unwrap makes a ProtocolError match ErrProtocol and its last error.
func (e *ProtocolError) Unwrap() []error { return []error{ErrProtocol, e.Err} }

// malformedError marks an answer that will be as wrong the next time.
type malformedError struct{ err error }

func (e malformedError) Error() string { return e.err.Error() }
func (e malformedError) Unwrap() error { return e.err }

// malformed marks err as a malformed answer (nil stays nil).
func malformed(err error) error {
	if err == nil {
		return nil
	}
	return malformedError{err}
}

// isMalformed reports whether err is a malformed answer: marked so, a
// redirect CheckRedirect refused, or headers over MaxResponseHeaderBytes
// (net/http's error for it has no type to match).
func isMalformed(err error) bool {
	var me malformedError
	var re *RedirectError
	return errors.As(err, &me) || errors.As(err, &re) ||
		strings.Contains(err.Error(), "server response headers exceeded")
}

// unreachable adds to an *ExhaustedError what the user can check.
func unreachable(err error) error {
	return fmt.Errorf("%w: is the server running and reachable from this machine?", err)
}

// permanentError marks an error retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one retrying cannot fix (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether retrying cannot fix err: an error marked
// Permanent, a server certificate not trusted (*TrustError), an HTTP refusal (a 4xx but 408 and 429: StatusError.Permanent),
// or bytes that are not the image named (ErrDigestMismatch,
// ErrSizeMismatch).
func IsPermanent(err error) bool {
	var pe permanentError
	var se *StatusError
	var te *TrustError
	switch {
	case errors.As(err, &pe), errors.As(err, &te):
		return true
	case errors.As(err, &se):
		return se.Permanent()
	}
	return errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// BusyError is an answer that asks to be asked again later: HTTP 503
// with a Retry-After (HonorRetryAfter makes it). The server is alive; an
// overboot server answers so while its state store cannot be reached.
// Policy.Retry waits it out without spending an attempt, up to
// Policy.Busy in all.
type BusyError struct {
	Status string        // as the response has it, e.g. "503 Service Unavailable"
	Wait   time.Duration // what Retry-After asked, at least a second, at most MaxRetryAfter
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("HTTP %s, Retry-After %v", e.Status, e.Wait)
}

// HonorRetryAfter wraps rt (nil: http.DefaultTransport) so that a 503
// answer with a Retry-After (seconds, or a date) is returned as a
// *BusyError instead of a response: Policy.Retry then waits as asked. Any
// other answer passes unchanged.
func HonorRetryAfter(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return retryAfter{rt}
}

type retryAfter struct{ rt http.RoundTripper }

func (r retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		return resp, err
	}
	wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if !ok {
		return resp, nil
	}
	// The connection can serve the next try.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return nil, &BusyError{Status: resp.Status, Wait: wait}
}

// CloseIdleConnections passes on to the wrapped transport.
func (r retryAfter) CloseIdleConnections() {
	if c, ok := r.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// parseRetryAfter reads a Retry-After header (RFC 9110 10.2.3: seconds,
// or an HTTP date), clamped to [1 s, MaxRetryAfter].
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, time.Second), MaxRetryAfter), true
}

// WithRetryAfter returns a copy of c (nil: DefaultClient()) whose
// transport is wrapped by HonorRetryAfter.
func WithRetryAfter(c *http.Client) *http.Client {
	cc := *orDefault(c)
	cc.Transport = HonorRetryAfter(cc.Transport)
	return &cc
}
