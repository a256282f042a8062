package fetch

import (
	"bytes"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// imageServer serves an image like overboot's /blobs/sha256/ handler
// (http.ServeContent, a strong ETag) and can misbehave, go away and come
// back on the same address.
type imageServer struct {
	t    *testing.T
	addr string
	URL  string // with a token in the query, which no message may show

	mu      sync.Mutex // guards the fields below
	data    []byte
	etag    string
	misdo   func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool
	srv     *http.Server
	gets    int   // range requests answered (OpenRange's included)
	current int   // requests being answered
	most    int   // the most answered at once
	served  int64 // body bytes asked for
}

const token = "s3cret-token"

func randomImage(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	crand.Read(b)
	return b
}

func newImageServer(t *testing.T, data []byte) *imageServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &imageServer{t: t, addr: ln.Addr().String(), data: data, etag: `"sha256:v1"`}
	s.URL = "http://" + s.addr + "/blobs/sha256/v1?token=" + token
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *imageServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ErrorLog: nil}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, etag, misdo := s.data, s.etag, s.misdo
	if r.Header.Get("Range") != "" {
		s.gets++
	}
	s.current++
	s.most = max(s.most, s.current)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.current--
		s.mu.Unlock()
	}()
	if r.URL.Query().Get("token") != token {
		http.Error(w, "no token", http.StatusForbidden)
		return
	}
	if misdo != nil && misdo(w, r, data, etag) {
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// misbehave makes the server answer with f first; f returns false to let
// the normal handler answer.
func (s *imageServer) misbehave(f func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.misdo = f
}

// replace changes the image on the server.
func (s *imageServer) replace(data []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.etag = data, etag
}

func (s *imageServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

func (s *imageServer) maxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most
}

// stop closes the listener and every connection: connections are refused.
func (s *imageServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start listens again on the same address.
func (s *imageServer) start() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Errorf("listen again on %s: %v", s.addr, err)
		return
	}
	s.serve(ln)
}

// cutBody answers like ServeContent but aborts the connection after n
// body bytes.
func cutBody(w http.ResponseWriter, r *http.Request, data []byte, etag string, n int) {
	w.Header().Set("ETag", etag)
	http.ServeContent(&cutter{ResponseWriter: w, left: n}, r, "", time.Time{}, bytes.NewReader(data))
}

type cutter struct {
	http.ResponseWriter
	left int
}

func (c *cutter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is closed mid-body
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

// rangeOf parses a request's single "bytes=A-B" range.
func rangeOf(r *http.Request) (first, last int64) {
	fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last)
	return first, last
}

// logs collects Logf messages.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// count is how many messages hold substr.
func (l *logs) count(substr string) int {
	n := 0
	for _, s := range l.all() {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// checkNoToken fails when a message or an error shows the URL's token.
func checkNoToken(t *testing.T, l *logs, errs ...error) {
	t.Helper()
	for _, s := range l.all() {
		if strings.Contains(s, token) {
			t.Errorf("message shows the token: %s", s)
		}
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

// checkRead reads n bytes at off and compares them with want.
func checkRead(t *testing.T, r *RangeReader, want []byte, off int64, n int) {
	t.Helper()
	p := make([]byte, n)
	got, err := r.ReadAt(p, off)
	wantN := min(int64(n), max(0, int64(len(want))-off))
	if got != int(wantN) || (err != nil && !(err == io.EOF && got < n)) {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, wantN)
	}
	if !bytes.Equal(p[:got], want[off:off+int64(got)]) {
		t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", n, off)
	}
}

// readRandom checks reads of up to most bytes at random offsets: reads
// of them in each of goroutines, the g-th seeded with (g, seed).
func readRandom(t *testing.T, r *RangeReader, want []byte, goroutines, reads, most int, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			for range reads {
				checkRead(t, r, want, rng.Int64N(int64(len(want))), rng.IntN(most))
			}
		})
	}
	wg.Wait()
}

// waitFill waits for r's fill to complete.
func waitFill(t *testing.T, r *RangeReader) {
	t.Helper()
	select {
	case <-r.FillDone():
	case <-time.After(30 * time.Second):
		t.Fatalf("fill not done: %v", r.Stats())
	}
	if err := r.FillErr(); err != nil {
		t.Fatal(err)
	}
}
