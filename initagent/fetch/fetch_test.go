package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
)

func testImage(t *testing.T, n int) ([]byte, boot.Digest) {
	t.Helper()
	b := randomImage(t, n)
	sum := sha256.Sum256(b)
	return b, boot.DigestFromSum(sum[:])
}

func noSleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// serve serves data with Range, If-Range and a strong ETag.
func serve(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(data))
}

func check(t *testing.T, f *os.File, want []byte) {
	t.Helper()
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file has %d bytes, not the image's %d (or different content)", len(got), len(want))
	}
}

func TestFetchPlain(t *testing.T) {
	data, sum := testImage(t, 3<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, data, `"v1"`) }))
	defer srv.Close()
	f := tempFile(t)
	var last Progress
	res, err := Fetch(context.Background(), srv.URL+"/img?token=secret", sum, int64(len(data)), f, Options{Policy: Policy{Sleep: noSleep}, Progress: func(p Progress) {
		if p.Done < last.Done {
			t.Errorf("progress went back from %d to %d", last.Done, p.Done)
		}
		last = p
	}})
	if err != nil {
		t.Fatal(err)
	}
	check(t, f, data)
	if res.Size != int64(len(data)) || res.Digest != sum || res.Attempts != 1 || res.Resumes != 0 {
		t.Errorf("result %+v", res)
	}
	if last.Done != int64(len(data)) || last.Total != int64(len(data)) {
		t.Errorf("last progress %+v", last)
	}
	if s := res.String(); !strings.Contains(s, "3.0 MiB") || !strings.Contains(s, sum.Short()) {
		t.Errorf("result string %q", s)
	}
}

// dropper serves the image, but the first response dies after cut bytes.
type dropper struct {
	data     []byte
	cut      int
	etag     func(req int) string
	ranges   bool // honour Range
	mu       sync.Mutex
	requests []string // Range header of each request
}

func (d *dropper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.requests = append(d.requests, r.Header.Get("Range"))
	n := len(d.requests)
	d.mu.Unlock()
	etag := `"v1"`
	if d.etag != nil {
		etag = d.etag(n)
	}
	if !d.ranges {
		r.Header.Del("Range")
	}
	if n == 1 {
		w.Header().Set("ETag", etag)
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", itoa(len(d.data)))
		w.Write(d.data[:d.cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	serve(w, r, d.data, etag)
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFetchRetries(t *testing.T) {
	data, sum := testImage(t, 2<<20)
	cut := 700_001
	for _, tc := range []struct {
		name        string
		h           *dropper
		wantRanges  []string
		wantResumes int
	}{
		{"resume with range", &dropper{data: data, cut: cut, ranges: true}, []string{"", "bytes=700001-"}, 1},
		{"server ignores range", &dropper{data: data, cut: cut, ranges: false}, []string{"", "bytes=700001-"}, 0},
		{"image changed", &dropper{data: data, cut: cut, ranges: true, etag: func(n int) string {
			if n == 1 {
				return `"old"`
			}
			return `"new"`
		}}, []string{"", "bytes=700001-"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			f := tempFile(t)
			res, err := Fetch(context.Background(), srv.URL, sum, 0, f, Options{Policy: Policy{Sleep: noSleep}})
			if err != nil {
				t.Fatal(err)
			}
			check(t, f, data)
			if res.Resumes != tc.wantResumes || res.Attempts != 2 {
				t.Errorf("resumes %d attempts %d, want %d and 2", res.Resumes, res.Attempts, tc.wantResumes)
			}
			if strings.Join(tc.h.requests, ",") != strings.Join(tc.wantRanges, ",") {
				t.Errorf("Range headers %q, want %q", tc.h.requests, tc.wantRanges)
			}
		})
	}
}

func TestFetchFailures(t *testing.T) {
	data, sum := testImage(t, 1<<20)
	corrupt := append([]byte(nil), data...)
	corrupt[500] ^= 1
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		size     int64
		want     error
		text     string
		requests int32
	}{
		{"corrupted", func(w http.ResponseWriter, r *http.Request) { serve(w, r, corrupt, `"c"`) }, 0, ErrDigestMismatch, "sha256 is", 1},
		{"truncated, size known", func(w http.ResponseWriter, r *http.Request) { serve(w, r, data[:1000], `"t"`) }, int64(len(data)), ErrSizeMismatch, "truncated", 1},
		{"truncated, size unknown", func(w http.ResponseWriter, r *http.Request) { serve(w, r, data[:1000], `"t"`) }, 0, ErrDigestMismatch, "sha256 is", 1},
		{"too large", func(w http.ResponseWriter, r *http.Request) { serve(w, r, append(data, 1), `"l"`) }, int64(len(data)), ErrSizeMismatch, "too large", 1},
		{"not found", http.NotFound, 0, ErrNotFound, "404", 1},
		{"forbidden", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }, 0, ErrUnavailable, "403", 1},
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 503) }, 0, ErrUnavailable, "after 3 attempts", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1); tc.handler(w, r) }))
			defer srv.Close()
			_, err := Fetch(context.Background(), srv.URL+"/x?token=secret", sum, tc.size, tempFile(t), Options{Policy: Policy{Attempts: 3, Sleep: noSleep}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), srv.URL+"/x") {
				t.Errorf("error %q does not say %q and name the URL", err, tc.text)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q leaks the query", err)
			}
			if got := n.Load(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
		})
	}
}

func TestFetch503ThenOK(t *testing.T) {
	data, sum := testImage(t, 100_000)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			http.Error(w, "busy", 503)
			return
		}
		serve(w, r, data, `"v"`)
	}))
	defer srv.Close()
	var slept []time.Duration
	res, err := Fetch(context.Background(), srv.URL, sum, 0, tempFile(t), Options{Policy: Policy{Sleep: func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || len(slept) != 1 || slept[0] < DefaultBackoff*3/4 || slept[0] > DefaultBackoff*5/4 {
		t.Errorf("attempts %d, slept %v", res.Attempts, slept)
	}
}

func TestFetchStall(t *testing.T) {
	data, sum := testImage(t, 100_000)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(len(data)))
		w.Write(data[:10])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := Fetch(context.Background(), srv.URL, sum, 0, tempFile(t), Options{Policy: Policy{Attempts: 2, Stall: 100 * time.Millisecond, Sleep: noSleep}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no data for 100ms") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, sum := testImage(t, 1)
	_, err := Fetch(context.Background(), url+"/img", sum, 0, tempFile(t), Options{Policy: Policy{Attempts: 2, Sleep: noSleep}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchCancel(t *testing.T) {
	_, sum := testImage(t, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", 503) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Fetch(ctx, srv.URL, sum, 0, tempFile(t), Options{Policy: Policy{Attempts: 100, Sleep: func(context.Context, time.Duration) error {
		cancel()
		return ctx.Err()
	}}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestBadDigest(t *testing.T) {
	if _, err := Fetch(context.Background(), "http://127.0.0.1:1/", "md5:00", 0, tempFile(t), Options{}); err == nil {
		t.Fatal("accepted a bad digest")
	}
}
