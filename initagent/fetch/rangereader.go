package fetch

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// RangeOptions tune OpenRange. Zero values are the documented defaults;
// OpenRange does not write them back.
type RangeOptions struct {
	// ChunkSize is the unit of requests and of the cache, a power of two
	// (0: 256 KiB).
	ChunkSize int
	// Parallel bounds the requests in flight (0: 4). Read-ahead and Fill
	// use at most Parallel-1 of them, so a demand read always finds one.
	Parallel int
	// ReadAhead is how many chunks a sequential stream is fetched ahead of
	// its reader (0: 8; negative: none). Streams are detected separately:
	// two interleaved sequential readers both get it.
	ReadAhead int
	// CacheBytes bounds the chunks held in RAM, least recently used out
	// first (0: 64 MiB); chunks a sequential stream has passed go at once.
	// Requests in flight hold up to Parallel requests' worth more. Fill
	// ignores it: the whole image stays in RAM.
	CacheBytes int64
	// Fill completes the whole image into RAM in the background, in order,
	// behind demand reads; then no request goes to the server again.
	Fill bool
	// ExpectSize, when positive, is the size the image must have
	// (ErrSizeMismatch).
	ExpectSize int64
	// Patience is how long a read waits for a failing server (refused,
	// reset, 5xx, stalled) before it fails with ErrUnavailable (0: forever):
	// Policy.Patience, with no bound on the attempts.
	Patience time.Duration
	// Stall abandons and retries a request when no byte arrives for this
	// long (0: 15s): Policy.Stall.
	Stall time.Duration
	// Mirrors are other URLs of the same image, tried in order when the
	// first fails (WithMirrors): a read moves to the next source at once
	// when one fails, and within SourceStall (or half of Stall, if
	// shorter) when one stalls; a source of another size is refused.
	Mirrors []string
	// SlowBytes and SlowWindow abandon and retry a request whose body
	// brings fewer than SlowBytes in a SlowWindow: Policy.SlowBytes and
	// Policy.SlowWindow, with their defaults.
	SlowBytes  int64
	SlowWindow time.Duration
	// MaxMalformed fails a read with ErrProtocol after this many
	// malformed answers without progress: Policy.MaxMalformed, with its
	// default. A 200 at OpenRange counts as one (ErrNoRange), one later
	// does not: a cache in between answers a miss so.
	MaxMalformed int
	// LogEvery is how often a failure that lasts is logged again, with
	// its latest error (0: 30s).
	LogEvery time.Duration
	// Logf receives messages for the console: the server going away and
	// coming back, the fill completing. They never hold the URL's query or
	// user information (nil: discard).
	Logf func(format string, args ...any)
}

// DefaultCacheBytes is RangeOptions.CacheBytes when it is 0.
const DefaultCacheBytes = 64 << 20

const (
	defaultChunkSize = 256 << 10
	defaultParallel  = 4
	defaultReadAhead = 8
	rangeStall       = 15 * time.Second
	rangeLogEvery    = 30 * time.Second
	// The reader's backoff: 75ms doubling up to 3.75s, spread by Jitter.
	// Its waits average what they did when it had its own loop (between
	// half and all of 100ms doubling up to 5s), and are never longer.
	rangeBackoff    = 75 * time.Millisecond
	rangeMaxBackoff = 3750 * time.Millisecond
	// fillPause is how long the fill waits before its next request once a
	// read has run out of Patience.
	fillPause = 5 * time.Second
	// fillRequestBytes is the span of one Fill request: large, as nobody
	// waits for it and fewer requests cost less.
	fillRequestBytes = 4 << 20
	// readBufferSize is the client's socket read buffer. Bodies are read
	// straight into chunk buffers, which bypasses it when empty; it serves
	// the headers and the first bytes behind them.
	readBufferSize = 64 << 10
)

// rangeConfig is RangeOptions with the defaults applied.
type rangeConfig struct {
	RangeOptions
	chunkShift   uint
	bgMax        int   // requests read-ahead and fill may hold
	aheadRequest int64 // chunks per read-ahead request
	fillRequest  int64 // chunks per fill request
}

