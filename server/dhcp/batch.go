package dhcp

import (
	"context"
	"sync"
	"time"
)

// Lease writes, grouped.
//
// Full decides from its table in memory and queues the writes of each
// decision, in the order it decided, with what to do once they are in
// the store (send the answer). One writer takes everything queued (up to
// maxBatch writes) and commits it with one Leases.Write, one
// transaction and one sync of the store however many clients it holds,
// then lets each decision go on: an OFFER or ACK leaves only once the
// lease it depends on is stored, so a crash never forgets an address
// offered or given. While a batch commits, the next fills.
//
// A batch the store fails is written not at all: its answers are not
// sent (the clients ask again), and since the table in memory is then
// ahead of the store, Full reloads it from the store and fails the
// decisions queued meanwhile too, which were made from it.
const maxBatch = 1024

// pending is one decision's writes and what follows their commit: done
// gets the conflicts among them (Index into writes) or the store's
// error.
type pending struct {
	writes []LeaseWrite
	done   func(conflicts []LeaseConflict, err error)
}

// batcher queues decisions' writes and commits them in batches.
type batcher struct {
	store Leases
	now   func() time.Time
	// failed is called, with no batcher lock held, when a batch fails:
	// it reloads what the writes were decided from and returns the
	// decisions queued meanwhile (takeAll), which fail too.
	failed func() []*pending

	mu     sync.Mutex // guards queue
	queue  []*pending
	wake   chan struct{} // a token when queue is not empty
	commit sync.Mutex    // one commit at a time
}

func newBatcher(store Leases, now func() time.Time) *batcher {
	return &batcher{store: store, now: now, wake: make(chan struct{}, 1)}
}

// add queues p. Callers add in the order they decided.
func (b *batcher) add(p *pending) {
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take removes from the queue the decisions of the next batch: all,
// up to maxBatch writes (at least one decision).
func (b *batcher) take() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, writes := 0, 0
	for n < len(b.queue) && (n == 0 || writes+len(b.queue[n].writes) <= maxBatch) {
		writes += len(b.queue[n].writes)
		n++
	}
	ps := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	return ps
}

// takeAll empties the queue.
func (b *batcher) takeAll() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	ps := b.queue
	b.queue = nil
	return ps
}

// flush commits batches until the queue is empty.
func (b *batcher) flush() {
	b.commit.Lock()
	defer b.commit.Unlock()
	for {
		ps := b.take()
		if len(ps) == 0 {
			return
		}
		b.write(ps)
	}
}

// write commits ps as one batch and lets them go on.
func (b *batcher) write(ps []*pending) {
	var ws []LeaseWrite
	starts := make([]int, len(ps))
	for i, p := range ps {
		starts[i] = len(ws)
		ws = append(ws, p.writes...)
	}
	conflicts, err := b.store.Write(ws, b.now())
	if err != nil {
		more := b.failed()
		for _, p := range append(ps, more...) {
			p.done(nil, err)
		}
		return
	}
	per := make([][]LeaseConflict, len(ps))
	for _, c := range conflicts {
		// The decision whose writes hold index c.Index.
		i := len(ps) - 1
		for starts[i] > c.Index {
			i--
		}
		c.Index -= starts[i]
		per[i] = append(per[i], c)
	}
	for i, p := range ps {
		p.done(per[i], nil)
	}
}

// run commits what is queued until ctx ends, then what is left.
func (b *batcher) run(ctx context.Context) {
	for {
		select {
		case <-b.wake:
			b.flush()
		case <-ctx.Done():
			b.flush()
			return
		}
	}
}
