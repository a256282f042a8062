package fetch

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRangeFill: the whole image comes into RAM; then the server can go.
func TestRangeFill(t *testing.T) {
	data := randomImage(t, 6<<20+5)
	srv := newImageServer(t, data)
	var l logs
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Fill: true, CacheBytes: 1 << 20, Logf: l.Logf})
	// Demand reads meanwhile.
	rng := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		checkRead(t, r, data, rng.Int64N(int64(len(data))), rng.IntN(100<<10))
	}
	waitFill(t, r)
	st := r.Stats()
	if st.Resident != int64(len(data)) {
		t.Errorf("%d bytes in RAM, want %d (CacheBytes does not apply)", st.Resident, len(data))
	}
	if l.count("all 6.0 MiB in RAM") != 1 {
		t.Errorf("messages: %q", l.all())
	}
	if n := srv.maxConcurrent(); n > 4 {
		t.Errorf("%d requests at once, more than Parallel", n)
	}
	srv.stop()
	requests := srv.requests()
	readRandom(t, r, data, 8, 200, 300<<10, 7)
	if after := r.Stats(); after.Requests != st.Requests || srv.requests() != requests {
		t.Errorf("requests after the fill: %v, then %v", st, after)
	}
	checkNoToken(t, &l)
}

// TestRangeFillSmall: an image of one chunk is complete at OpenRange.
func TestRangeFillSmall(t *testing.T) {
	data := randomImage(t, 1000)
	srv := newImageServer(t, data)
	r := open(t, srv.URL, RangeOptions{Fill: true})
	select {
	case <-r.FillDone():
	default:
		t.Fatal("fill not done")
	}
	if r.FillErr() != nil || srv.requests() != 1 {
		t.Errorf("FillErr %v, %d requests", r.FillErr(), srv.requests())
	}
}

// TestRangeFillChanged: the fill stops, with the reason, when the image
// changes.
func TestRangeFillChanged(t *testing.T) {
	data := randomImage(t, 16<<20)
	srv := newImageServer(t, data)
	// Slow the fill down so the change comes before its end.
	srv.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
		time.Sleep(20 * time.Millisecond)
		return false
	})
	v2 := randomImage(t, len(data))
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Fill: true})
	srv.replace(v2, `"sha256:v2"`)
	select {
	case <-r.FillDone():
	case <-time.After(30 * time.Second):
		t.Fatal("fill not stopped")
	}
	err := r.FillErr()
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), `"sha256:v2"`) {
		t.Errorf("FillErr: %v, want %v naming both ETags", err, ErrChanged)
	}
}

// TestRangeNext: demand first; read-ahead and fill only while background
// requests hold fewer than Parallel-1, read-ahead before fill; the fill in
// order, skipping what is cached or under way.
func TestRangeNext(t *testing.T) {
	r := &RangeReader{
		opt:      rangeConfig{bgMax: 1, fillRequest: 3},
		cs:       1,
		size:     10,
		nchunks:  10,
		cache:    newLRU(),
		inflight: make(map[int64]*call),
		fillDone: make(chan struct{}),
	}
	r.cache.add(0, &buffer{b: []byte{0}})
	r.cache.add(2, &buffer{b: []byte{2}})
	ahead := &job{first: 7, prio: readAhead}
	r.addCall(ahead, 7)
	want := &job{first: 8, prio: demand}
	r.addCall(want, 8)
	r.pending = []*job{ahead, want}

	type step struct {
		First, Chunks int
		Prio          prio
	}
	var got []step
	take := func(bg int) {
		r.bgRunning = bg
		j := r.next()
		if j == nil {
			got = append(got, step{-1, 0, 0})
			return
		}
		got = append(got, step{int(j.first), len(j.calls), j.prio})
	}
	take(1) // demand, though background requests are at their bound
	take(1) // nothing: read-ahead must wait
	take(0) // read-ahead before fill
	take(0) // fill: chunk 1 (0 and 2 cached)
	take(0) // fill: 3, 4, 5
	take(0) // fill: 6 (7 and 8 under way)
	take(0) // fill: 9
	take(0) // nothing left
	wantSteps := []step{{8, 1, demand}, {-1, 0, 0}, {7, 1, readAhead}, {1, 1, fill}, {3, 3, fill}, {6, 1, fill}, {9, 1, fill}, {-1, 0, 0}}
	if diff := cmp.Diff(wantSteps, got); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
}

// TestRangeFillOutage: past Patience the fill waits between attempts, and it
// completes when the server is back.
func TestRangeFillOutage(t *testing.T) {
	data := randomImage(t, 4<<20)
	srv := newImageServer(t, data)
	srv.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
		time.Sleep(50 * time.Millisecond) // the fill is under way when the server goes
		return false
	})
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Fill: true, Patience: 100 * time.Millisecond})
	srv.stop()
	before := r.Stats().Requests
	time.Sleep(time.Second)
	if n := r.Stats().Requests - before; n > 20 {
		t.Errorf("%d requests in 1s to an absent server", n)
	}
	srv.misbehave(nil)
	srv.start()
	waitFill(t, r)
	checkRead(t, r, data, 0, len(data))
}
