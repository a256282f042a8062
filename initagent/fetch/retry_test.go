package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicyWait(t *testing.T) {
	p := Policy{Backoff: time.Second}
	for n, base := range map[int]time.Duration{2: time.Second, 3: 2 * time.Second, 4: 4 * time.Second, 5: 8 * time.Second, 6: 8 * time.Second, 40: 8 * time.Second} {
		lo, hi := time.Duration(float64(base)*(1-Jitter)), time.Duration(float64(base)*(1+Jitter))
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.Wait(n)
			if d < lo || d > hi {
				t.Fatalf("Wait(%d) = %v, want %v..%v", n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("Wait(%d) has no jitter: always %v", n, seen)
		}
	}
	if d := (Policy{}).Wait(2); d < DefaultBackoff*3/4 || d > DefaultBackoff*5/4 {
		t.Errorf("zero Policy waits %v first, want about %v", d, DefaultBackoff)
	}
	if d := (Policy{}).Wait(40); d < DefaultMaxBackoff*3/4 || d > DefaultMaxBackoff*5/4 {
		t.Errorf("zero Policy waits %v at most, want about %v", d, DefaultMaxBackoff)
	}
	// A policy's own bounds (a RangeReader's).
	p = Policy{Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	for n, base := range map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 7: 3200 * time.Millisecond, 8: 5 * time.Second, 40: 5 * time.Second} {
		if d := p.Wait(n); d < base*3/4 || d > base*5/4 {
			t.Errorf("Wait(%d) = %v, want about %v", n, d, base)
		}
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errors.New("connection refused"), false},
		{&StatusError{Code: 503, Status: "503 Service Unavailable"}, false},
		{&StatusError{Code: 500, Status: "500 Internal Server Error"}, false},
		{&StatusError{Code: http.StatusRequestTimeout}, false},
		{&StatusError{Code: http.StatusTooManyRequests}, false},
		{&StatusError{Code: 302, Status: "302 Found"}, false},
		{&StatusError{Code: 304, Status: "304 Not Modified"}, false},
		{&StatusError{Code: 404}, true},
		{&StatusError{Code: 410}, true},
		{&StatusError{Code: 403}, true},
		{fmt.Errorf("wrapped: %w", &StatusError{Code: 401}), true},
		{fmt.Errorf("image: %w", ErrDigestMismatch), true},
		{fmt.Errorf("image: %w", ErrSizeMismatch), true},
		{Permanent(errors.New("disk full")), true},
		{fmt.Errorf("x: %w", Permanent(errors.New("disk full"))), true},
	} {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !errors.Is(&StatusError{Code: 410}, ErrNotFound) || errors.Is(&StatusError{Code: 403}, ErrNotFound) {
		t.Errorf("ErrNotFound is 404 and 410 only")
	}
	if Permanent(nil) != nil {
		t.Errorf("Permanent(nil) is not nil")
	}
}

func TestRetry(t *testing.T) {
	transient := errors.New("connection refused")
	for _, tt := range []struct {
		name      string
		results   []error // per attempt; the last repeats
		attempts  int
		wantCalls int
		check     func(error) bool
	}{
		{"first", []error{nil}, 3, 1, func(err error) bool { return err == nil }},
		{"third", []error{transient, transient, nil}, 5, 3, func(err error) bool { return err == nil }},
		{"permanent", []error{transient, &StatusError{Code: 410, Status: "410 Gone"}}, 5, 2, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{"exhausted", []error{transient}, 4, 4, func(err error) bool {
			var ex *ExhaustedError
			return errors.As(err, &ex) && ex.Attempts == 4 && errors.Is(err, ErrUnavailable) && errors.Is(err, transient) &&
				err.Error() == "unavailable after 4 attempts: connection refused"
		}},
		{"default attempts", []error{transient}, 0, DefaultAttempts, func(err error) bool { return errors.Is(err, ErrUnavailable) }},
		{"no bound", append(slices.Repeat([]error{transient}, 40), nil), -1, 41, func(err error) bool { return err == nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls, slept int
			p := Policy{Attempts: tt.attempts, Sleep: func(context.Context, time.Duration) error { slept++; return nil }}
			err := p.Retry(context.Background(), func(_ context.Context, attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				return tt.results[min(calls, len(tt.results))-1]
			})
			if !tt.check(err) || calls != tt.wantCalls || slept != calls-1 {
				t.Errorf("Retry = %v after %d calls and %d waits, want %d calls", err, calls, slept, tt.wantCalls)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		p := Policy{Attempts: 10, Sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }}
		err := p.Retry(ctx, func(context.Context, int) error { return transient })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Retry = %v, want context.Canceled", err)
		}
	})
}

// TestRetrying: each failed attempt that another follows is announced
// with the wait before it; the last and a permanent one are not.
func TestRetrying(t *testing.T) {
	type heard struct {
		attempt int
		wait    time.Duration
	}
	var got []heard
	var slept []time.Duration
	p := Policy{Attempts: 3, Backoff: time.Second,
		Sleep:    func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		Retrying: func(a int, w time.Duration, err error) { got = append(got, heard{a, w}) }}
	err := p.Retry(context.Background(), func(context.Context, int) error { return errors.New("refused") })
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Attempts != 3 {
		t.Fatalf("Retry = %v", err)
	}
	if len(got) != 2 || got[0].attempt != 1 || got[1].attempt != 2 || got[0].wait != slept[0] || got[1].wait != slept[1] {
		t.Errorf("heard %+v, slept %v", got, slept)
	}
	got = nil
	p.Retry(context.Background(), func(context.Context, int) error { return Permanent(errors.New("403")) })
	if len(got) != 0 {
		t.Errorf("a permanent error was retried: %+v", got)
	}
}

func TestRetryable(t *testing.T) {
	for code, want := range map[int]bool{500: true, 503: true, 408: true, 429: true, 404: false, 403: false, 416: false, 412: false, 302: false, 200: false} {
		if got := (&StatusError{Code: code}).Retryable(); got != want {
			t.Errorf("HTTP %d: Retryable = %v, want %v", code, got, want)
		}
	}
}

// TestRetryPatience: with Patience the time bounds the attempts, not
// their number.
func TestRetryPatience(t *testing.T) {
	const patience = 100 * time.Millisecond
	p := Policy{Attempts: -1, Patience: patience, Backoff: 10 * time.Millisecond}
	var calls int
	start := time.Now()
	err := p.Retry(context.Background(), func(context.Context, int) error {
		calls++
		return errors.New("connection refused")
	})
	took := time.Since(start)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.For != patience || ex.Attempts != calls || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Retry = %v after %d calls", err, calls)
	}
	if want := "unavailable for 100ms after "; !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), " attempts: connection refused") {
		t.Errorf("%q, want %q...", err, want)
	}
	if took < patience || took > patience+time.Second || calls < 3 {
		t.Errorf("gave up after %v and %d calls, patience %v", took, calls, patience)
	}
}

