package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRangeOutage: while the server is away reads wait, then succeed; none
// fails. One message says it went, one that it is back.
func TestRangeOutage(t *testing.T) {
	data := randomImage(t, 4<<20)
	const outage = 1500 * time.Millisecond
	for _, tc := range []struct {
		name       string
		down, back func(s *imageServer)
	}{
		{"refused", (*imageServer).stop, (*imageServer).start},
		{"reset", func(s *imageServer) {
			s.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.(*net.TCPConn).SetLinger(0) // RST
					conn.Close()
				}
				return true
			})
		}, func(s *imageServer) { s.misbehave(nil) }},
		{"503", func(s *imageServer) {
			s.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				http.Error(w, "restarting", http.StatusServiceUnavailable)
				return true
			})
		}, func(s *imageServer) { s.misbehave(nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newImageServer(t, data)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Logf: l.Logf})
			tc.down(srv)
			start := time.Now()
			time.AfterFunc(outage, func() { tc.back(srv) })
			readRandom(t, r, data, 8, 10, 200<<10, 4)
			if took := time.Since(start); took < outage {
				t.Errorf("reads done after %v, before the server came back", took)
			}
			if st := r.Stats(); st.Retries == 0 {
				t.Errorf("no retries: %v", st)
			}
			if n := l.count("failing"); n != 1 {
				t.Errorf("%d messages say the server is failing, want 1: %q", n, l.all())
			}
			if n := l.count("back after "); n != 1 {
				t.Errorf("%d messages say the server is back, want 1: %q", n, l.all())
			}
			checkNoToken(t, &l)
			t.Logf("%q", l.all())
		})
	}
}

func TestRangePatience(t *testing.T) {
	data := randomImage(t, 1<<20)
	srv := newImageServer(t, data)
	var l logs
	const patience = 300 * time.Millisecond
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Patience: patience, Logf: l.Logf})
	srv.stop()
	start := time.Now()
	_, err := r.ReadAt(make([]byte, 10), 500<<10)
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadAt: %v, want %v", err, ErrUnavailable)
	}
	if took < patience || took > patience+2*time.Second {
		t.Errorf("gave up after %v, patience %v", took, patience)
	}
	for _, s := range []string{"for 300ms", "connection refused", "reachable"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
	checkNoToken(t, &l, err)
	// Not permanent: when the server is back, reads succeed again.
	srv.start()
	checkRead(t, r, data, 500<<10, 10)
	if l.count("back after") != 1 {
		t.Errorf("messages: %q", l.all())
	}
}

// TestRangeOpenWaits: OpenRange, too, waits for the server.
func TestRangeOpenWaits(t *testing.T) {
	data := randomImage(t, 1<<20)
	srv := newImageServer(t, data)
	srv.stop()
	time.AfterFunc(300*time.Millisecond, srv.start)
	r := open(t, srv.URL, RangeOptions{})
	checkRead(t, r, data, 0, len(data))
}

// TestRangeStop: Close, or the end of OpenRange's context, ends the wait
// for an absent server.
func TestRangeStop(t *testing.T) {
	data := randomImage(t, 1<<20)
	for _, tc := range []struct {
		name string
		stop func(r *RangeReader, cancel context.CancelFunc)
		want error
	}{
		{"Close", func(r *RangeReader, _ context.CancelFunc) { r.Close() }, ErrClosed},
		{"context", func(_ *RangeReader, cancel context.CancelFunc) { cancel() }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r, err := OpenRange(ctx, nil, srv.URL, RangeOptions{ChunkSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			srv.stop()
			done := make(chan error)
			go func() {
				_, err := r.ReadAt(make([]byte, 10), 500<<10)
				done <- err
			}()
			time.Sleep(200 * time.Millisecond) // the read is waiting
			tc.stop(r, cancel)
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Errorf("ReadAt: %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ReadAt still waiting")
			}
			// Even what is cached is no longer read.
			if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, tc.want) {
				t.Errorf("ReadAt after: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRangeReadAtContext: a reader that gives up does not stop the request
// others wait for.
func TestRangeReadAtContext(t *testing.T) {
	data := randomImage(t, 1<<20)
	srv := newImageServer(t, data)
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10})
	srv.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := r.ReadAtContext(ctx, make([]byte, 10), 500<<10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadAtContext: %v, want %v", err, context.DeadlineExceeded)
	}
	srv.start()
	checkRead(t, r, data, 500<<10, 10)
}

// TestRangePatienceQueued: reads queued behind others during an outage do not
// wait Patience afresh.
func TestRangePatienceQueued(t *testing.T) {
	data := randomImage(t, 4<<20)
	srv := newImageServer(t, data)
	const patience = 400 * time.Millisecond
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Parallel: 2, ReadAhead: -1, Patience: patience})
	srv.stop()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 8 { // far apart: 8 requests, 2 at a time
		wg.Go(func() {
			if _, err := r.ReadAt(make([]byte, 10), int64(g)<<19+100<<10); !errors.Is(err, ErrUnavailable) {
				t.Errorf("ReadAt: %v, want %v", err, ErrUnavailable)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > patience+500*time.Millisecond {
		t.Errorf("the last read gave up after %v, patience %v", took, patience)
	}
}

// TestRangeStall: a request that gets no byte for Stall, before the
// headers or in the body, is abandoned and retried, once, and the message
// says which.
func TestRangeStall(t *testing.T) {
	data := randomImage(t, 1<<20)
	for _, tc := range []struct {
		name  string
		msg   string
		misdo func(w http.ResponseWriter, r *http.Request, data []byte, etag string)
	}{
		{"no headers", "no answer for 200ms", func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
			<-r.Context().Done()
		}},
		{"body stops", "no data for 200ms", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first : first+1000])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newImageServer(t, data)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Stall: 200 * time.Millisecond, Logf: l.Logf})
			var once sync.Once
			srv.misbehave(func(w http.ResponseWriter, req *http.Request, data []byte, etag string) bool {
				stall := false
				once.Do(func() { stall = true })
				if stall {
					tc.misdo(w, req, data, etag)
				}
				return stall
			})
			start := time.Now()
			checkRead(t, r, data, 300<<10, 1000)
			if took := time.Since(start); took < 200*time.Millisecond {
				t.Errorf("read after %v, before the stall timeout", took)
			}
			if l.count(tc.msg) != 1 {
				t.Errorf("messages: %q", l.all())
			}
		})
	}
}
