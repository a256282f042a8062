package fetch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is the agent's one retry policy for what it fetches over HTTP:
// the boot document and the image (and, to come, the lazy root's Range
// requests). Zero values are the documented defaults.
type Policy struct {
	Attempts int           // total attempts, the first included (<= 0: DefaultAttempts)
	Backoff  time.Duration // wait before the second attempt, doubling up to MaxBackoff, with jitter (<= 0: DefaultBackoff)
	Stall    time.Duration // an attempt that receives no byte for this long is abandoned (<= 0: DefaultStall)
	// Sleep waits between attempts; tests replace it (nil: a real timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Retrying, when set, hears of each failed attempt that another will
	// follow, and the wait before it, so the console says why a fetch
	// takes long (nil: silent).
	Retrying func(attempt int, wait time.Duration, err error)
}

// Policy defaults.
const (
	DefaultAttempts = 5
	DefaultBackoff  = time.Second
	MaxBackoff      = 8 * time.Second
	DefaultStall    = 30 * time.Second
	// Jitter spreads each wait over ±Jitter of it, so that machines
	// that lost the server together do not come back together.
	Jitter = 0.25
)

func (p Policy) attempts() int {
	if p.Attempts <= 0 {
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

// Wait returns the wait before attempt n (2, 3, ...): Backoff, doubled
// for each attempt after the second up to MaxBackoff, then spread by
// Jitter.
func (p Policy) Wait(n int) time.Duration {
	d := p.Backoff
	if d <= 0 {
		d = DefaultBackoff
	}
	for i := 2; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, MaxBackoff)
	return time.Duration(float64(d) * (1 - Jitter + 2*Jitter*rand.Float64()))
}

// Retry calls try for attempt 1, 2, ... until it returns nil, a permanent
// error (IsPermanent), or the attempts run out (an *ExhaustedError with
// the last error), or ctx ends (ctx's error). A permanent error is
// returned as it is.
func (p Policy) Retry(ctx context.Context, try func(ctx context.Context, attempt int) error) error {
	sleep := p.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	n := p.attempts()
	for attempt := 1; ; attempt++ {
		err := try(ctx, attempt)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case IsPermanent(err):
			return err
		case attempt >= n:
			return &ExhaustedError{Attempts: attempt, Err: err}
		}
		wait := p.Wait(attempt + 1)
		if p.Retrying != nil {
			p.Retrying(attempt, wait, err)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// ExhaustedError is a fetch whose every attempt failed.
type ExhaustedError struct {
	Attempts int
	Err      error // the last attempt's
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("%v after %d attempts: %v", ErrUnavailable, e.Attempts, e.Err)
}

// Unwrap makes an ExhaustedError match ErrUnavailable and its last error.
func (e *ExhaustedError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

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
// Permanent, an HTTP refusal (a 4xx but 408 and 429: StatusError.Permanent),
// or bytes that are not the image named (ErrDigestMismatch,
// ErrSizeMismatch).
func IsPermanent(err error) bool {
	var pe permanentError
	var se *StatusError
	switch {
	case errors.As(err, &pe):
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
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
