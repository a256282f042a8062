package fetch

// Tests against deliberately odd servers and caches (issue 18, item 5,
// (a)-(g)): each case failed, or hung, before its fix. A read that hung
// then is bounded here by a context (oddWait), a backstop, not a timed
// assertion.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
)

// oddWait bounds a read that used to hang for ever.
const oddWait = 20 * time.Second

// readOdd reads n bytes at off, giving up after oddWait.
func readOdd(t *testing.T, r *RangeReader, off int64, n int) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), oddWait)
	defer cancel()
	p := make([]byte, n)
	got, err := r.ReadAtContext(ctx, p, off)
	return p[:got], err
}

// serveRange answers a Range request for bytes first-last of data as a
// 206, with etag.
func serveRange(w http.ResponseWriter, data []byte, etag string, first, last int64) {
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
	w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(data[first : last+1])
}

// TestOddCacheMiss200 (a): a 200 with the whole image to a Range request,
// what nginx's proxy_cache answers on a miss, is retried like a 5xx and
// logged, at OpenRange and after it, instead of failing every later read
// without another request.
func TestOddCacheMiss200(t *testing.T) {
	data := randomImage(t, 1<<20)
	for _, tc := range []struct {
		name   string
		atOpen bool
		n      int // 200s in a row
	}{
		{"after open, one", false, 1},
		{"after open, several", false, 4},
		{"at open, one", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			var mu sync.Mutex
			left := tc.n
			miss := func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
				mu.Lock()
				defer mu.Unlock()
				if left == 0 {
					return false
				}
				left--
				w.Header().Set("ETag", etag)
				w.Write(data) // a 200, whole
				return true
			}
			var l logs
			opts := RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, LogEvery: time.Nanosecond, Logf: l.Logf}
			if tc.atOpen {
				srv.misbehave(miss)
			}
			r := open(t, srv.URL, opts)
			srv.misbehave(miss)
			got, err := readOdd(t, r, 500<<10, 1000)
			if err != nil {
				t.Fatalf("ReadAt after %d answers of 200: %v", tc.n, err)
			}
			if !bytes.Equal(got, data[500<<10:500<<10+1000]) {
				t.Fatal("wrong bytes")
			}
			if n := l.count("HTTP 200 with the whole image"); n == 0 {
				t.Errorf("no message names the 200: %q", l.all())
			}
			if st := r.Stats(); st.Retries < int64(tc.n) {
				t.Errorf("%d retries, want at least %d: %v", st.Retries, tc.n, st)
			}
			checkNoToken(t, &l)
		})
	}
}

