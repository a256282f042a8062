package fetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// busyServer answers 503 with Retry-After (retryAfter; "" = none) to the
// first busy requests, then 200 "ok".
func busyServer(t *testing.T, busy int64, retryAfter string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= busy {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			http.Error(w, "the state store cannot be reached", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestBusyWaitsWithoutAttempts: a server that answers 503 with
// Retry-After is waited for as it asks (a little more, never less), for
// as long as it asks, without spending the policy's attempts or its
// backoff: Get succeeds with Attempts 2 after 20 such answers.
func TestBusyWaitsWithoutAttempts(t *testing.T) {
	srv, n := busyServer(t, 20, "5")
	var slept, heard []time.Duration
	retried := 0
	p := Policy{Attempts: 2,
		Sleep:    func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		Retrying: func(int, time.Duration, error) { retried++ },
		Waiting: func(wait, waited time.Duration, err *BusyError) {
			heard = append(heard, waited)
			if err.Wait != 5*time.Second {
				t.Errorf("BusyError.Wait = %v, want the 5 s asked", err.Wait)
			}
		},
	}
	b, err := Get(context.Background(), WithRetryAfter(srv.Client()), srv.URL+"/doc/x", "", 100, p)
	if err != nil || string(b) != "ok" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	if got := n.Load(); got != 21 {
		t.Errorf("%d requests, want 21", got)
	}
	if retried != 0 {
		t.Errorf("%d attempts spent on answers that asked to wait", retried)
	}
	if len(slept) != 20 || len(heard) != 20 {
		t.Fatalf("%d waits, %d heard, want 20", len(slept), len(heard))
	}
	var sum time.Duration
	for _, d := range slept {
		if d < 5*time.Second || d > 5*time.Second+time.Duration(float64(5*time.Second)*Jitter) {
			t.Errorf("waited %v for a Retry-After of 5 s", d)
		}
		sum += d
	}
	if heard[19] != sum {
		t.Errorf("Waiting heard %v waited in all, the sleeps were %v", heard[19], sum)
	}
}

// TestBusyBounded: the waits end at Policy.Busy; then such answers are
// failed attempts, and the error says what the server answered.
func TestBusyBounded(t *testing.T) {
	srv, n := busyServer(t, 1<<40, "1")
	var busyWaits, backoffs int
	var waited time.Duration
	p := Policy{Attempts: 2, Busy: 10 * time.Second,
		Sleep:    func(context.Context, time.Duration) error { return nil },
		Retrying: func(int, time.Duration, error) { backoffs++ },
		Waiting:  func(wait, w time.Duration, _ *BusyError) { busyWaits++; waited = w },
	}
	_, err := Get(context.Background(), WithRetryAfter(srv.Client()), srv.URL, "", 100, p)
	var ex *ExhaustedError
	var be *BusyError
	if !errors.As(err, &ex) || !errors.As(err, &be) || ex.Attempts != 2 {
		t.Fatalf("error %v: want an ExhaustedError after 2 attempts of a BusyError", err)
	}
	if waited != 10*time.Second {
		t.Errorf("waited %v in all, want the bound, 10 s", waited)
	}
	if busyWaits < 8 || busyWaits > 10 || backoffs != 1 {
		t.Errorf("%d waits of about 1 s for 10 s, %d backoffs", busyWaits, backoffs)
	}
	if got := n.Load(); got != int64(busyWaits)+2 {
		t.Errorf("%d requests for %d waits and 2 attempts", got, busyWaits)
	}
}

// TestBusyNeedsRetryAfter: a 503 without Retry-After (or with one that is
// not a delay or a date) is an ordinary failed attempt; so is any answer
// to a client without HonorRetryAfter.
func TestBusyNeedsRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name, ra string
		wrap     bool
	}{{"no Retry-After", "", true}, {"bad Retry-After", "soon", true}, {"not wrapped", "5", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := busyServer(t, 1<<40, tc.ra)
			c := srv.Client()
			if tc.wrap {
				c = WithRetryAfter(c)
			}
			waits := 0
			p := Policy{Attempts: 3, Sleep: func(context.Context, time.Duration) error { return nil },
				Waiting: func(time.Duration, time.Duration, *BusyError) { waits++ }}
			_, err := Get(context.Background(), c, srv.URL, "", 100, p)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != 503 || waits != 0 {
				t.Errorf("error %v after %d waits: want the 503 as a failed attempt, no wait", err, waits)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"5", 5 * time.Second, true},
		{" 12 ", 12 * time.Second, true},
		{"0", time.Second, true},
		{"86400", MaxRetryAfter, true},
		{now.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second, true},
		{"", 0, false}, {"-1", 0, false}, {"5s", 0, false}, {"99999999999", 0, false},
	} {
		got, ok := parseRetryAfter(tc.v, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}
