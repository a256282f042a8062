package dhcp

import (
	"container/heap"
	"net/netip"
	"time"
)

// table is Full's leases in memory, loaded from Leases at start and kept
// in step with what Full writes there: at most one lease per MAC and per
// address, looked up by either, and what allocation needs to pick an
// address without looking at every lease:
//
//   - a cursor over the pool: no address at or after it has ever had a
//     lease since the table was loaded (unless it has one now), and the
//     pool addresses before it whose lease went are in freed, lowest
//     first: together, the lowest address never used;
//   - the leases by expiry (aged, a heap whose stale entries are skipped
//     when met): the address whose lease expired longest ago;
//   - the declined addresses' marks, few, to forget when they end.
//
// It is pure and not safe for concurrent use: Full guards it with its
// lock.
type table struct {
	lo, hi uint32                // the pool, both included
	skip   func(netip.Addr) bool // pool addresses the cursor never hands out
	byMAC  map[string]Lease      // by MAC.String()
	byIP   map[netip.Addr]string // the MAC.String() of the lease on an address
	next   uint64                // the cursor (hi+1: past the pool)
	freed  addrHeap
	aged   ageHeap
	marks  []Lease // declined addresses' leases, maybe stale
}

func newTable(start, end netip.Addr, skip func(netip.Addr) bool, all []Lease) *table {
	t := &table{lo: u32(start), hi: u32(end), skip: skip, byMAC: map[string]Lease{}, byIP: map[netip.Addr]string{}, next: uint64(u32(start))}
	for _, l := range all {
		t.set(l)
	}
	return t
}

// get returns mac's lease.
func (t *table) get(key string) (Lease, bool) {
	l, ok := t.byMAC[key]
	return l, ok
}

// onIP returns the lease on ip.
func (t *table) onIP(ip netip.Addr) (Lease, bool) {
	key, ok := t.byIP[ip]
	if !ok {
		return Lease{}, false
	}
	return t.byMAC[key], true
}

// set makes l its MAC's lease, in place of that MAC's previous one and
// of any other MAC's lease on l.IP (the caller knows it may go).
func (t *table) set(l Lease) {
	l = cloneLease(l)
	key := l.MAC.String()
	if old, ok := t.byMAC[key]; ok && old.IP != l.IP {
		t.dropIP(old.IP, key)
	}
	if other, ok := t.byIP[l.IP]; ok && other != key {
		delete(t.byMAC, other)
	}
	t.byMAC[key] = l
	t.byIP[l.IP] = key
	heap.Push(&t.aged, aged{exp: l.Expires, key: key, ip: l.IP})
	if isDeclinedMAC(l.MAC) {
		t.marks = append(t.marks, l)
	}
	if len(t.aged) > 2*len(t.byMAC)+64 {
		t.compact()
	}
}

// remove forgets mac's lease; its address is as good as never used.
func (t *table) remove(key string) {
	if l, ok := t.byMAC[key]; ok {
		delete(t.byMAC, key)
		t.dropIP(l.IP, key)
	}
}

func (t *table) dropIP(ip netip.Addr, key string) {
	if t.byIP[ip] != key {
		return
	}
	delete(t.byIP, ip)
	if v := u32(ip); ip.Is4() && v >= t.lo && v <= t.hi && uint64(v) < t.next {
		heap.Push(&t.freed, v)
	}
}

// compact rebuilds aged from the leases, leaving out the stale entries.
func (t *table) compact() {
	t.aged = t.aged[:0]
	for key, l := range t.byMAC {
		t.aged = append(t.aged, aged{exp: l.Expires, key: key, ip: l.IP})
	}
	heap.Init(&t.aged)
}

// unused returns the lowest pool address never used (no lease, not
// skipped), taking it when take is set: the caller then gives it a lease.
func (t *table) unused(take bool) (netip.Addr, bool) {
	for len(t.freed) > 0 {
		ip := fromU32(t.freed[0])
		if _, used := t.byIP[ip]; !used && !t.skip(ip) {
			break
		}
		heap.Pop(&t.freed)
	}
	for t.next <= uint64(t.hi) {
		ip := fromU32(uint32(t.next))
		if _, used := t.byIP[ip]; !used && !t.skip(ip) {
			break
		}
		t.next++
	}
	switch {
	case len(t.freed) > 0:
		ip := fromU32(t.freed[0])
		if take {
			heap.Pop(&t.freed)
		}
		return ip, true
	case t.next <= uint64(t.hi):
		ip := fromU32(uint32(t.next))
		if take {
			t.next++
		}
		return ip, true
	}
	return netip.Addr{}, false
}

// oldest returns the lease that expired longest ago by now and whose
// address usable allows, dropping from aged what it passes over (stale
// entries, unusable addresses: an address is unusable for every client
// that gets here, reservations aside). Declined addresses' leases are
// passed over: endMarks forgets those that end.
func (t *table) oldest(now time.Time, usable func(netip.Addr) bool) (Lease, bool) {
	for len(t.aged) > 0 {
		a := t.aged[0]
		if a.exp.After(now) {
			return Lease{}, false
		}
		l, ok := t.byMAC[a.key]
		if ok && l.IP == a.ip && l.Expires.Equal(a.exp) && !isDeclinedMAC(l.MAC) && usable(l.IP) {
			return l, true
		}
		heap.Pop(&t.aged)
	}
	return Lease{}, false
}

// endMarks removes the declined addresses' leases that have ended by now
// and returns them.
func (t *table) endMarks(now time.Time) []Lease {
	var ended []Lease
	keep := t.marks[:0]
	for _, m := range t.marks {
		key := m.MAC.String()
		cur, ok := t.byMAC[key]
		switch {
		case !ok || cur.IP != m.IP || !cur.Expires.Equal(m.Expires):
			// stale: a newer mark is in the list, or none
		case m.Expires.After(now):
			keep = append(keep, m)
		default:
			t.remove(key)
			ended = append(ended, m)
		}
	}
	clear(t.marks[len(keep):])
	t.marks = keep
	return ended
}

// addrHeap is pool addresses, lowest first.
type addrHeap []uint32

func (h addrHeap) Len() int           { return len(h) }
func (h addrHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h addrHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *addrHeap) Push(x any)        { *h = append(*h, x.(uint32)) }
func (h *addrHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// aged is a lease's expiry as it was when set.
type aged struct {
	exp time.Time
	key string
	ip  netip.Addr
}

// ageHeap is leases by expiry, earliest first.
type ageHeap []aged

func (h ageHeap) Len() int { return len(h) }
func (h ageHeap) Less(i, j int) bool {
	if c := h[i].exp.Compare(h[j].exp); c != 0 {
		return c < 0
	}
	return h[i].ip.Less(h[j].ip)
}
func (h ageHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *ageHeap) Push(x any)   { *h = append(*h, x.(aged)) }
func (h *ageHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
