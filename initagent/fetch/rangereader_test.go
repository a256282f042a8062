package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, url string, opts RangeOptions) *RangeReader {
	t.Helper()
	r, err := OpenRange(t.Context(), nil, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRangeRandomReads(t *testing.T) {
	data := randomImage(t, 7<<20+12345) // not a whole number of chunks
	srv := newImageServer(t, data)
	const cacheBytes = 1 << 20 // much smaller than the image: evictions
	r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, CacheBytes: cacheBytes})
	if r.Size() != int64(len(data)) || r.ETag() != `"sha256:v1"` {
		t.Fatalf("size %d, ETag %s", r.Size(), r.ETag())
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 400 {
				off := rng.Int64N(int64(len(data)) + 1000)
				n := rng.IntN(300 << 10)
				if rng.IntN(4) == 0 {
					n = rng.IntN(100)
				}
				p := make([]byte, n)
				got, err := r.ReadAt(p, off)
				want := int(min(int64(n), max(0, int64(len(data))-off)))
				if got != want || (got < n && err != io.EOF) || (got == n && err != nil) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, want)
					return
				}
				if !bytes.Equal(p[:got], data[off:off+int64(got)]) {
					t.Errorf("ReadAt(%d bytes at %d): wrong bytes", n, off)
					return
				}
				if s := r.Stats(); s.Resident > cacheBytes {
					t.Errorf("%d bytes cached, more than %d", s.Resident, cacheBytes)
					return
				}
			}
		})
	}
	wg.Wait()
	s := r.Stats()
	t.Logf("%v", s)
	if s.Hits == 0 || s.Joins == 0 || s.Misses == 0 {
		t.Errorf("want hits, joins and misses: %+v", s)
	}
	if n := srv.maxConcurrent(); n > 4 {
		t.Errorf("%d requests at once, more than Parallel", n)
	}
}

func TestRangeEdges(t *testing.T) {
	data := randomImage(t, 3*4096+100)
	srv := newImageServer(t, data)
	r := open(t, srv.URL, RangeOptions{ChunkSize: 4096, CacheBytes: 1 << 20})
	for _, tc := range []struct {
		name  string
		off   int64
		n     int
		wantN int
		err   error
	}{
		{"first byte", 0, 1, 1, nil},
		{"chunk boundary", 4095, 2, 2, nil},
		{"whole", 0, len(data), len(data), nil},
		{"last byte", int64(len(data)) - 1, 1, 1, nil},
		{"across the end", int64(len(data)) - 10, 20, 10, io.EOF},
		{"at the end", int64(len(data)), 1, 0, io.EOF},
		{"at the end, empty", int64(len(data)), 0, 0, nil},
		{"beyond", int64(len(data)) + 1, 1, 0, io.EOF},
		{"empty", 5, 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := r.ReadAt(p, tc.off)
			if n != tc.wantN || err != tc.err {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tc.n, tc.off, n, err, tc.wantN, tc.err)
			}
			if !bytes.Equal(p[:n], data[min(tc.off, int64(len(data))):][:n]) {
				t.Fatal("wrong bytes")
			}
		})
	}
	if _, err := r.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("negative offset: no error")
	}
}

func TestRangeReadAhead(t *testing.T) {
	const size, chunk = 8 << 20, 64 << 10
	data := randomImage(t, size)
	for _, tc := range []struct {
		name         string
		readAhead    int
		streams      int
		maxRequests  int
		maxMisses    int64
		minReadAhead int64
		maxResident  int64
	}{
		// One request for OpenRange, then one per chunk; all stays cached.
		{name: "off", readAhead: -1, streams: 1, maxRequests: size / chunk, maxMisses: size/chunk - 1, maxResident: size},
		// Four chunks (ReadAhead/2) per request, and no reader waits for
		// a request it started. What the reader is past is dropped.
		{name: "one stream", readAhead: 8, streams: 1, maxRequests: 1 + size/chunk/4 + 2, maxMisses: 0, minReadAhead: size/chunk - 2, maxResident: 3 * chunk},
		// Two readers, interleaved: both are detected.
		{name: "two streams", readAhead: 8, streams: 2, maxRequests: 1 + size/chunk/4 + 4, maxMisses: 1, minReadAhead: size/chunk - 4, maxResident: 2 * (8 + 3) * chunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			r := open(t, srv.URL, RangeOptions{ChunkSize: chunk, ReadAhead: tc.readAhead})
			span := int64(size / tc.streams)
			for off := int64(0); off < span; off += 16 << 10 {
				for s := range int64(tc.streams) {
					checkRead(t, r, data, s*span+off, 16<<10)
				}
			}
			st := r.Stats()
			t.Logf("%d requests; %v", srv.requests(), st)
			if n := srv.requests(); n > tc.maxRequests {
				t.Errorf("%d requests, want at most %d", n, tc.maxRequests)
			}
			if st.Misses > tc.maxMisses {
				t.Errorf("%d chunks missed, want at most %d", st.Misses, tc.maxMisses)
			}
			if st.ReadAhead < tc.minReadAhead {
				t.Errorf("%d chunks read ahead, want at least %d", st.ReadAhead, tc.minReadAhead)
			}
			if st.Resident > tc.maxResident {
				t.Errorf("%d bytes cached, want at most %d", st.Resident, tc.maxResident)
			}
		})
	}
}

