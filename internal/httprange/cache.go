package httprange

// lru holds chunks in RAM, least recently used first out. It is not safe
// for concurrent use: Reader.mu guards it.
type lru struct {
	m     map[int64]*entry
	head  entry // sentinel: head.next is the most recently used
	bytes int64 // sum of len(data)
}

type entry struct {
	chunk      int64
	data       []byte
	prev, next *entry
}

func newLRU() *lru {
	l := &lru{m: make(map[int64]*entry)}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

// get returns a chunk's bytes and marks it used, or nil.
func (l *lru) get(chunk int64) []byte {
	e := l.m[chunk]
	if e == nil {
		return nil
	}
	l.unlink(e)
	l.pushFront(e)
	return e.data
}

func (l *lru) has(chunk int64) bool { return l.m[chunk] != nil }

// add stores a chunk as the most recently used. Readers may still hold
// data after it is evicted: chunks are never written after add.
func (l *lru) add(chunk int64, data []byte) {
	if e := l.m[chunk]; e != nil {
		l.unlink(e)
		l.bytes -= int64(len(e.data))
	}
	e := &entry{chunk: chunk, data: data}
	l.m[chunk] = e
	l.pushFront(e)
	l.bytes += int64(len(data))
}

// trim evicts the least recently used chunks until at most limit bytes
// are held.
func (l *lru) trim(limit int64) {
	for l.bytes > limit && l.head.prev != &l.head {
		e := l.head.prev
		l.unlink(e)
		delete(l.m, e.chunk)
		l.bytes -= int64(len(e.data))
	}
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
