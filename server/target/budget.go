package target

import "sync"

// targetWriteBudget bounds the write data that all the sessions of one
// Target hold at once: immediate and unsolicited data from a command's
// arrival, and its whole length once its R2Ts go out. A write that finds
// no room, with nothing of its own connection's to wait for, is answered
// TASK SET FULL, which initiators retry. A variable for the tests.
var targetWriteBudget = 256 << 20

// writeBudget is a Target's account of the write data its sessions hold.
// Target has no field for it (its file belongs to the login path), so the
// accounts live in writeBudgets, one per Target while it has a session in
// Full Feature Phase.
type writeBudget struct {
	t    *Target
	used int // bytes reserved; guarded by writeBudgets.mu
	refs int // sessions using it; guarded by writeBudgets.mu
}

var writeBudgets = struct {
	mu sync.Mutex // guards m and every writeBudget's fields
	m  map[*Target]*writeBudget
}{m: map[*Target]*writeBudget{}}

// acquireWriteBudget returns t's account; release it when the session
// ends.
func acquireWriteBudget(t *Target) *writeBudget {
	writeBudgets.mu.Lock()
	defer writeBudgets.mu.Unlock()
	b := writeBudgets.m[t]
	if b == nil {
		b = &writeBudget{t: t}
		writeBudgets.m[t] = b
	}
	b.refs++
	return b
}

// release ends a session's use of the account; the last one forgets it.
func (b *writeBudget) release() {
	writeBudgets.mu.Lock()
	defer writeBudgets.mu.Unlock()
	if b.refs--; b.refs == 0 {
		delete(writeBudgets.m, b.t)
	}
}

// reserve takes n bytes if they fit.
func (b *writeBudget) reserve(n int) bool {
	if n <= 0 {
		return true
	}
	writeBudgets.mu.Lock()
	defer writeBudgets.mu.Unlock()
	if b.used+n > targetWriteBudget {
		return false
	}
	b.used += n
	return true
}

// free returns n reserved bytes.
func (b *writeBudget) free(n int) {
	if n <= 0 {
		return
	}
	writeBudgets.mu.Lock()
	defer writeBudgets.mu.Unlock()
	b.used -= n
}