// TestOddMalformed (b): answers that will always be wrong fail a read with
// ErrProtocol, naming what was wrong, after MaxMalformed of them without
// progress, instead of being retried for ever; the failure is logged again
// while it lasts; the reader is not dead: once the server answers right,
// reads succeed.
func TestOddMalformed(t *testing.T) {
	data := randomImage(t, 1<<20)
	const maxMalformed = 3
	for _, tc := range []struct {
		name  string
		misdo func(w http.ResponseWriter, r *http.Request, data []byte, etag string)
		says  string
	}{
		{"other offset", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			serveRange(w, data, etag, first+512, last)
		}, "got Content-Range"},
		{"longer than asked", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			serveRange(w, data, etag, first, last+1)
		}, "got Content-Range"},
		{"Content-Length disagrees", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first : first+100])
		}, "Content-Length 100 for Content-Range"},
		{"multipart", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", "multipart/byteranges; boundary=XYZ")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprintf(w, "--XYZ\r\nContent-Range: %s\r\n\r\n", contentRange{first, last, int64(len(data))})
			w.Write(data[first : last+1])
			fmt.Fprintf(w, "\r\n--XYZ--\r\n")
		}, "multipart/byteranges answer"},
		{"redirect loop", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		}, "more than 10 redirects"},
		{"redirect to another scheme", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			http.Redirect(w, r, "ftp://"+r.Host+"/image", http.StatusFound)
		}, `redirect to scheme "ftp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newImageServer(t, data)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, MaxMalformed: maxMalformed, LogEvery: time.Nanosecond, Logf: l.Logf})
			var bad atomic.Bool
			bad.Store(true)
			srv.misbehave(func(w http.ResponseWriter, req *http.Request, data []byte, etag string) bool {
				if bad.Load() {
					tc.misdo(w, req, data, etag)
				}
				return bad.Load()
			})
			_, err := readOdd(t, r, 500<<10, 1000)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadAt: %v, want %v", err, ErrProtocol)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%q does not say %q", err, tc.says)
			}
			if st := r.Stats(); st.Retries != maxMalformed-1 {
				t.Errorf("%d retries, want %d", st.Retries, maxMalformed-1)
			}
			if l.count(" failing (") != 1 || l.count("still failing") != maxMalformed-1 {
				t.Errorf("want one message at the start of the failure and one for each answer after: %q", l.all())
			}
			checkNoToken(t, &l, err)
			bad.Store(false)
			if got, err := readOdd(t, r, 500<<10, 1000); err != nil || !bytes.Equal(got, data[500<<10:500<<10+1000]) {
				t.Errorf("ReadAt once the server is right: %v", err)
			}
		})
	}
}

// TestOddShortAnswers (b): a correct answer that ends before the range
// asked (a Content-Range that starts at the offset asked and ends early),
// or a body cut inside a chunk, brings its bytes; the rest is asked for.
func TestOddShortAnswers(t *testing.T) {
	data := randomImage(t, 48<<10+100)
	for _, tc := range []struct {
		name  string
		misdo func(w http.ResponseWriter, r *http.Request, data []byte, etag string)
	}{
		{"at most 1000 bytes an answer", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			serveRange(w, data, etag, first, min(last, first+999))
		}},
		{"every body cut after 4000 bytes", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			cutBody(w, r, data, etag, 4000)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			srv.misbehave(func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
				tc.misdo(w, r, data, etag)
				return true
			})
			var l logs
			ctx, cancel := context.WithTimeout(t.Context(), oddWait)
			defer cancel()
			r, err := OpenRange(ctx, nil, srv.URL, RangeOptions{ChunkSize: 16 << 10, ReadAhead: -1, Logf: l.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := readOdd(t, r, 0, len(data))
			if err != nil {
				t.Fatalf("ReadAt: %v (%v)", err, r.Stats())
			}
			if !bytes.Equal(got, data) {
				t.Fatal("wrong bytes")
			}
			t.Logf("%v", r.Stats())
		})
	}
}

// loopbackOnly is a dialer that refuses any address but loopback, and
// records what it refused: a test must send nothing elsewhere.
type loopbackOnly struct {
	mu      sync.Mutex
	refused []string
}

func (d *loopbackOnly) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		d.mu.Lock()
		d.refused = append(d.refused, addr)
		d.mu.Unlock()
		return nil, fmt.Errorf("test dialer: %s is not loopback", addr)
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// TestOddRedirects (c): the download's client and the Range reader's own
// share one redirect policy: http and https only, no downgrade, no
// link-local target, a bound on the count.
func TestOddRedirects(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, []byte("image"), `"v1"`)
	}))
	defer plain.Close()
	var mu sync.Mutex
	to := "" // where the TLS server redirects ("": to itself)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		where := to
		mu.Unlock()
		if where == "" {
			where = r.URL.String()
		}
		http.Redirect(w, r, where, http.StatusFound)
	}))
	defer tlsSrv.Close()
	roots := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	rangeOpt, err := RangeOptions{}.config()
	if err != nil {
		t.Fatal(err)
	}
	for _, client := range []struct {
		name string
		make func() *http.Client
	}{
		{"download", NewHTTPClient},
		{"range reader", func() *http.Client { return newRangeClient(rangeOpt) }},
	} {
		for _, tc := range []struct {
			name, to, says string
		}{
			{"downgrade", plain.URL + "/image", "from https to http"},
			{"scheme", "file:///etc/passwd", `redirect to scheme "file"`},
			{"link-local v4", "https://169.254.169.254/latest/meta-data", "link-local address 169.254.169.254"},
			{"link-local v6", "https://[fe80::1%25eth0]:8443/image", "link-local address fe80::1%eth0"},
			{"loop", "", "more than 10 redirects"},
		} {
			t.Run(client.name+"/"+tc.name, func(t *testing.T) {
				mu.Lock()
				to = tc.to
				mu.Unlock()
				c := client.make()
				var dial loopbackOnly
				tr := c.Transport.(*http.Transport)
				tr.DialContext = dial.DialContext
				tr.TLSClientConfig = &tls.Config{RootCAs: roots}
				_, err := Get(t.Context(), c, tlsSrv.URL+"/image?token="+token, "", 100, Policy{Attempts: 1})
				var re *RedirectError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("Get: %v, want a refused redirect saying %q", err, tc.says)
				}
				if err != nil && strings.Contains(err.Error(), token) {
					t.Errorf("error shows the token: %v", err)
				}
				if len(dial.refused) > 0 {
					t.Errorf("dialled %q", dial.refused)
				}
			})
		}
	}
	// The policy itself, and the redirects it lets through.
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"http://a/x", "http://b/y", true},
		{"http://a/x", "https://b/y", true},
		{"https://a/x", "https://[2001:db8::1]/y", true},
		{"https://a/x", "http://b/y", false},
		{"http://a/x", "gopher://b/y", false},
		{"http://a/x", "http://169.254.1.2/y", false},
		{"http://a/x", "http://[::ffff:169.254.1.2]/y", false},
		{"http://a/x", "http://[fe80::1]/y", false},
	} {
		from, _ := http.NewRequest(http.MethodGet, tc.from, nil)
		to, _ := http.NewRequest(http.MethodGet, tc.to, nil)
		if err := CheckRedirect(to, []*http.Request{from}); (err == nil) != tc.ok {
			t.Errorf("CheckRedirect(%s -> %s) = %v, want ok %v", tc.from, tc.to, err, tc.ok)
		}
	}
}

// trickle answers like ServeContent, but sends the body a byte every 5ms
// until the client goes.
func trickle(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
	first, last := int64(0), int64(len(data)-1)
	w.Header().Set("ETag", etag)
	w.Header().Set("Accept-Ranges", "bytes")
	if r.Header.Get("Range") != "" {
		first, last = rangeOf(r)
		w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
		w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	}
	for i := first; i <= last; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
		w.Write(data[i : i+1])
		w.(http.Flusher).Flush()
	}
}

// TestOddSlow (d): a server trickling bytes, each well within the stall
// timeout, has the attempt abandoned for its rate and retried, in the
// Range reader and in the download.
func TestOddSlow(t *testing.T) {
	data, sum := testImage(t, 512<<10)
	const slowBytes, slowWindow = 4096, 100 * time.Millisecond
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, srv *imageServer) (msgs []string, err error)
	}{
		{"range reader", func(t *testing.T, srv *imageServer) ([]string, error) {
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, Stall: time.Minute, SlowBytes: slowBytes, SlowWindow: slowWindow, Logf: l.Logf})
			srv.misbehave(trickleOnce())
			got, err := readOdd(t, r, 300<<10, 1000)
			if err == nil && !bytes.Equal(got, data[300<<10:300<<10+1000]) {
				err = errors.New("wrong bytes")
			}
			return l.all(), err
		}},
		{"download", func(t *testing.T, srv *imageServer) ([]string, error) {
			srv.misbehave(trickleOnce())
			ctx, cancel := context.WithTimeout(t.Context(), oddWait)
			defer cancel()
			var msgs []string
			f := tempFile(t)
			_, err := Fetch(ctx, srv.URL, sum, int64(len(data)), f, Options{Policy: Policy{Stall: time.Minute, SlowBytes: slowBytes, SlowWindow: slowWindow, Sleep: noSleep,
				Retrying: func(_ int, _ time.Duration, err error) { msgs = append(msgs, err.Error()) }}})
			if err == nil {
				check(t, f, data)
			}
			return msgs, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newImageServer(t, data)
			msgs, err := tc.run(t, srv)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), "too slow") {
				t.Errorf("no message says the attempt was too slow: %q", msgs)
			}
		})
	}
}

// trickleOnce trickles the first answer, then lets the server answer.
func trickleOnce() func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
	var once sync.Once
	return func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
		first := false
		once.Do(func() { first = true })
		if first {
			trickle(w, r, data, etag)
		}
		return first
	}
}

// TestOddHeaderCap (e): every client the agent makes refuses headers
// over MaxResponseHeaderBytes, where net/http allows 10 MB.
func TestOddHeaderCap(t *testing.T) {
	data, sum := testImage(t, 100<<10)
	srv := newImageServer(t, data)
	srv.misbehave(func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
		w.Header().Set("X-Junk", strings.Repeat("j", 2*MaxResponseHeaderBytes))
		return false
	})
	const says = "headers exceeded"
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"Get", func() error {
			_, err := Get(t.Context(), NewHTTPClient(), srv.URL, "", 1<<20, Policy{Attempts: 1})
			return err
		}},
		{"Fetch", func() error {
			_, err := Fetch(t.Context(), srv.URL, sum, 0, tempFile(t), Options{Client: NewHTTPClient(), Policy: Policy{Attempts: 2, Sleep: noSleep}})
			return err
		}},
		{"OpenRange", func() error {
			r, err := OpenRange(t.Context(), nil, srv.URL, RangeOptions{MaxMalformed: 2})
			if err == nil {
				r.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), says) {
				t.Fatalf("%v, want an error saying %q", err, says)
			}
		})
	}
}

// lmServer serves an image without a strong ETag but with a Last-Modified
// date, honouring If-Unmodified-Since or not, and records that header.
type lmServer struct {
	mu     sync.Mutex
	data   []byte
	mod    time.Time
	etag   string // "" or weak
	honour bool
	ius    []string // If-Unmodified-Since of each request
}

func (s *lmServer) misdo(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
	s.mu.Lock()
	data, mod, etag := s.data, s.mod, s.etag
	s.ius = append(s.ius, r.Header.Get("If-Unmodified-Since"))
	s.mu.Unlock()
	if !s.honour {
		r.Header.Del("If-Unmodified-Since")
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "", mod, bytes.NewReader(data))
	return true
}

// TestOddChangedNoStrongETag (f): without a strong ETag, the image is
// pinned by its Last-Modified date: a same-size image replaced on the
// server is "image changed" (ErrChanged, permanent), never its new bytes.
func TestOddChangedNoStrongETag(t *testing.T) {
	data := randomImage(t, 1<<20)
	t1 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		etag    string
		honour  bool
		touched time.Time // the new image's date
		says    string
	}{
		{"no ETag, 412", "", true, t1.Add(time.Hour), "HTTP 412 to If-Unmodified-Since"},
		{"weak ETag, 412", `W/"same"`, true, t1.Add(time.Hour), "HTTP 412 to If-Unmodified-Since"},
		{"no ETag, precondition ignored", "", false, t1.Add(time.Hour), "Last-Modified Thu, 02 Jan 2025 03:04:05 GMT at open, now Thu, 02 Jan 2025 04:04:05 GMT"},
		{"no ETag, older date", "", true, t1.Add(-time.Hour), "now Thu, 02 Jan 2025 02:04:05 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			lm := &lmServer{data: data, mod: t1, etag: tc.etag, honour: tc.honour}
			srv.misbehave(lm.misdo)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1, Logf: l.Logf})
			checkRead(t, r, data, 100<<10, 100)
			lm.mu.Lock()
			lm.data, lm.mod = randomImage(t, len(data)), tc.touched
			lm.mu.Unlock()
			got, err := readOdd(t, r, 500<<10, 100)
			if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "image changed") {
				t.Fatalf("ReadAt of a replaced image: %d bytes, %v; want %v", len(got), err, ErrChanged)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%q does not say %q", err, tc.says)
			}
			if st := r.Stats(); st.Retries != 0 {
				t.Errorf("retried %d times", st.Retries)
			}
			lm.mu.Lock()
			ius := lm.ius[len(lm.ius)-1]
			lm.mu.Unlock()
			if ius != t1.Format(http.TimeFormat) {
				t.Errorf("If-Unmodified-Since %q, want %q", ius, t1.Format(http.TimeFormat))
			}
			checkRead(t, r, data, 100<<10, 100) // what was read before stays
		})
	}
}

// sliceServer imitates nginx's slice module over a cache holding two
// versions of an image: slices before boundary are version 1's, the rest
// version 2's. An answer's validators are those of the slice holding its
// first byte; its body is cut where a slice of the other version begins
// (nginx: "etag mismatch in slice response").
type sliceServer struct {
	v1, v2   []byte
	boundary int64 // first byte of version 2
	mu       sync.Mutex
	requests int
}

func (s *sliceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	size := int64(len(s.v1))
	first, last := int64(0), size-1
	ranged := r.Header.Get("Range") != ""
	if ranged {
		first, last = rangeOf(r)
	}
	version := func(off int64) (string, []byte) {
		if off < s.boundary {
			return `"v1"`, s.v1
		}
		return `"v2"`, s.v2
	}
	etag, _ := version(first)
	if im := r.Header.Get("If-Match"); im != "" && im != etag {
		w.WriteHeader(http.StatusPreconditionFailed)
		return
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		ranged, first, last = false, 0, size-1
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
	if ranged {
		w.Header().Set("Content-Range", contentRange{first, last, size}.String())
		w.WriteHeader(http.StatusPartialContent)
	}
	for off := first; off <= last; {
		e, data := version(off)
		if e != etag {
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		end := last + 1
		if off < s.boundary {
			end = min(end, s.boundary)
		}
		w.Write(data[off:end])
		off = end
	}
}

// TestOddDownload (g): the download refuses a coded body at once, and an
// image whose versions a cache of slices mixes is "image changed", not a
// transient failure retried until the attempts run out; so is the Range
// reader's.
func TestOddDownload(t *testing.T) {
	data, sum := testImage(t, 1<<20)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	slices := &sliceServer{v1: data, v2: randomImage(t, len(data)), boundary: 400_000}
	for _, tc := range []struct {
		name     string
		h        http.Handler
		read     func(t *testing.T, url string) error
		want     error
		says     string
		requests int
	}{
		{"download, gzip", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", fmt.Sprint(gz.Len()))
			w.Write(gz.Bytes())
		}), fetchOdd(sum, int64(len(data))), nil, `Content-Encoding "gzip"`, 1},
		{"download, slices of two versions", slices, fetchOdd(sum, int64(len(data))), ErrChanged, `"v1", then "v2", then "v1"`, 3},
		{"range reader, slices of two versions", slices, func(t *testing.T, url string) error {
			r := open(t, url, RangeOptions{ChunkSize: 64 << 10, ReadAhead: -1})
			_, err := readOdd(t, r, slices.boundary-100, 200)
			return err
		}, ErrChanged, "HTTP 412 to If-Match", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				tc.h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			err := tc.read(t, srv.URL+"/image")
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%v, want %v saying %q", err, tc.want, tc.says)
			}
			if tc.want == ErrChanged && !strings.Contains(err.Error(), "image changed") {
				t.Errorf("%q does not say image changed", err)
			}
			if tc.requests > 0 && int(n.Load()) != tc.requests {
				t.Errorf("%d requests, want %d", n.Load(), tc.requests)
			}
		})
	}
}

func fetchOdd(sum boot.Digest, size int64) func(t *testing.T, url string) error {
	return func(t *testing.T, url string) error {
		_, err := Fetch(t.Context(), url, sum, size, tempFile(t), Options{Policy: Policy{Attempts: 10, Sleep: noSleep}})
		return err
	}
}