func (o RangeOptions) config() (rangeConfig, error) {
	c := rangeConfig{RangeOptions: o}
	if c.ChunkSize == 0 {
		c.ChunkSize = defaultChunkSize
	}
	if c.ChunkSize < 0 || c.ChunkSize&(c.ChunkSize-1) != 0 {
		return rangeConfig{}, fmt.Errorf("chunk size %d is not a power of two", o.ChunkSize)
	}
	c.chunkShift = uint(bits.TrailingZeros(uint(c.ChunkSize)))
	if c.Parallel <= 0 {
		c.Parallel = defaultParallel
	}
	c.bgMax = max(1, c.Parallel-1)
	switch {
	case c.ReadAhead == 0:
		c.ReadAhead = defaultReadAhead
	case c.ReadAhead < 0:
		c.ReadAhead = 0
	}
	c.aheadRequest = int64(max(1, c.ReadAhead/2))
	c.fillRequest = max(1, fillRequestBytes/int64(c.ChunkSize))
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if !c.Fill && c.CacheBytes < int64(c.ReadAhead+1)*int64(c.ChunkSize) {
		return rangeConfig{}, fmt.Errorf("cache of %d bytes is smaller than a read-ahead window (%d chunks of %d bytes)", o.CacheBytes, c.ReadAhead+1, c.ChunkSize)
	}
	if c.Patience < 0 {
		return rangeConfig{}, fmt.Errorf("negative patience %v", o.Patience)
	}
	if c.Stall <= 0 {
		c.Stall = rangeStall
	}
	if c.LogEvery <= 0 {
		c.LogEvery = rangeLogEvery
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c, nil
}

// RangeReader reads a remote image as an io.ReaderAt. Its methods are
// safe for concurrent use.
type RangeReader struct {
	client    *http.Client
	ownClient bool
	url       string
	where     string // url as RedactImageURL shows it, for messages
	opt       rangeConfig
	policy    Policy // every request's, sharing one outage
	cs        int64  // chunk size

	// Learned by OpenRange, then fixed.
	size         int64
	nchunks      int64
	etag         string // "" when the server sent none
	ifMatch      bool   // etag is strong: sent as If-Match
	lastModified string // "" when the server sent none
	ifUnmodified bool   // no strong etag: lastModified is sent as If-Unmodified-Since

	ctx    context.Context // ends on Close or when OpenRange's context ends
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // workers

	bufs buffers

	mu         sync.Mutex // guards the fields below it
	work       *sync.Cond // signalled when pending grows, or on close
	cache      *lru
	inflight   map[int64]*call // chunk -> the request bringing it
	pending    []*job          // not yet started, in arrival order
	bgRunning  int             // read-ahead and fill requests running
	streams    [nStreams]stream
	tick       uint64 // streams' clock
	fillNext   int64  // first chunk the fill has not asked for
	fillPaused bool   // after a failure past Patience
	fillStart  time.Time
	fillErr    error
	fillDone   chan struct{} // nil without Fill
	fatal      error         // a permanent error: no request can succeed

	stats struct {
		fetched, requests, hits, joins, misses, ahead, retries atomic.Int64
		prefetched, prefetchDropped                            atomic.Int64
	}
}

// OpenRange learns the image's size and ETag with a first request, which
// also caches its first chunk, and starts the RangeReader. ctx bounds the
// RangeReader's whole life, not only OpenRange: when it ends every read
// fails, as after Close. A nil client gets NewHTTPClient's, with Stall as
// its dial timeout and keep-alive for Parallel connections; a client of
// the caller's should keep at least Parallel idle connections per host.
// OpenRange retries a failing server like a read does, for Patience.
func OpenRange(ctx context.Context, client *http.Client, url string, opts RangeOptions) (*RangeReader, error) {
	where := RedactImageURL(url)
	opt, err := opts.config()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	r := &RangeReader{client: client, url: url, where: where, opt: opt, cs: int64(opt.ChunkSize), cache: newLRU(), inflight: make(map[int64]*call)}
	r.policy = r.newPolicy()
	r.bufs.size = opt.ChunkSize
	r.work = sync.NewCond(&r.mu)
	if r.client == nil {
		r.client, r.ownClient = newRangeClient(opt), true
	} else if idle := idlePerHost(client); idle < opt.Parallel {
		opt.Logf("image %s: the HTTP client keeps %d idle connections per host, fewer than %d parallel requests: connections will be reopened", where, idle, opt.Parallel)
	}
	if len(opt.Mirrors) > 0 {
		r.where = fmt.Sprintf("%s (+%d mirrors)", where, len(opt.Mirrors))
		if r.client, err = WithMirrors(r.client, append([]string{url}, opt.Mirrors...), FailoverOptions{ExpectSize: opt.ExpectSize, Stall: min(SourceStall, opt.Stall/2), Logf: opt.Logf}); err != nil {
			return nil, fmt.Errorf("open %s: %w", where, err)
		}
	}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	chunk0, err := r.open()
	if err != nil {
		r.cancel(err)
		r.closeIdle()
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	r.nchunks = (r.size + r.cs - 1) >> opt.chunkShift
	if opt.Fill {
		r.fillDone = make(chan struct{})
		r.fillStart = time.Now()
	}
	if chunk0 != nil {
		r.mu.Lock()
		r.store(0, chunk0)
		r.mu.Unlock()
		r.bufs.release(chunk0)
	}
	context.AfterFunc(r.ctx, func() {
		r.mu.Lock()
		r.work.Broadcast()
		r.mu.Unlock()
	})
	for range opt.Parallel {
		r.wg.Add(1)
		go r.worker()
	}
	return r, nil
}

// newRangeClient is NewHTTPClient's client for a RangeReader of its own:
// Stall bounds the dial and the TLS handshake, and no
// ResponseHeaderTimeout is needed, as each attempt's stall timer covers the
// wait for the headers as well as the body.
func newRangeClient(opt rangeConfig) *http.Client {
	c := NewHTTPClient()
	t := c.Transport.(*http.Transport)
	t.DialContext = (&net.Dialer{Timeout: opt.Stall, KeepAlive: KeepAlive}).DialContext
	t.TLSHandshakeTimeout = opt.Stall
	t.ResponseHeaderTimeout = 0
	t.MaxIdleConnsPerHost = opt.Parallel + 1
	t.ReadBufferSize = readBufferSize
	return c
}

// idlePerHost is how many idle connections per host client keeps, or a
// large number when unknown.
func idlePerHost(client *http.Client) int {
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	switch {
	case !ok:
		return 1 << 30
	case t.DisableKeepAlives || t.MaxIdleConnsPerHost < 0:
		return 0
	case t.MaxIdleConnsPerHost == 0:
		return http.DefaultMaxIdleConnsPerHost
	}
	return t.MaxIdleConnsPerHost
}

// Size is the image's size in bytes.
func (r *RangeReader) Size() int64 { return r.size }

// ETag is the image's ETag as OpenRange saw it ("" if the server sends none).
func (r *RangeReader) ETag() string { return r.etag }

// ReadAt reads len(p) bytes at off (io.ReaderAt). It waits for a failing
// server for RangeOptions.Patience, until Close, or until OpenRange's
// context ends. It returns io.EOF with the bytes before the end of the
// image.
func (r *RangeReader) ReadAt(p []byte, off int64) (int, error) {
	return r.ReadAtContext(r.ctx, p, off)
}

// ReadAtContext is ReadAt that also gives up when ctx ends. A request
// under way for another reader continues.
func (r *RangeReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", r.where, off)
	}
	if off >= r.size {
		if off == r.size && len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), r.size)
	first, last := off>>r.opt.chunkShift, (end-1)>>r.opt.chunkShift
	var partsBuf [8]part
	parts := r.lookup(partsBuf[:0], first, last, off, end)
	if parts == nil {
		return 0, fmt.Errorf("read %s at %d: %w", r.where, off, context.Cause(r.ctx))
	}
	n := 0
	for i, pt := range parts {
		buf := pt.buf
		if pt.call != nil {
			var err error
			select {
			case <-pt.call.done:
				buf, err = pt.call.buf, pt.call.err
			case <-ctx.Done():
				err = context.Cause(ctx)
			case <-r.ctx.Done():
				err = context.Cause(r.ctx)
			}
			if err != nil {
				r.releaseParts(parts[i+1:])
				return n, fmt.Errorf("read %s at %d: %w", r.where, off+int64(n), err)
			}
		}
		start := int64(0)
		if i == 0 {
			start = off - first*r.cs
		}
		n += copy(p[n:], buf.b[start:])
		r.bufs.release(buf)
	}
	if end < off+int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// part is one chunk of a read: its buffer, with a reference for the
// reader, or the request bringing it, which counts the reader a waiter.
type part struct {
	buf  *buffer
	call *call
}

// releaseParts lets go of the chunks a failed read will not copy. A call
// not yet done keeps the reader's reference: the collector frees it.
func (r *RangeReader) releaseParts(parts []part) {
	for _, pt := range parts {
		if pt.call != nil {
			select {
			case <-pt.call.done:
				pt.buf = pt.call.buf
			default:
			}
		}
		if pt.buf != nil {
			r.bufs.release(pt.buf)
		}
	}
}

// lookup finds chunks first..last in the cache, joins the requests under
// way for others, queues one for the rest, and notes the read for
// read-ahead. It returns nil when the RangeReader is closed.
func (r *RangeReader) lookup(parts []part, first, last, off, end int64) []part {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil
	}
	var miss *job
	for c := first; c <= last; c++ {
		if buf := r.cache.get(c); buf != nil {
			r.stats.hits.Add(1)
			buf.refs.Add(1)
			parts = append(parts, part{buf: buf})
			continue
		}
		cl := r.inflight[c]
		switch {
		case cl != nil:
			r.stats.joins.Add(1)
			if !cl.job.started && cl.job.prio != demand {
				cl.job.prio = demand
				r.work.Signal()
			}
		default:
			r.stats.misses.Add(1)
			if miss == nil || miss.first+int64(len(miss.calls)) != c {
				miss = &job{first: c, prio: demand}
				r.pending = append(r.pending, miss)
				r.work.Signal()
			}
			cl = r.addCall(miss, c)
		}
		cl.waiters++
		parts = append(parts, part{call: cl})
	}
	r.readAhead(off, end)
	return parts
}

