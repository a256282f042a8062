package fetch

import (
	"bytes"
	"crypto/sha256"
	"net"
	"net/http"
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

// killMidBody makes s answer the next request for the image with part of
// its body, then die for good: the listener and every connection closed,
// as when the process is killed. It returns a channel closed once dead.
func killMidBody(s *imageServer) <-chan struct{} {
	dead := make(chan struct{})
	var once sync.Once
	s.misbehave(func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
		first, last := rangeOf(r)
		if r.Header.Get("Range") == "" {
			last = int64(len(data)) - 1
		}
		once.Do(func() {
			w.Header().Set("ETag", etag)
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10)+"/"+strconv.FormatInt(int64(len(data)), 10))
			w.Header().Set("Content-Length", strconv.FormatInt(last-first+1, 10))
			if r.Header.Get("Range") == "" {
				w.Header().Del("Content-Range")
				w.WriteHeader(http.StatusOK)
			} else {
				w.WriteHeader(http.StatusPartialContent)
			}
			w.Write(data[first : first+(last-first+1)/2])
			w.(http.Flusher).Flush()
			go func() { s.stop(); close(dead) }()
		})
		<-r.Context().Done()
		return true
	})
	return dead
}

// TestFailoverRange: a RangeReader over two servers of the same image
// reads from the first; when the first dies mid-read (killed: connections
// cut, then refused), stalls, answers 5xx or loses the image, the reads go
// on from the second and none fails. The move is logged once. The two
// servers' ETags differ (two file servers' would): each is asked with its
// own.
func TestFailoverRange(t *testing.T) {
	data := randomImage(t, 2<<20)
	for _, tc := range []struct {
		name string
		fail func(a *imageServer)
		why  string
	}{
		{"killed mid-body", func(a *imageServer) { killMidBody(a) }, "failing"},
		{"refused", (*imageServer).stop, "failing"},
		{"503", func(a *imageServer) {
			a.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return true
			})
		}, "HTTP 503"},
		{"404", func(a *imageServer) {
			a.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				http.NotFound(w, r)
				return true
			})
		}, "HTTP 404"},
		{"stall", func(a *imageServer) {
			a.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				<-r.Context().Done()
				return true
			})
		}, "no answer for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := newImageServer(t, data), newImageServer(t, data)
			b.replace(data, `"b-etag"`)
			var l logs
			r := open(t, a.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: 4, CacheBytes: 1 << 20, Mirrors: []string{b.URL}, Stall: 300 * time.Millisecond, Logf: l.Logf})
			// Sequentially: the first half from a.
			for off := 0; off < len(data)/2; off += 32 << 10 {
				checkRead(t, r, data, int64(off), 32<<10)
			}
			if b.requests() != 0 {
				t.Errorf("%d requests to the mirror while the first server answered", b.requests())
			}
			tc.fail(a)
			for off := len(data) / 2; off < len(data); off += 32 << 10 {
				checkRead(t, r, data, int64(off), 32<<10)
			}
			readRandom(t, r, data, 4, 10, 100<<10, 7)
			if b.requests() == 0 {
				t.Errorf("no request reached the mirror")
			}
			if n := l.count("reading from"); n != 1 {
				t.Errorf("%d messages of a move, want 1: %q", n, l.all())
			}
			if n := l.count(tc.why); n == 0 {
				t.Errorf("no message says %q: %q", tc.why, l.all())
			}
			checkNoToken(t, &l)
			t.Logf("%q %v", l.all(), r.Stats())
		})
	}
}

// TestFailoverRefusesOtherSize: the first server dies; the second has an
// image of another size and is refused (never read from); the third has
// the image and the reads go on from it.
func TestFailoverRefusesOtherSize(t *testing.T) {
	data := randomImage(t, 1<<20)
	a, b, c := newImageServer(t, data), newImageServer(t, data[:len(data)-4096]), newImageServer(t, data)
	var l logs
	r := open(t, a.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, Mirrors: []string{b.URL, c.URL}, ExpectSize: int64(len(data)), Logf: l.Logf})
	a.stop()
	readRandom(t, r, data, 4, 20, 64<<10, 3)
	if c.requests() == 0 {
		t.Errorf("no request reached the third source")
	}
	if n := l.count(" refused: "); n != 1 {
		t.Errorf("%d messages refuse a source, want 1: %q", n, l.all())
	}
	if n := l.count("has 1044480 bytes, not 1048576"); n != 1 {
		t.Errorf("the refusal does not give both sizes: %q", l.all())
	}
	before := b.requests()
	readRandom(t, r, data, 2, 10, 64<<10, 4)
	if b.requests() != before {
		t.Errorf("the refused source was asked again")
	}
	checkNoToken(t, &l)
}

