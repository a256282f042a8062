package dhcp

import (
	"net"
	"sync"
	"time"
)

// packet is a datagram read, and when.
type packet struct {
	b    []byte
	peer *net.UDPAddr
	at   time.Time
}

// Why a packetQueue dropped a packet.
const (
	dropFull  = "queue full"
	dropStale = "waited too long"
)

// packetQueue is a bounded FIFO of packets between the socket's reader
// and the handlers: push drops the oldest packet when it is full, pop
// drops those older than maxAge. Safe for concurrent use; its clock is
// the caller's.
type packetQueue struct {
	maxAge time.Duration

	mu     sync.Mutex
	cond   sync.Cond
	ring   []packet
	head   int // index of the oldest
	n      int
	closed bool
}

func newPacketQueue(size int, maxAge time.Duration) *packetQueue {
	q := &packetQueue{maxAge: maxAge, ring: make([]packet, size)}
	q.cond.L = &q.mu
	return q
}

// push adds p, dropping the oldest packet (dropped is called with it)
// when the queue is full.
func (q *packetQueue) push(p packet, dropped func(packet, string)) {
	q.mu.Lock()
	var old packet
	full := q.n == len(q.ring)
	if full {
		old = q.ring[q.head]
		q.ring[q.head] = packet{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	q.ring[(q.head+q.n)%len(q.ring)] = p
	q.n++
	q.mu.Unlock()
	q.cond.Signal()
	if full {
		dropped(old, dropFull)
	}
}

// pop returns the oldest packet not older than maxAge at now(), waiting
// for one; it calls dropped with those it drops for their age. It
// returns false once the queue is closed.
func (q *packetQueue) pop(now func() time.Time, dropped func(packet, string)) (packet, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for q.n == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			return packet{}, false
		}
		p := q.ring[q.head]
		q.ring[q.head] = packet{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		if now().Sub(p.at) <= q.maxAge {
			return p, true
		}
		q.mu.Unlock()
		dropped(p, dropStale)
		q.mu.Lock()
	}
}

// close wakes the poppers and ends them; packets left are not handled.
func (q *packetQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