// Close ends every wait with ErrClosed and stops the requests under way.
func (r *RangeReader) Close() error {
	r.cancel(ErrClosed)
	r.wg.Wait()
	r.closeIdle()
	return nil
}

func (r *RangeReader) closeIdle() {
	if r.ownClient {
		r.client.CloseIdleConnections()
	}
}

// FillDone is closed when the fill ends: the whole image is in RAM
// (FillErr is nil) or it can never be (FillErr says why). It is nil
// without RangeOptions.Fill.
func (r *RangeReader) FillDone() <-chan struct{} { return r.fillDone }

// FillErr is why the fill stopped, nil while it runs or once complete.
func (r *RangeReader) FillErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fillErr
}

// RangeStats counts a RangeReader's work since OpenRange.
type RangeStats struct {
	Size      int64 // bytes in the image
	Resident  int64 // bytes in RAM (the fill's progress)
	Fetched   int64 // body bytes received
	Requests  int64 // HTTP requests sent, OpenRange's included
	Hits      int64 // chunks read from RAM
	Joins     int64 // chunks read after waiting for a request already under way
	Misses    int64 // chunks read after starting a request
	ReadAhead int64 // chunks requested ahead of a sequential reader
	Retries   int64 // failed attempts, retried
	// Prefetched counts the chunks Prefetch asked for; PrefetchDropped
	// those of them that came when the cache had no room (and nobody
	// waited for them).
	Prefetched, PrefetchDropped int64
}

// Stats returns the counters.
func (r *RangeReader) Stats() RangeStats {
	r.mu.Lock()
	resident := r.cache.bytes
	r.mu.Unlock()
	return RangeStats{
		Size:      r.size,
		Resident:  resident,
		Fetched:   r.stats.fetched.Load(),
		Requests:  r.stats.requests.Load(),
		Hits:      r.stats.hits.Load(),
		Joins:     r.stats.joins.Load(),
		Misses:    r.stats.misses.Load(),
		ReadAhead: r.stats.ahead.Load(),
		Retries:   r.stats.retries.Load(),

		Prefetched:      r.stats.prefetched.Load(),
		PrefetchDropped: r.stats.prefetchDropped.Load(),
	}
}

func (s RangeStats) String() string {
	return fmt.Sprintf("%s fetched in %d requests (%d retries); chunks: %d hits, %d joined, %d missed, %d read ahead, %d prefetched (%d dropped); %s of %s in RAM",
		mib(s.Fetched), s.Requests, s.Retries, s.Hits, s.Joins, s.Misses, s.ReadAhead, s.Prefetched, s.PrefetchDropped, mib(s.Resident), mib(s.Size))
}
