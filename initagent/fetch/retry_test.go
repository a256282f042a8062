package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
