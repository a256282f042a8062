package fetch

import (
	"sync"
	"sync/atomic"
)

// buffer is a chunk's bytes, shared by the cache and the readers copying
// from it, and recycled when the last of them lets go. Reading a body into
// a recycled buffer costs a third of reading it into fresh memory, whose
// every page the kernel must fault in and zero.
//
// A reference not released (a reader that gave up waiting) only keeps the
// buffer from being recycled: the garbage collector frees it.
type buffer struct {
	b    []byte
	refs atomic.Int32
}

// buffers holds full-chunk buffers no one refers to.
type buffers struct {
	size int
	pool sync.Pool
}

// get returns a buffer of n bytes (n <= size) with one reference. Its
// contents are arbitrary: callers overwrite all of it.
func (p *buffers) get(n int64) *buffer {
	var b *buffer
	if v := p.pool.Get(); v != nil && n == int64(p.size) {
		b = v.(*buffer)
	} else {
		if v != nil {
			p.pool.Put(v)
		}
		b = &buffer{b: make([]byte, n)}
	}
	b.refs.Store(1)
	return b
}

// release drops a reference; the last one recycles the buffer.
func (p *buffers) release(b *buffer) {
	switch n := b.refs.Add(-1); {
	case n == 0 && len(b.b) == p.size:
		p.pool.Put(b)
	case n < 0:
		panic("fetch: a RangeReader buffer released too often")
	}
}

// lru holds chunks in RAM, least recently used first out. It is not safe
// for concurrent use: RangeReader.mu guards it.
type lru struct {
	m     map[int64]*entry
	head  entry // sentinel: head.next is the most recently used
	bytes int64 // sum of the chunks' lengths
}

type entry struct {
	chunk      int64
	buf        *buffer // the cache holds one reference
	prev, next *entry
}

func newLRU() *lru {
	l := &lru{m: make(map[int64]*entry)}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

// get returns a chunk's buffer and marks it used, or nil. The caller takes
// its own reference before letting go of RangeReader.mu.
func (l *lru) get(chunk int64) *buffer {
	e := l.m[chunk]
	if e == nil {
		return nil
	}
	l.unlink(e)
	l.pushFront(e)
	return e.buf
}

func (l *lru) has(chunk int64) bool { return l.m[chunk] != nil }

// add stores a chunk, not already held, as the most recently used, taking
// a reference.
func (l *lru) add(chunk int64, b *buffer) {
	b.refs.Add(1)
	e := &entry{chunk: chunk, buf: b}
	l.m[chunk] = e
	l.pushFront(e)
	l.bytes += int64(len(b.b))
}

// trim evicts the least recently used chunks until at most limit bytes
// are held, handing the cache's references to release.
func (l *lru) trim(limit int64, release func(*buffer)) {
	for l.bytes > limit && l.head.prev != &l.head {
		e := l.head.prev
		l.unlink(e)
		delete(l.m, e.chunk)
		l.bytes -= int64(len(e.buf.b))
		release(e.buf)
	}
}

// remove evicts a chunk if held, handing the cache's reference to release.
func (l *lru) remove(chunk int64, release func(*buffer)) {
	e := l.m[chunk]
	if e == nil {
		return
	}
	l.unlink(e)
	delete(l.m, chunk)
	l.bytes -= int64(len(e.buf.b))
	release(e.buf)
}

func (l *lru) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (l *lru) pushFront(e *entry) {
	e.prev, e.next = &l.head, l.head.next
	l.head.next.prev = e
	l.head.next = e
}
