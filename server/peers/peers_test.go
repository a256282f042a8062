package peers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

func digestOf(b []byte) boot.Digest {
	s := sha256.Sum256(b)
	return boot.DigestFromSum(s[:])
}

// source is a fake server: it answers GET /blobs/sha256/HEX with body
// (whatever the digest), or 404 when body is nil, and counts requests and
// those that lacked Header.
type source struct {
	body     []byte
	requests atomic.Int64
	unmarked atomic.Int64
	block    chan struct{} // if non-nil, answers wait for it to close
}

func (s *source) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Header.Get(Header) != HeaderValue {
			s.unmarked.Add(1)
		}
		if s.block != nil {
			select {
			case <-s.block:
			case <-r.Context().Done():
				return
			}
		}
		if s.body == nil || !strings.HasPrefix(r.URL.Path, BlobPath) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
		w.Write(s.body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func newStore(t *testing.T) *blobstore.Store {
	t.Helper()
	st, err := blobstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestFetchInOrder: sources are asked in order; one without the blob
// (404) and one that sends other bytes are passed over, the liar named in
// the log; the blob is kept from the first honest one, and every request
// is marked as a peer fetch.
func TestFetchInOrder(t *testing.T) {
	blob := bytes.Repeat([]byte("overboot"), 10000)
	d := digestOf(blob)
	empty, liar, honest, after := &source{}, &source{body: bytes.Repeat([]byte("OVERBOOT"), 10000)}, &source{body: blob}, &source{body: blob}
	var logs bytes.Buffer
	st := newStore(t)
	liarURL := liar.start(t)
	f := &Fetcher{Store: st, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	f.SetSources([]string{empty.start(t), liarURL, honest.start(t), after.start(t)})
	if err := f.Fetch(context.Background(), d, -1); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(st.BlobPath(d)); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("kept blob: %d bytes, %v", len(got), err)
	}
	for name, n := range map[string]int64{"empty": empty.requests.Load(), "liar": liar.requests.Load(), "honest": honest.requests.Load(), "after": after.requests.Load()} {
		want := int64(1)
		if name == "after" {
			want = 0
		}
		if n != want {
			t.Errorf("%s: %d requests, want %d", name, n, want)
		}
	}
	for _, s := range []*source{empty, liar, honest} {
		if s.unmarked.Load() != 0 {
			t.Errorf("a request without %s", Header)
		}
	}
	if !strings.Contains(logs.String(), "not what its digest says") || !strings.Contains(logs.String(), "peer="+liarURL) {
		t.Errorf("the liar is not named in the log:\n%s", logs.String())
	}
	// Asked again, it is here: no request.
	if err := f.Fetch(context.Background(), d, int64(len(blob))); err != nil || honest.requests.Load() != 1 {
		t.Errorf("second fetch: %v, %d requests", err, honest.requests.Load())
	}
}

// TestFetchRefused: liars only, a wrong size, nobody with the blob: the
// error says which, and nothing is kept.
func TestFetchRefused(t *testing.T) {
	blob := []byte("the real blob")
	d := digestOf(blob)
	for _, c := range []struct {
		name     string
		sources  []*source
		size     int64
		notFound bool
		want     string
	}{
		{"liar", []*source{{body: []byte("another blob!")}}, -1, false, "content of digest " + string(digestOf([]byte("another blob!")))},
		{"longer than its size", []*source{{body: append(blob, '!')}}, int64(len(blob)), false, "14 bytes where 13 were expected"},
		{"nobody", []*source{{}, {}}, -1, true, "404 not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newStore(t)
			f := &Fetcher{Store: st}
			var urls []string
			for _, s := range c.sources {
				urls = append(urls, s.start(t))
			}
			f.SetSources(urls)
			err := f.Fetch(context.Background(), d, c.size)
			if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, ErrNotFound) != c.notFound {
				t.Errorf("err = %v, want %q (not found: %v)", err, c.want, c.notFound)
			}
			if _, err := st.OpenBlob(d); err == nil {
				t.Error("kept")
			}
		})
	}
	if err := (&Fetcher{Store: newStore(t)}).Fetch(context.Background(), d, -1); !errors.Is(err, ErrNotFound) {
		t.Errorf("no sources: %v", err)
	}
}

// TestFetchOnce: callers asking for one blob at once share one transfer.
func TestFetchOnce(t *testing.T) {
	blob := bytes.Repeat([]byte{7}, 1<<20)
	d := digestOf(blob)
	src := &source{body: blob, block: make(chan struct{})}
	f := &Fetcher{Store: newStore(t)}
	f.SetSources([]string{src.start(t)})
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Fetch(context.Background(), d, -1)
		}()
	}
	// Release the source once all n wait for the transfer.
	for {
		f.mu.Lock()
		c := f.inflight[d]
		waiting := c != nil && c.waiters == n
		f.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(src.block)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := src.requests.Load(); got != 1 {
		t.Errorf("%d requests for one blob, want 1", got)
	}
}

// TestFetchStalled: a source that answers nothing is given up after
// Stall, and the next one is asked.
func TestFetchStalled(t *testing.T) {
	blob := []byte("after a silent peer")
	d := digestOf(blob)
	silent := &source{body: blob, block: make(chan struct{})}
	t.Cleanup(func() { close(silent.block) })
	honest := &source{body: blob}
	silentURL := silent.start(t)
	f := &Fetcher{Store: newStore(t), Stall: time.Second}
	f.SetSources([]string{silentURL, honest.start(t)})
	if err := f.Fetch(context.Background(), d, -1); err != nil {
		t.Fatal(err)
	}
	if silent.requests.Load() != 1 || honest.requests.Load() != 1 {
		t.Errorf("requests: silent %d, honest %d", silent.requests.Load(), honest.requests.Load())
	}
}

// TestFetchMissRemembered: a digest no source had is answered "not found"
// without asking again for MissTTL (made-up digests cost each peer one
// request each), unless the sources change.
func TestFetchMissRemembered(t *testing.T) {
	s := &source{}
	f := &Fetcher{Store: newStore(t)}
	f.SetSources([]string{s.start(t)})
	d := digestOf([]byte("nobody has it"))
	for range 3 {
		if err := f.Fetch(context.Background(), d, -1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("the source was asked %d times, want 1", n)
	}
	other := &source{body: []byte("nobody has it")}
	f.SetSources([]string{s.start(t), other.start(t)})
	if err := f.Fetch(context.Background(), d, -1); err != nil {
		t.Fatalf("after a new source came: %v", err)
	}
}