// TestFailoverAllRefused: when every source left is of another size, the
// reader says the image changed and no read returns other bytes.
func TestFailoverAllRefused(t *testing.T) {
	data := randomImage(t, 1<<20)
	a, b := newImageServer(t, data), newImageServer(t, data)
	var l logs
	r := open(t, a.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, Mirrors: []string{b.URL}, Patience: time.Second, Logf: l.Logf})
	a.replace(data[:len(data)-4096], `"sha256:v2"`)
	b.replace(data[:len(data)-4096], `"sha256:v2"`)
	_, err := r.ReadAt(make([]byte, 10), 500<<10)
	if err == nil {
		t.Fatal("a read of another image succeeded")
	}
	t.Logf("%v %q", err, l.all())
}

// TestFailoverBack: a source that failed is asked again once its rest is
// over, and the reads go back to it: the list is in order of preference.
func TestFailoverBack(t *testing.T) {
	data := randomImage(t, 1<<20)
	a, b := newImageServer(t, data), newImageServer(t, data)
	var l logs
	f, err := newFailover(NewHTTPClient().Transport, []string{a.URL, b.URL}, FailoverOptions{Logf: l.Logf})
	if err != nil {
		t.Fatal(err)
	}
	f.retry = 50 * time.Millisecond
	client := &http.Client{Transport: f}
	get := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, a.URL, nil)
		req.Header.Set("Range", "bytes=0-99")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(buf.Bytes(), data[:100]) {
			t.Fatalf("HTTP %s, %d bytes", resp.Status, buf.Len())
		}
	}
	get()
	a.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	})
	get()
	a.misbehave(nil)
	aBefore := a.requests()
	for i := 0; a.requests() == aBefore || l.count("answers again") == 0; i++ {
		if i == 100 {
			t.Fatalf("never went back to the first source: %q", l.all())
		}
		time.Sleep(20 * time.Millisecond)
		get()
	}
	if n := l.count("failing"); n != 1 {
		t.Errorf("%d moves away, want 1: %q", n, l.all())
	}
	checkNoToken(t, &l)
}

// TestFailoverFetch: a download of the image into a file from the first of
// two servers, which dies halfway through the body: the download resumes
// from the second by Range where it was (no restart), and the digest
// checks the whole.
func TestFailoverFetch(t *testing.T) {
	data := randomImage(t, 4<<20)
	a, b := newImageServer(t, data), newImageServer(t, data)
	b.replace(data, `"b-etag"`)
	var l logs
	client, err := WithMirrors(NewHTTPClient(), []string{a.URL, b.URL}, FailoverOptions{ExpectSize: int64(len(data)), Logf: l.Logf})
	if err != nil {
		t.Fatal(err)
	}
	dead := killMidBody(a)
	f, err := os.Create(filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum := sha256.Sum256(data)
	var ranges []string
	var mu sync.Mutex
	b.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		return false
	})
	res, err := Fetch(t.Context(), a.URL, boot.DigestFromSum(sum[:]), int64(len(data)), f, Options{Client: client, Policy: Policy{Backoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatalf("Fetch: %v (%q)", err, l.all())
	}
	<-dead
	if res.Resumes != 1 {
		t.Errorf("%d resumes, want 1: %v", res.Resumes, res)
	}
	mu.Lock()
	if len(ranges) != 1 || !strings.HasPrefix(ranges[0], "bytes=") || ranges[0] == "bytes=0-" {
		t.Errorf("the second server was asked for %q, want one resume from the middle", ranges)
	}
	mu.Unlock()
	if n := l.count("reading from"); n != 1 {
		t.Errorf("%d messages of a move, want 1: %q", n, l.all())
	}
	checkNoToken(t, &l)
	t.Logf("%v %q", res, l.all())
}

// TestFailoverPassesOthers: requests for other URLs than the first (a
// report, the document) go where they were sent.
func TestFailoverPassesOthers(t *testing.T) {
	var hits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	client, err := WithMirrors(nil, []string{"http://127.0.0.1:1/a", "http://127.0.0.1:2/a"}, FailoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Post(t.Context(), client, "http://"+ln.Addr().String()+"/report", "text/plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests reached the report's server", hits.Load())
	}
	if _, err := WithMirrors(nil, []string{"http://a/x", "ftp://b/x"}, FailoverOptions{}); err == nil {
		t.Errorf("an ftp mirror was taken")
	}
}