func TestRangeLRUBound(t *testing.T) {
	data := randomImage(t, 4<<20+777)
	srv := newImageServer(t, data)
	const cacheBytes = 512 << 10
	r := open(t, srv.URL, RangeOptions{ChunkSize: 32 << 10, CacheBytes: cacheBytes, ReadAhead: 4})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		checkRead(t, r, data, rng.Int64N(int64(len(data))), rng.IntN(100<<10))
		r.mu.Lock()
		var bytes int64
		n := 0
		for e := r.cache.head.next; e != &r.cache.head; e = e.next {
			bytes += int64(len(e.buf.b))
			n++
		}
		held, entries := r.cache.bytes, len(r.cache.m)
		r.mu.Unlock()
		if bytes != held || n != entries {
			t.Fatalf("cache counts %d bytes in %d entries, holds %d in %d", held, entries, bytes, n)
		}
		if bytes > cacheBytes {
			t.Fatalf("cache holds %d bytes, more than %d", bytes, cacheBytes)
		}
	}
	// The most recently read chunk is still there.
	checkRead(t, r, data, 0, 10)
	before := r.Stats()
	checkRead(t, r, data, 0, 10)
	if after := r.Stats(); after.Hits != before.Hits+1 || after.Requests != before.Requests {
		t.Errorf("re-reading a chunk: %+v, then %+v", before, after)
	}
}

// TestRangeRetried: answers that are wrong in a way retrying fixes are never
// returned as data.
func TestRangeRetried(t *testing.T) {
	data := randomImage(t, 2<<20)
	for _, tc := range []struct {
		name  string
		misdo func(w http.ResponseWriter, r *http.Request, data []byte, etag string)
	}{
		{"cut body", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			cutBody(w, r, data, etag, 1000)
		}},
		{"cut body, no byte", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			cutBody(w, r, data, etag, 0)
		}},
		{"short Content-Length", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first : first+100])
		}},
		{"chunked, short", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first:last]) // one byte short
		}},
		{"chunked, long", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first : last+1])
			w.Write([]byte("surplus"))
		}},
		{"other range", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			first, last := rangeOf(r)
			first, last = first+1, min(last+1, int64(len(data))-1)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", contentRange{first, last, int64(len(data))}.String())
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[first : last+1])
		}},
		{"bad Content-Range", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Range", "bytes 0-x/1")
			w.WriteHeader(http.StatusPartialContent)
		}},
		{"503", func(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newImageServer(t, data)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Logf: l.Logf, ReadAhead: -1})
			// Every other answer to a request misbehaves: retrying fixes
			// it, and no retry loop meets MaxMalformed answers in a row
			// (a count over all requests could give one loop four). A
			// retry that continues a cut body asks for fewer bytes, but
			// up to the same last one.
			var mu sync.Mutex
			n := map[int64]int{}
			srv.misbehave(func(w http.ResponseWriter, req *http.Request, data []byte, etag string) bool {
				_, last := rangeOf(req)
				mu.Lock()
				n[last]++
				bad := n[last]%2 == 1
				mu.Unlock()
				if bad {
					tc.misdo(w, req, data, etag)
				}
				return bad
			})
			readRandom(t, r, data, 4, 20, 200<<10, 3)
			if st := r.Stats(); st.Retries == 0 {
				t.Errorf("no retries: %v", st)
			}
			if l.count("failing") == 0 || l.count("back after") == 0 {
				t.Errorf("messages: %q", l.all())
			}
			checkNoToken(t, &l)
		})
	}
}

