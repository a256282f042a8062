package fetch

import "time"

// A job is one request's worth of consecutive chunks: [first,
// first+len(calls)). Readers of any of its chunks wait on the chunk's call;
// the worker running the job completes each call as its bytes arrive.
type job struct {
	first   int64
	calls   []*call
	prio    prio // demand may raise it while queued
	started bool
	// The first bytes of chunk first+next (run's next) already received,
	// from an answer cut short or ending early; only the worker running
	// the job touches them.
	part *buffer
	have int64
}

type prio int

const (
	demand    prio = iota // a reader waits for it
	readAhead             // a sequential reader will soon
	prefetch              // an earlier boot did, early (Prefetch)
	fill                  // nobody yet
)

// call is one chunk under way (singleflight: every reader of the chunk
// waits for the same call).
type call struct {
	job     *job
	waiters int32         // readers waiting; guarded by RangeReader.mu
	done    chan struct{} // closed when buf or err is set
	buf     *buffer       // with a reference for each waiter
	err     error
}

// addCall registers chunk c, the next after j's, as brought by j.
// r.mu is held.
func (r *RangeReader) addCall(j *job, c int64) *call {
	cl := &call{job: j, done: make(chan struct{})}
	j.calls = append(j.calls, cl)
	r.inflight[c] = cl
	return cl
}

// chunkLen is the size of chunk c: ChunkSize but for the last one.
func (r *RangeReader) chunkLen(c int64) int64 {
	return min(r.cs, r.size-c*r.cs)
}

// complete hands chunk c's bytes, or the error that ends the wait for it,
// to its readers. The caller keeps its reference to buf.
func (r *RangeReader) complete(cl *call, c int64, buf *buffer, err error) {
	r.mu.Lock()
	delete(r.inflight, c) // no reader joins cl from now on
	switch {
	case err == nil && cl.job.prio == prefetch && cl.waiters == 0 && !r.roomFor(buf):
		// A prefetched chunk nobody waits for never evicts another:
		// the cache is the budget, and what readers read stays.
		r.stats.prefetchDropped.Add(1)
	case err == nil:
		buf.refs.Add(cl.waiters)
		r.store(c, buf)
	case r.fillDone != nil && c < r.fillNext && r.fillErr == nil:
		r.fillNext = c // the fill asks again
	}
	r.mu.Unlock()
	cl.buf, cl.err = buf, err
	close(cl.done)
}

// store caches chunk c. r.mu is held.
func (r *RangeReader) store(c int64, buf *buffer) {
	r.cache.add(c, buf)
	if r.fillDone == nil {
		r.cache.trim(r.opt.CacheBytes, r.bufs.release)
		return
	}
	if r.cache.bytes == r.size && r.fillErr == nil {
		select {
		case <-r.fillDone:
		default:
			r.opt.Logf("image %s: all %s in RAM after %.1fs: the server is no longer needed", r.where, mib(r.size), time.Since(r.fillStart).Seconds())
			close(r.fillDone)
			// Nothing will be asked of the server again.
			go r.closeIdle()
		}
	}
}

// setFatal records a permanent error: no later request can succeed.
func (r *RangeReader) setFatal(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fatal == nil {
		r.fatal = err
	}
	if r.fillDone != nil && r.fillErr == nil && r.cache.bytes < r.size {
		r.fillErr = err
		close(r.fillDone)
	}
}

// worker runs jobs until the RangeReader closes.
func (r *RangeReader) worker() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		var j *job
		for {
			if r.ctx.Err() != nil {
				r.mu.Unlock()
				return
			}
			if j = r.next(); j != nil {
				break
			}
			r.work.Wait()
		}
		j.started = true
		bg := j.prio != demand
		if bg {
			r.bgRunning++
		}
		r.mu.Unlock()

		r.run(j)

		if bg {
			r.mu.Lock()
			r.bgRunning--
			r.mu.Unlock()
		}
	}
}

// next dequeues the job to run: demand first, in order; then, while
// background requests hold fewer than bgMax, read-ahead, then fill.
// r.mu is held.
func (r *RangeReader) next() *job {
	if j := r.dequeue(demand); j != nil {
		return j
	}
	if r.bgRunning >= r.opt.bgMax {
		return nil
	}
	if j := r.dequeue(readAhead); j != nil {
		return j
	}
	if j := r.dequeue(prefetch); j != nil {
		return j
	}
	return r.nextFill()
}

