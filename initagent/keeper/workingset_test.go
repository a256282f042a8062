package keeper

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// TestRecorder: the chunks of the image and of the tree the kernel
// reads, a read across the seam in both, none after the window, at most
// boot.MaxWorkingSetChunks.
func TestRecorder(t *testing.T) {
	const cs = 4096
	r := newRecorder(cs, 100*cs, 10*cs, time.Hour)
	r.read(0, 100)          // image 0
	r.read(5*cs-1, 2)       // image 4 and 5
	r.read(5*cs, cs)        // image 5 again
	r.read(99*cs, 2*cs)     // image 99, tree 0
	r.read(100*cs+9*cs, cs) // tree 9
	r.read(-1, 5)
	r.read(3*cs, 0)
	r.end()
	r.read(50*cs, cs) // after the window: not noted
	got, over := r.set()
	want := boot.WorkingSet{ChunkSize: cs, Image: boot.RangesOf([]int64{0, 4, 5, 99}), Tree: boot.RangesOf([]int64{0, 9})}
	if diff := cmp.Diff(want, got); diff != "" || over != 0 {
		t.Errorf("set, %d over (-want +got):\n%s", over, diff)
	}
	select {
	case <-r.done:
	default:
		t.Errorf("done not closed by end")
	}

	big := newRecorder(cs, int64(boot.MaxWorkingSetChunks+100)*cs, 0, time.Hour)
	big.read(0, int64(boot.MaxWorkingSetChunks+100)*cs)
	got, over = big.set()
	if got.Count() != boot.MaxWorkingSetChunks || over != 100 {
		t.Errorf("%d chunks noted, %d over; want %d and 100", got.Count(), over, boot.MaxWorkingSetChunks)
	}
	if err := got.Check(int64(boot.MaxWorkingSetChunks+100)*cs, 0); err != nil {
		t.Errorf("a full set is invalid: %v", err)
	}
}

// TestReportWorkingSet: once the window ends the keeper POSTs the set to
// REPORT/working-set, as the server parses it; a 503 is tried again, a
// 400 is not.
func TestReportWorkingSet(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var bodies [][]byte
	answers := []int{http.StatusServiceUnavailable, http.StatusNoContent, http.StatusBadRequest}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		bodies = append(bodies, b)
		w.WriteHeader(answers[min(len(paths), len(answers))-1])
	}))
	defer srv.Close()
	post := func(ctx context.Context, url string, body []byte) error {
		return fetch.Post(ctx, nil, url, "application/json", body)
	}
	const cs = 256 << 10
	digest := "sha256:" + strings.Repeat("ab", 32)
	img := Image{Name: digest, Size: 64 * cs, TreeSize: 8192, Report: srv.URL + "/report/tok"}
	rec := newRecorder(cs, img.Size, img.TreeSize, time.Hour)
	rec.read(0, 3*cs)
	rec.read(img.Size, 4096)
	rec.end()
	var logs strings.Builder
	logf := func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }
	if err := reportWorkingSet(context.Background(), img, rec, post, 0, logf); err != nil {
		t.Fatalf("report: %v", err)
	}
	if len(paths) != 2 || paths[1] != "POST /report/tok"+boot.WorkingSetPath+" application/json" {
		t.Fatalf("requests %q: want the 503 and a second POST to /report/tok/working-set", paths)
	}
	rep, err := boot.ParseWorkingSetReport(bytes.NewReader(bodies[1]))
	if err != nil {
		t.Fatal(err)
	}
	want := boot.WorkingSetReport{Image: boot.Digest(digest), Seconds: 3600, Set: boot.WorkingSet{ChunkSize: cs, Image: boot.RangesOf([]int64{0, 1, 2}), Tree: boot.RangesOf([]int64{0})}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if err := rep.Set.Check(img.Size, img.TreeSize); err != nil {
		t.Errorf("the server would refuse it: %v", err)
	}
	if !strings.Contains(logs.String(), "3 chunks of the image and 1 of its tree") || strings.Contains(logs.String(), "tok") {
		t.Errorf("log (no token): %s", logs.String())
	}

	// The third answer is a 400: given up at once.
	if err := reportWorkingSet(context.Background(), img, rec, post, 0, logf); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("a refused report: %v", err)
	}
	if len(paths) != 3 {
		t.Errorf("a 400 was tried again: %q", paths)
	}
}

// TestPrefetchWorkingSet: the keeper fetches a working set in a few
// large requests (consecutive chunks together, within its cache budget);
// the kernel's reads of those chunks then make no request.
func TestPrefetchWorkingSet(t *testing.T) {
	const cs = 256 << 10
	img := squashfsImage(64*cs, 60*cs)
	tree := bytes.Repeat([]byte("tree"), 4*cs/4)
	var il, tl rangeLog
	is, ts := il.serve(img), tl.serve(tree)
	defer is.Close()
	defer ts.Close()
	d, err := openDevice(context.Background(), Image{URL: is.URL, Size: int64(len(img)), TreeURL: ts.URL, TreeSize: int64(len(tree)), CacheBytes: 32 * cs, Name: "test"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Image chunks 0-9 (0 came with the open) and 20-21, 60; tree 1-2.
	ws := boot.WorkingSet{ChunkSize: cs, Image: boot.RangesOf([]int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 60}), Tree: boot.RangesOf([]int64{1, 2})}
	d.prefetchWorkingSet(ws, false, t.Logf)
	images, trees := len(il.ranges), len(tl.ranges)
	// The open's, then chunks 1-9 (up to 4 MiB a request), 20-21, 60.
	if images != 1+3 || trees != 1+1 {
		t.Errorf("image requests %q, tree requests %q: want the open's and 3, the open's and 1", il.ranges, tl.ranges)
	}
	buf := make([]byte, cs)
	// Backwards, as no sequential reader goes: no read-ahead.
	chunks := ws.Image.Chunks()
	slices.Reverse(chunks)
	for _, c := range chunks {
		if _, err := d.ReadAt(buf, c*cs); err != nil || !bytes.Equal(buf, img[c*cs:(c+1)*cs]) {
			t.Fatalf("chunk %d: %v or other bytes", c, err)
		}
	}
	for _, c := range ws.Tree.Chunks() {
		if _, err := d.ReadAt(buf, int64(len(img))+c*cs); err != nil || !bytes.Equal(buf, tree[c*cs:(c+1)*cs]) {
			t.Fatalf("tree chunk %d: %v or other bytes", c, err)
		}
	}
	if len(il.ranges) != images || len(tl.ranges) != trees {
		t.Errorf("reading the working set made requests: image %q, tree %q", il.ranges[images:], tl.ranges[trees:])
	}
}
