package fetch

import "slices"

// Span is Len bytes of the image from Off.
type Span struct{ Off, Len int64 }

// PrefetchOptions tune Prefetch. Zero values are the documented defaults.
type PrefetchOptions struct {
	// MaxRequest bounds one request, in bytes (0: 4 MiB): the spans'
	// chunks are fetched in runs of consecutive chunks, each one request.
	MaxRequest int64
	// Budget bounds the bytes Prefetch asks for (0: half the cache;
	// without Fill never more than the cache's free room at the call).
	Budget int64
}

// defaultPrefetchRequest is PrefetchOptions.MaxRequest when 0: large, as
// for the fill, since no reader waits for it yet.
const defaultPrefetchRequest = 4 << 20

// Prefetching is what a Prefetch asked for.
type Prefetching struct {
	Chunks   int64 // chunks asked for (neither cached nor under way)
	Bytes    int64 // their bytes
	Requests int64 // requests they make, at most (a failed one is retried as any)
	Skipped  int64 // chunks of the spans past the budget
	// Done is closed when every chunk asked for has come or failed (or
	// the RangeReader closed).
	Done <-chan struct{}
}

// Prefetch fetches the chunks of spans that are neither cached nor under
// way into the cache, in order, in runs of consecutive chunks of at most
// MaxRequest bytes, one request each, behind demand reads and read-ahead:
// with them they hold at most Parallel-1 requests, so a demand read always
// finds a worker, and a reader of a chunk under way waits for it (its
// request is raised to a demand's while queued). Within the budget, and
// a prefetched chunk nobody waited for goes into the cache only while it
// has room: it never evicts a chunk a reader read. Spans past the image's
// end are cut. It does not wait: Prefetching.Done says when it is over.
func (r *RangeReader) Prefetch(spans []Span, o PrefetchOptions) Prefetching {
	perRequest := max(1, o.MaxRequest/r.cs)
	if o.MaxRequest <= 0 {
		perRequest = max(1, defaultPrefetchRequest/r.cs)
	}
	r.mu.Lock()
	budget := o.Budget
	if budget <= 0 {
		budget = r.opt.CacheBytes / 2
	}
	if r.fillDone == nil {
		budget = min(budget, r.opt.CacheBytes-r.cache.bytes)
	}
	// The spans' chunks, in order, each once.
	var chunks []int64
	for _, s := range spans {
		if s.Len <= 0 || s.Off < 0 || s.Off >= r.size {
			continue
		}
		for c := s.Off >> r.opt.chunkShift; c <= (min(s.Off+s.Len, r.size)-1)>>r.opt.chunkShift; c++ {
			chunks = append(chunks, c)
		}
	}
	slices.Sort(chunks)
	chunks = slices.Compact(chunks)
	var p Prefetching
	var calls []*call
	var j *job
	for _, c := range chunks {
		if !r.wanted(c) {
			continue
		}
		if p.Bytes+r.chunkLen(c) > budget {
			p.Skipped++
			continue
		}
		if j == nil || j.first+int64(len(j.calls)) != c || int64(len(j.calls)) == perRequest {
			j = &job{first: c, prio: prefetch}
			r.pending = append(r.pending, j)
			p.Requests++
		}
		calls = append(calls, r.addCall(j, c))
		p.Chunks++
		p.Bytes += r.chunkLen(c)
	}
	if len(calls) > 0 {
		r.stats.prefetched.Add(p.Chunks)
		r.work.Broadcast()
	}
	r.mu.Unlock()
	done := make(chan struct{})
	p.Done = done
	go func() {
		defer close(done)
		for _, cl := range calls {
			select {
			case <-cl.done:
			case <-r.ctx.Done():
				return
			}
		}
	}()
	return p
}

// roomFor says buf fits in the cache without evicting a chunk: always
// with Fill, which keeps the whole image. r.mu is held.
func (r *RangeReader) roomFor(buf *buffer) bool {
	return r.fillDone != nil || r.cache.bytes+int64(len(buf.b)) <= r.opt.CacheBytes
}

// ChunkSize is the unit of the RangeReader's requests and cache.
func (r *RangeReader) ChunkSize() int64 { return r.cs }