func (r *RangeReader) dequeue(p prio) *job {
	for i, j := range r.pending {
		if j.prio == p {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			return j
		}
	}
	return nil
}

// nextFill makes the fill's next job: the first chunks, in order, neither
// cached nor under way. r.mu is held.
func (r *RangeReader) nextFill() *job {
	if r.fillDone == nil || r.fillErr != nil || r.fatal != nil || r.fillPaused {
		return nil
	}
	for r.fillNext < r.nchunks && !r.wanted(r.fillNext) {
		r.fillNext++
	}
	if r.fillNext == r.nchunks {
		return nil
	}
	j := &job{first: r.fillNext, prio: fill}
	for c := r.fillNext; c < r.nchunks && int64(len(j.calls)) < r.opt.fillRequest && r.wanted(c); c++ {
		r.addCall(j, c)
	}
	r.fillNext += int64(len(j.calls))
	return j
}

// wanted says chunk c is neither cached nor under way. r.mu is held.
func (r *RangeReader) wanted(c int64) bool {
	return !r.cache.has(c) && r.inflight[c] == nil
}

// nStreams bounds the sequential streams tracked at once.
const nStreams = 16

// stream is one sequential reader, as seen from its offsets.
type stream struct {
	next   int64  // offset just past its last read
	ahead  int64  // first chunk not yet asked for ahead of it
	behind int64  // first chunk not yet dropped behind it
	reads  int    // reads that continued it
	used   uint64 // last use, on r.tick
}

// readAhead notes a read of [off, end) and, when it continues a stream,
// queues requests for the chunks ahead of it that are neither cached nor
// under way, a few chunks per request. r.mu is held.
func (r *RangeReader) readAhead(off, end int64) {
	if r.opt.ReadAhead == 0 {
		return
	}
	r.tick++
	var s *stream
	oldest := &r.streams[0]
	for i := range r.streams {
		t := &r.streams[i]
		// Within a chunk of where it was: the kernel may issue a
		// stream's reads slightly out of order.
		if t.used != 0 && off >= t.next-r.cs && off <= t.next+r.cs {
			s = t
			break
		}
		if t.used < oldest.used {
			oldest = t
		}
	}
	if s == nil {
		*oldest = stream{next: end, behind: off >> r.opt.chunkShift, used: r.tick}
		return
	}
	s.used = r.tick
	s.reads++
	s.next = max(s.next, end)
	if s.reads < 2 {
		// Three reads in a row make a stream: random reads that
		// happen to fall near one another do not.
		return
	}
	r.dropBehind(s, off)
	cur := (end - 1) >> r.opt.chunkShift
	from := max(s.ahead, cur+1)
	to := min(cur+int64(r.opt.ReadAhead), r.nchunks-1) // inclusive
	if from > to {
		return
	}
	// Wait until a whole request's worth is due: fewer, larger requests.
	if to-from+1 < min(r.opt.aheadRequest, r.nchunks-from) {
		return
	}
	var j *job
	for c := from; c <= to; c++ {
		if !r.wanted(c) {
			j = nil
			continue
		}
		if j == nil || int64(len(j.calls)) == r.opt.aheadRequest {
			j = &job{first: c, prio: readAhead}
			r.pending = append(r.pending, j)
		}
		r.addCall(j, c)
		r.stats.ahead.Add(1)
	}
	s.ahead = to + 1
	r.work.Broadcast()
}

// dropBehind evicts the chunks a stream has read past, but the one behind
// its read at off (the kernel may reorder a stream's reads a little). Its
// reader will not read them again (the page cache above holds what it
// read), and their buffers, recycled while still in the CPU's cache, are
// cheaper to fill than the least recently used chunk's. r.mu is held.
func (r *RangeReader) dropBehind(s *stream, off int64) {
	if r.fillDone != nil {
		return // the whole image stays
	}
	for until := off>>r.opt.chunkShift - 1; s.behind < until; s.behind++ {
		r.cache.remove(s.behind, r.bufs.release)
	}
}