// TestRetryProgress: an attempt that made progress starts a new series:
// the count of attempts and the backoff begin again.
func TestRetryProgress(t *testing.T) {
	refused := errors.New("connection refused")
	type result struct {
		progress bool
		err      error
	}
	results := []result{{false, refused}, {false, refused}, {true, refused}, {false, refused}, {false, nil}}
	var attempts []int
	var slept []time.Duration
	p := Policy{Attempts: 3, Backoff: time.Second, Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	err := p.retry(context.Background(), func(_ context.Context, attempt int) (bool, error) {
		attempts = append(attempts, attempt)
		r := results[len(attempts)-1]
		return r.progress, r.err
	})
	if err != nil || !slices.Equal(attempts, []int{1, 2, 3, 2, 3}) {
		t.Fatalf("retry = %v after attempts %v", err, attempts)
	}
	// Waits: before attempt 2, 3, then 2 and 3 again.
	for i, base := range []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second} {
		if d := slept[i]; d < base*3/4 || d > base*5/4 {
			t.Errorf("wait %d = %v, want about %v", i, d, base)
		}
	}
}

// TestRetryOutage: loops that share an outage hear of it once when it
// begins and once when it ends, and a loop that starts during it has only
// what is left of the Patience.
func TestRetryOutage(t *testing.T) {
	var began, ended atomic.Int32
	o := &outage{began: func(error) { began.Add(1) }, ended: func(time.Duration) { ended.Add(1) }}
	const patience = 200 * time.Millisecond
	p := Policy{Attempts: -1, Patience: patience, Backoff: 10 * time.Millisecond, outage: o}
	var down atomic.Bool
	down.Store(true)
	try := func(context.Context, int) (bool, error) {
		if down.Load() {
			return false, errors.New("connection refused")
		}
		return false, nil
	}
	first := make(chan error)
	go func() { first <- p.retry(context.Background(), try) }()
	time.Sleep(patience * 3 / 4)
	start := time.Now()
	err := p.retry(context.Background(), try)
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > patience/2 {
		t.Errorf("a loop started in the outage gave up after %v with %v, want at most %v", took, err, patience/2)
	}
	if err := <-first; !errors.Is(err, ErrUnavailable) {
		t.Errorf("first loop: %v", err)
	}
	down.Store(false)
	for range 2 {
		if err := p.retry(context.Background(), try); err != nil {
			t.Fatal(err)
		}
	}
	if began.Load() != 1 || ended.Load() != 1 {
		t.Errorf("heard of %d beginnings and %d ends, want 1 and 1", began.Load(), ended.Load())
	}
}
