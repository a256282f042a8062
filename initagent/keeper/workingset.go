package keeper

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// The boot working set: what a boot of an image reads in its first
// minute is about the same every time. The keeper records it (recorder)
// and reports it once to the boot's report URL (reportWorkingSet); the
// server hands the union of the last boots' to the next, whose keeper
// fetches it in a few large requests while the agent sets up
// (prefetchWorkingSet).

// recordWindow is how long the keeper records, from the kernel's first
// read of the device (the mount).
const recordWindow = time.Minute

// recorder notes the chunks of the image and of its tree the kernel
// reads during a window that starts at its first read. Its size is
// bounded: a bit per chunk, at most boot.MaxWorkingSetChunks noted.
type recorder struct {
	chunkSize int64
	shift     uint
	split     int64 // the image's size: device offsets from here are the tree's
	window    time.Duration

	mu          sync.Mutex // guards the fields below
	started     bool
	ended       bool
	image, tree []uint64 // bitmaps of chunks read
	count       int
	over        int // chunks not noted past boot.MaxWorkingSetChunks
	done        chan struct{}
}

// newRecorder records reads of a device holding an image of imageSize
// bytes and its tree of treeSize, in chunks of chunkSize bytes (a power
// of two), for window from the first read.
func newRecorder(chunkSize, imageSize, treeSize int64, window time.Duration) *recorder {
	words := func(size int64) int { return int((size+chunkSize-1)/chunkSize+63) / 64 }
	return &recorder{
		chunkSize: chunkSize, shift: uint(bits.TrailingZeros64(uint64(chunkSize))), split: imageSize, window: window,
		image: make([]uint64, words(imageSize)), tree: make([]uint64, words(treeSize)),
		done: make(chan struct{}),
	}
}

// read notes a read of n bytes of the device at off. The first starts
// the window.
func (r *recorder) read(off, n int64) {
	if n <= 0 || off < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	if !r.started {
		r.started = true
		time.AfterFunc(r.window, r.end)
	}
	end := off + n
	if off < r.split {
		r.note(r.image, off, min(end, r.split))
	}
	if end > r.split {
		r.note(r.tree, max(off, r.split)-r.split, end-r.split)
	}
}

// note sets the bits of the chunks of [off, end) in bm. r.mu is held.
func (r *recorder) note(bm []uint64, off, end int64) {
	for c := off >> r.shift; c <= (end-1)>>r.shift && c>>6 < int64(len(bm)); c++ {
		w, b := c>>6, uint64(1)<<(c&63)
		if bm[w]&b != 0 {
			continue
		}
		if r.count == boot.MaxWorkingSetChunks {
			r.over++
			continue
		}
		bm[w] |= b
		r.count++
	}
}

// end stops the recording (once the window is over).
func (r *recorder) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		r.ended = true
		close(r.done)
	}
}

// set is what was recorded, and how many chunks were left out past
// boot.MaxWorkingSetChunks.
func (r *recorder) set() (boot.WorkingSet, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	chunks := func(bm []uint64) boot.ChunkRanges {
		var cs []int64
		for w, word := range bm {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				cs = append(cs, int64(w)*64+int64(b))
				word &^= 1 << b
			}
		}
		return boot.RangesOf(cs)
	}
	return boot.WorkingSet{ChunkSize: r.chunkSize, Image: chunks(r.image), Tree: chunks(r.tree)}, r.over
}

// reportAttempts and reportPause: a working set report is tried a few
// times (the network may be reconfigured at that moment), never for long.
const (
	reportAttempts = 3
	reportPause    = 10 * time.Second
	reportTimeout  = 10 * time.Second
)

// reportWorkingSet waits for the recording to end, then POSTs it once to
// the report URL plus boot.WorkingSetPath (a few attempts). post sends a
// body (fetch.Post in the keeper). It logs the outcome, never the URL
// (it carries the boot's report token).
func reportWorkingSet(ctx context.Context, img Image, rec *recorder, post func(ctx context.Context, url string, body []byte) error, pause time.Duration, logf func(string, ...any)) error {
	select {
	case <-rec.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	set, over := rec.set()
	rep := boot.WorkingSetReport{Image: boot.Digest(img.Name), Seconds: rec.window.Seconds(), Set: set}
	body, err := rep.Marshal()
	if err != nil {
		err = fmt.Errorf("working set of image %s not reported: %w", img.Name, err)
		logf("%v", err)
		return err
	}
	note := ""
	if over > 0 {
		note = fmt.Sprintf(" (%d more left out: at most %d)", over, boot.MaxWorkingSetChunks)
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, reportTimeout)
		err = post(actx, img.Report+boot.WorkingSetPath, body)
		cancel()
		if err == nil {
			logf("working set of image %s: %d chunks of the image and %d of its tree (%s) read in the first %.0fs%s: reported", img.Name, set.Image.Count(), set.Tree.Count(), mibs(set.Count()*set.ChunkSize), rec.window.Seconds(), note)
			return nil
		}
		var se *fetch.StatusError
		if attempt == reportAttempts || errors.As(err, &se) && se.Permanent() {
			err = fmt.Errorf("working set of image %s not reported: %w", img.Name, err)
			logf("%v", err)
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func mibs(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// prefetchWorkingSet fetches the working set earlier boots reported into
// the readers' caches, in a few large requests behind the kernel's own
// reads, within half of each cache (the fill keeps the whole image
// anyway), never evicting what the kernel read.
func (d *device) prefetchWorkingSet(ws boot.WorkingSet, fill bool, logf func(string, ...any)) {
	t0 := time.Now()
	spans := func(rs boot.ChunkRanges) []fetch.Span {
		out := make([]fetch.Span, len(rs))
		for i, r := range rs {
			out[i] = fetch.Span{Off: r.First * ws.ChunkSize, Len: (r.Last - r.First + 1) * ws.ChunkSize}
		}
		return out
	}
	budget := d.cacheBytes / 2
	if fill {
		budget = d.image.Size()
	}
	ip := d.image.Prefetch(spans(ws.Image), fetch.PrefetchOptions{Budget: budget})
	tp := fetch.Prefetching{}
	if d.tree != nil {
		treeBudget := int64(treeCacheBytes / 2)
		if fill {
			treeBudget = d.tree.Size()
		}
		tp = d.tree.Prefetch(spans(ws.Tree), fetch.PrefetchOptions{Budget: treeBudget})
		<-tp.Done
	}
	<-ip.Done
	logf("working set: %s of the image in %d requests and %s of its tree in %d, fetched in %.2fs (%d chunks past the cache budget)",
		mibs(ip.Bytes), ip.Requests, mibs(tp.Bytes), tp.Requests, time.Since(t0).Seconds(), ip.Skipped+tp.Skipped)
}