// TestRangePermanent: answers that retrying cannot fix are errors, at once.
func TestRangePermanent(t *testing.T) {
	data := randomImage(t, 1<<20)
	for _, tc := range []struct {
		name     string
		change   func(s *imageServer)
		want     error
		contains []string
	}{
		{
			name:     "ETag changed, 412",
			change:   func(s *imageServer) { s.replace(randomImage(t, len(data)), `"sha256:v2"`) },
			want:     ErrChanged,
			contains: []string{`"sha256:v1"`, `"sha256:v2"`},
		},
		{
			name: "ETag changed, If-Match ignored",
			change: func(s *imageServer) {
				s.replace(randomImage(t, len(data)), `"sha256:v2"`)
				s.misbehave(func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
					r.Header.Del("If-Match")
					w.Header().Set("ETag", etag)
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
					return true
				})
			},
			want:     ErrChanged,
			contains: []string{`"sha256:v1"`, `"sha256:v2"`},
		},
		{
			name:     "ETag gone",
			change:   func(s *imageServer) { s.replace(data, "") },
			want:     ErrChanged,
			contains: []string{`"sha256:v1"`, "(none)"},
		},
		{
			name:     "size changed",
			change:   func(s *imageServer) { s.replace(append(data[:len(data):len(data)], 1, 2, 3), `"sha256:v1"`) },
			want:     ErrChanged,
			contains: []string{"1048576 bytes at open, now 1048579"},
		},
		{
			name:     "416",
			change:   func(s *imageServer) { s.replace(data[:1000], `"sha256:v1"`) },
			want:     ErrSizeMismatch,
			contains: []string{"416", "opened as 1048576 bytes"},
		},
		{
			name: "404",
			change: func(s *imageServer) {
				s.misbehave(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
					http.NotFound(w, r)
					return true
				})
			},
			want: ErrNotFound,
		},
		{
			name: "gzip",
			change: func(s *imageServer) {
				s.misbehave(func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool {
					w.Header().Set("Content-Encoding", "gzip")
					return false
				})
			},
			contains: []string{`Content-Encoding "gzip"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			var l logs
			r := open(t, srv.URL, RangeOptions{ChunkSize: 64 << 10, Logf: l.Logf, ReadAhead: -1})
			checkRead(t, r, data, 0, 100) // cached at OpenRange
			checkRead(t, r, data, 100<<10, 100)
			tc.change(srv)
			_, err := r.ReadAt(make([]byte, 100), 500<<10)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("ReadAt after the change: %v, want %v", err, tc.want)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			checkNoToken(t, &l, err)
			if st := r.Stats(); st.Retries != 0 {
				t.Errorf("retried %d times", st.Retries)
			}
			// No further request: the answer would be the same.
			before := srv.requests()
			if _, err2 := r.ReadAt(make([]byte, 100), 800<<10); err2 == nil || tc.want != nil && !errors.Is(err2, tc.want) {
				t.Errorf("second ReadAt: %v, want %v", err2, tc.want)
			}
			if after := srv.requests(); after != before {
				t.Errorf("%d more requests after a permanent error", after-before)
			}
			// What was read before the change is still served: it is
			// all of the version opened.
			checkRead(t, r, data, 0, 100)
		})
	}
}

func TestRangeOpenErrors(t *testing.T) {
	data := randomImage(t, 100<<10)
	for _, tc := range []struct {
		name     string
		misdo    func(w http.ResponseWriter, r *http.Request, data []byte, etag string) bool
		opts     RangeOptions
		want     error
		contains string
		requests int // 0: 1
	}{
		{
			// Asked again, as a cache's miss answers so too, but not
			// for ever.
			name: "no Range",
			misdo: func(w http.ResponseWriter, r *http.Request, data []byte, _ string) bool {
				w.Write(data)
				return true
			},
			want:     ErrNoRange,
			contains: "HTTP 200 with the whole image for bytes=0-262143",
			requests: DefaultMaxMalformed,
		},
		{
			name:     "size",
			opts:     RangeOptions{ExpectSize: 100 << 20},
			want:     ErrSizeMismatch,
			contains: "the server has 102400 bytes, expected 104857600",
		},
		{
			name: "empty",
			misdo: func(w http.ResponseWriter, r *http.Request, _ []byte, etag string) bool {
				w.Header().Set("ETag", etag)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(nil))
				return true
			},
			want:     ErrSizeMismatch,
			contains: "the image is empty",
		},
		{
			name: "404",
			misdo: func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				http.NotFound(w, r)
				return true
			},
			want: ErrNotFound,
		},
		{
			name: "403",
			misdo: func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) bool {
				http.Error(w, "no", http.StatusForbidden)
				return true
			},
			contains: "unexpected HTTP 403 Forbidden",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, data)
			srv.misbehave(tc.misdo)
			var l logs
			tc.opts.Logf = l.Logf
			r, err := OpenRange(t.Context(), nil, srv.URL, tc.opts)
			if err == nil {
				r.Close()
				t.Fatal("OpenRange succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("OpenRange: %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("OpenRange: %q does not say %q", err, tc.contains)
			}
			checkNoToken(t, &l, err)
			if n := srv.requests(); n != max(tc.requests, 1) {
				t.Errorf("%d requests, want %d", n, max(tc.requests, 1))
			}
		})
	}
}

func TestRangeOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts RangeOptions
		want string
	}{
		{"chunk size", RangeOptions{ChunkSize: 3000}, "chunk size 3000 is not a power of two"},
		{"cache", RangeOptions{ChunkSize: 1 << 20, CacheBytes: 4 << 20}, "cache of 4194304 bytes is smaller than a read-ahead window (9 chunks of 1048576 bytes)"},
		{"patience", RangeOptions{Patience: -time.Second}, "negative patience -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenRange(context.Background(), nil, "http://127.0.0.1:1/x?token="+token, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenRange: %v, want %q", err, tc.want)
			}
			checkNoToken(t, &logs{}, err)
		})
	}
}
