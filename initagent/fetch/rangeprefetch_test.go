package fetch

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// rangeRecorder serves data, records the Range of every request, and
// holds the answer to a request whose Range is gated until release.
type rangeRecorder struct {
	mu     sync.Mutex
	ranges []string
	gate   string
	held   chan struct{} // closed when the gated request arrives
	open   chan struct{} // closed to answer it
}

func newRangeRecorder(t *testing.T, data []byte, gate string) (*rangeRecorder, *httptest.Server) {
	l := &rangeRecorder{gate: gate, held: make(chan struct{}), open: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rg := r.Header.Get("Range")
		l.mu.Lock()
		l.ranges = append(l.ranges, rg)
		l.mu.Unlock()
		if gate != "" && rg == gate {
			close(l.held)
			<-l.open
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return l, srv
}

func (l *rangeRecorder) asked() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ranges)
}

// readAll reads [off, off+n) and checks the bytes.
func readAll(t *testing.T, r *RangeReader, data []byte, off, n int64) {
	t.Helper()
	p := make([]byte, n)
	if _, err := r.ReadAt(p, off); err != nil {
		t.Fatalf("read %d bytes at %d: %v", n, off, err)
	}
	if !bytes.Equal(p, data[off:off+n]) {
		t.Fatalf("read %d bytes at %d: other bytes", n, off)
	}
}

// TestPrefetchCoalesces: the spans' chunks come in runs of consecutive
// chunks, one request each of at most MaxRequest bytes; chunks cached
// already (the first, from OpenRange) are not asked again; afterwards
// reading them makes no request.
func TestPrefetchCoalesces(t *testing.T) {
	const cs = 256 << 10
	data := randomImage(t, 32*cs)
	l, srv := newRangeRecorder(t, data, "")
	r := open(t, srv.URL, RangeOptions{ReadAhead: -1, CacheBytes: 16 << 20})
	spans := []Span{
		{Off: 0, Len: 3 * cs},                // chunks 0 (cached) to 2
		{Off: 2*cs + 100, Len: 5 * cs},       // 2 to 7: joins the first run
		{Off: 20 * cs, Len: 1},               // 20
		{Off: 31*cs + 10, Len: 10 * cs},      // 31, cut at the end
		{Off: int64(len(data)) + cs, Len: 1}, // past the end: nothing
	}
	p := r.Prefetch(spans, PrefetchOptions{MaxRequest: 4 * cs})
	<-p.Done
	if p.Chunks != 9 || p.Bytes != 9*cs || p.Requests != 4 || p.Skipped != 0 {
		t.Errorf("prefetching %+v, want 9 chunks in 4 requests", p)
	}
	want := []string{
		fmt.Sprintf("bytes=0-%d", cs-1), // OpenRange
		fmt.Sprintf("bytes=%d-%d", 1*cs, 5*cs-1),
		fmt.Sprintf("bytes=%d-%d", 5*cs, 8*cs-1),
		fmt.Sprintf("bytes=%d-%d", 20*cs, 21*cs-1),
		fmt.Sprintf("bytes=%d-%d", 31*cs, 32*cs-1),
	}
	got := l.asked()
	slices.Sort(got[1:]) // the runs go in parallel
	slices.Sort(want[1:])
	if !slices.Equal(want, got) {
		t.Errorf("requests %q, want %q", got, want)
	}
	readAll(t, r, data, 0, 8*cs)
	readAll(t, r, data, 20*cs, cs)
	readAll(t, r, data, 31*cs, cs)
	if n := len(l.asked()); n != len(want) {
		t.Errorf("reading the prefetched chunks made %d requests: %q", n-len(want), l.asked()[len(want):])
	}
	if s := r.Stats(); s.Prefetched != 9 || s.Hits < 9 {
		t.Errorf("stats %v", s)
	}
	// Prefetching them again asks nothing.
	if p := r.Prefetch(spans, PrefetchOptions{}); p.Chunks != 0 || p.Requests != 0 {
		t.Errorf("again: %+v", p)
	}
}

// TestPrefetchBudget: Prefetch asks for no more than the cache's free
// room, and a prefetched chunk that comes when the cache has filled up
// in the meantime is dropped: the chunks readers read stay.
func TestPrefetchBudget(t *testing.T) {
	const cs = 256 << 10
	data := randomImage(t, 64*cs)
	gate := fmt.Sprintf("bytes=%d-%d", 40*cs, 41*cs-1)
	l, srv := newRangeRecorder(t, data, gate)
	r := open(t, srv.URL, RangeOptions{ReadAhead: -1, CacheBytes: 8 * cs})

	// Chunk 0 and 10-14 read: 6 of 8 chunks held, room for 2.
	readAll(t, r, data, 10*cs, 5*cs)
	p := r.Prefetch([]Span{{Off: 40 * cs, Len: 10 * cs}}, PrefetchOptions{Budget: 100 * cs, MaxRequest: cs})
	if p.Chunks != 2 || p.Skipped != 8 {
		t.Fatalf("prefetching %+v, want 2 chunks and 8 past the budget", p)
	}
	// Chunk 40's answer is held while readers fill the cache.
	<-l.held
	readAll(t, r, data, 20*cs, 2*cs)
	close(l.open)
	<-p.Done
	s := r.Stats()
	if s.PrefetchDropped < 1 || s.Resident > 8*cs {
		t.Errorf("stats %v: want a prefetched chunk dropped, at most 8 chunks held", s)
	}
	before := len(l.asked())
	readAll(t, r, data, 10*cs, 5*cs)
	readAll(t, r, data, 20*cs, 2*cs)
	if got := l.asked(); len(got) != before {
		t.Errorf("chunks read before were evicted: asked again %q", got[before:])
	}
}
