package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/internal/nginxtest"
)

// behindNginx is two overboot servers behind nginx: A has a 3 MiB lazy
// image, B lists A as its peer; nginx balances between them.
type behindNginx struct {
	mu     sync.Mutex // guards sent
	ng     *nginxtest.Nginx
	img    []byte
	blob   string // /blobs/sha256/HEX of the image
	tree   string // /verity/sha256/HEX
	a, b   *counted
	sent   int // requests sent to nginx, answered
	client *http.Client
}

// countingTransport counts the requests whose answer was read.
type countingTransport struct {
	f *behindNginx
	http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.RoundTripper.RoundTrip(r)
	if err == nil {
		resp.Body = &countedBody{resp.Body, c.f}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	f *behindNginx
}

func (b *countedBody) Close() error {
	b.f.mu.Lock()
	b.f.sent++
	b.f.mu.Unlock()
	return b.ReadCloser.Close()
}

// log is nginx's access log once it has a line for every request sent.
func (f *behindNginx) log(t *testing.T) []nginxtest.Entry {
	t.Helper()
	f.mu.Lock()
	n := f.sent
	f.mu.Unlock()
	log, err := f.ng.WaitLog(n)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func startBehindNginx(t *testing.T, slice string) *behindNginx {
	t.Helper()
	img := lazyImage(768, 5)
	a := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	lnA, lnB := listen(t), listen(t)
	b := newConfFix(t, "[server]\ndata = $DATA\npeers = http://"+lnA.Addr().String()+"\n")
	srvA, srvB := serveCounted(t, lnA, a.h), serveCounted(t, lnB, b.h)
	ng := nginxtest.Start(t, nginxtest.Options{Upstreams: []string{lnA.Addr().String(), lnB.Addr().String()}, Slice: slice})
	set := a.s.sets.Load()
	arts, err := set.Resolve(context.Background(), set.Profile("lazy"))
	if err != nil {
		t.Fatal(err)
	}
	f := &behindNginx{ng: ng, img: img, blob: BlobPrefix + arts.Root.Digest.Hex(), tree: TreePrefix + arts.Root.Digest.Hex(), a: srvA, b: srvB}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	f.client = &http.Client{Transport: countingTransport{f, tr}}
	t.Cleanup(tr.CloseIdleConnections)
	return f
}

// get asks nginx for path (with a Range header when rng is not "") and
// returns the body.
func (f *behindNginx) get(t *testing.T, path, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.ng.URL+path, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// cacheOf is the cache status nginx logged for the requests of uri, in
// order, and the log lines.
func (f *behindNginx) cacheOf(t *testing.T, uri string) ([]string, string) {
	t.Helper()
	log := f.log(t)
	var st []string
	var lines strings.Builder
	for _, e := range log {
		if e.URI == uri {
			st = append(st, e.Cache)
			fmt.Fprintln(&lines, e)
		}
	}
	return st, lines.String()
}

// TestNginxCachesBlobs: nginx with proxy_cache in front of two servers:
// the first GET of the image and of its tree is a MISS, the second a HIT
// that reaches neither server; Range reads passed to the servers are
// cached per range (MISS, then HIT).
func TestNginxCachesBlobs(t *testing.T) {
	f := startBehindNginx(t, "")
	for _, path := range []string{f.blob, f.tree} {
		r1, b1 := f.get(t, path, "")
		asked := f.a.blobs.Load() + f.b.blobs.Load()
		r2, b2 := f.get(t, path, "")
		if r1.StatusCode != 200 || r2.StatusCode != 200 || !bytes.Equal(b1, b2) || (path == f.blob && !bytes.Equal(b1, f.img)) {
			t.Fatalf("%s: %d, %d (%d, %d bytes)\n%s", path, r1.StatusCode, r2.StatusCode, len(b1), len(b2), f.ng.ErrorLog())
		}
		if now := f.a.blobs.Load() + f.b.blobs.Load(); now != asked {
			t.Errorf("%s: the second GET reached a server", path)
		}
		if st, lines := f.cacheOf(t, path); strings.Join(st, " ") != "MISS HIT" {
			t.Errorf("%s: cache status %v, want MISS HIT:\n%s", path, st, lines)
		} else {
			t.Logf("nginx access log:\n%s", lines)
		}
	}
	// Range passed: 206 from the server, cached under the range.
	for pass := range 2 {
		for _, rng := range []string{"bytes=0-4095", "bytes=1048576-1114111"} {
			r, b := f.get(t, f.blob, rng)
			var a, z int
			fmt.Sscanf(rng, "bytes=%d-%d", &a, &z)
			if r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, f.img[a:z+1]) {
				t.Errorf("pass %d, %s: %d, %d bytes", pass, rng, r.StatusCode, len(b))
			}
		}
	}
	log := f.log(t)
	var ranged []string
	for _, e := range log {
		if e.Range != "-" {
			ranged = append(ranged, e.Cache)
			t.Logf("%s", e)
		}
	}
	if strings.Join(ranged, " ") != "MISS MISS HIT HIT" {
		t.Errorf("Range requests: cache status %v, want MISS MISS HIT HIT", ranged)
	}
}

// TestNginxSlicedRanges: with nginx's slice module (1 MiB slices), Range
// reads of the image are served from the cache on the second pass: every
// request of that pass is a HIT and no server is asked. A read across a
// slice boundary is answered from both slices.
func TestNginxSlicedRanges(t *testing.T) {
	f := startBehindNginx(t, "1m")
	ranges := []string{"bytes=0-4095", "bytes=1048000-1049999", "bytes=2097152-2359295", "bytes=3141632-"}
	read := func(pass int) {
		for _, rng := range ranges {
			r, b := f.get(t, f.blob, rng)
			var a, z int
			if n, _ := fmt.Sscanf(rng, "bytes=%d-%d", &a, &z); n < 2 {
				z = len(f.img) - 1
			}
			if r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, f.img[a:z+1]) {
				t.Fatalf("pass %d, %s: %d, %d bytes, %v\n%s", pass, rng, r.StatusCode, len(b), r.Header, f.ng.ErrorLog())
			}
		}
	}
	read(1)
	asked := f.a.blobs.Load() + f.b.blobs.Load()
	read(2)
	if now := f.a.blobs.Load() + f.b.blobs.Load(); now != asked {
		t.Errorf("the second pass asked the servers %d times", now-asked)
	}
	log := f.log(t)
	if len(log) != 2*len(ranges) {
		t.Fatalf("%d log lines, want %d", len(log), 2*len(ranges))
	}
	// The first pass: the first read is a MISS; later ones may find
	// their first slice cached already (HIT) by an earlier read.
	if log[0].Cache != "MISS" {
		t.Errorf("first read: %s, want MISS", log[0])
	}
	for _, e := range log[len(ranges):] {
		if e.Cache != "HIT" {
			t.Errorf("second pass: %s, want HIT", e)
		}
	}
	for _, e := range log {
		t.Logf("%s", e)
	}
}

// TestNginxLazyReader: a lazy root's RangeReader (initagent/fetch) reads
// the whole image through nginx, in both modes, twice: the bytes are the
// image's, and the second reader's requests are all HITs.
func TestNginxLazyReader(t *testing.T) {
	for _, mode := range []struct{ name, slice string }{{"passed", ""}, {"sliced", "1m"}} {
		t.Run(mode.name, func(t *testing.T) {
			f := startBehindNginx(t, mode.slice)
			read := func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				rr, err := fetch.OpenRange(ctx, f.client, f.ng.URL+f.blob, fetch.RangeOptions{ExpectSize: int64(len(f.img)), Logf: t.Logf})
				if err != nil {
					t.Fatalf("OpenRange: %v\n%s", err, f.ng.ErrorLog())
				}
				defer rr.Close()
				got := make([]byte, len(f.img))
				if _, err := rr.ReadAt(got, 0); err != nil {
					t.Fatalf("ReadAt: %v", err)
				}
				if !bytes.Equal(got, f.img) {
					t.Fatal("the reader's bytes are not the image's")
				}
			}
			read()
			first := f.log(t)
			asked := f.a.blobs.Load() + f.b.blobs.Load()
			read()
			all := f.log(t)
			if now := f.a.blobs.Load() + f.b.blobs.Load(); now != asked {
				t.Errorf("the second reader reached the servers %d times", now-asked)
			}
			if len(all) == len(first) {
				t.Fatal("the second reader made no request")
			}
			for _, e := range all[len(first):] {
				if e.Cache != "HIT" || e.Status != http.StatusPartialContent {
					t.Errorf("second reader: %s, want a 206 HIT", e)
				}
			}
			t.Logf("second reader, first line: %s", all[len(first)])
		})
	}
}
