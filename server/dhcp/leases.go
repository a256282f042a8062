package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Lease is one client's address: held for an offer, or bound by an ACK.
type Lease struct {
	MAC net.HardwareAddr
	IP  netip.Addr
	// Expires is when the address stops being the client's. A record
	// past it is kept: the client gets the same address back when it is
	// still free (RFC 2131 section 4.3.1), and others get it only when the
	// pool has nothing never used.
	Expires  time.Time
	Hostname string // option 12, as the client sent it
}

// Leases keeps Full's leases, one per MAC and one per address. The
// server backs it with its state store; MemLeases is an in-memory one.
// Full reads All once, when it starts, and keeps the table in memory;
// from then on it writes its changes in batches (Write), one batch at a
// time, and sends the answers that depend on a batch only once Write has
// returned.
//
// An address a client declined (RFC 2131 section 4.3.3) is kept out of
// use by a Lease too, so a restart does not forget it: its MAC is 20
// bytes, "declined-address" and the IPv4 address, which no DHCPv4
// client can send (chaddr holds at most 16 bytes), and it expires when
// the address may be offered again. A store must keep MACs of 6, 8 and
// 20 bytes (net.ParseMAC reads back their String form); Full ignores
// clients with a hardware address of another length.
type Leases interface {
	// All returns every lease, expired ones included, in any order.
	All() ([]Lease, error)
	// Write applies ws in order, all of them or none (one transaction),
	// and returns the puts it refused: the store is the arbiter of an
	// address, which several servers sharing it may each want to give.
	// A put of l replaces l.MAC's lease, and removes the lease of another
	// MAC on l.IP that has expired by now; a put whose address another
	// MAC holds until after now is refused, not applied, and reported
	// with that lease (the rest of the batch is applied), and so is a
	// write whose Prev is not its MAC's lease (see LeaseWrite). An error
	// means nothing was written.
	Write(ws []LeaseWrite, now time.Time) ([]LeaseConflict, error)
}

// LeaseWrite is one change in a batch: put Lease, or, with Delete,
// remove Lease.MAC's lease (removing none is no error).
//
// Prev, when set, is what the writer last knew of Lease.MAC's lease
// (the zero Lease: none), and makes the write conditional: when the
// MAC's lease in the store is another (address and expiry, to the
// millisecond) that runs past now, another server sharing the store
// gave it, and it stands: a delete is refused, and so is a put on
// another address or one that would end it sooner; a put on the same
// address that ends later (a renewal) goes in. Full sets Prev on every
// write; without it a write is unconditional.
type LeaseWrite struct {
	Lease  Lease
	Delete bool
	Prev   *Lease
}

// LeaseConflict is a write Leases.Write refused: ws[Index]'s address is
// Owner's, another MAC's; or ws[Index].Prev was not its MAC's lease,
// Owner (the same MAC).
type LeaseConflict struct {
	Index int
	Owner Lease
}

// MemLeases is Leases in memory, safe for concurrent use. Its zero value
// is empty and ready.
type MemLeases struct {
	mu sync.Mutex       // guards m
	m  map[string]Lease // by MAC.String()
}

// Get returns mac's lease, and false when it has none.
func (s *MemLeases) Get(mac net.HardwareAddr) (Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[mac.String()]
	return cloneLease(l), ok, nil
}

// Put stores l, replacing l.MAC's lease, whatever else is on l.IP.
func (s *MemLeases) Put(l Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Lease{}
	}
	s.m[l.MAC.String()] = cloneLease(l)
	return nil
}

// Delete removes mac's lease; removing none is no error.
func (s *MemLeases) Delete(mac net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, mac.String())
	return nil
}

// All implements Leases, sorted by address.
func (s *MemLeases) All() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Lease, 0, len(s.m))
	for _, l := range s.m {
		out = append(out, cloneLease(l))
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Write implements Leases.
func (s *MemLeases) Write(ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Lease{}
	}
	var conflicts []LeaseConflict
	for i, w := range ws {
		key := w.Lease.MAC.String()
		if cur, ok := s.m[key]; ok && w.Prev != nil && changedElsewhere(w, cur, now) {
			conflicts = append(conflicts, LeaseConflict{Index: i, Owner: cloneLease(cur)})
			continue
		}
		if w.Delete {
			delete(s.m, key)
			continue
		}
		if owner, ok := applyPut(s.m, w.Lease, now); !ok {
			conflicts = append(conflicts, LeaseConflict{Index: i, Owner: cloneLease(owner)})
		}
	}
	return conflicts, nil
}

// changedElsewhere reports whether w, a write with Prev, is refused
// because its MAC's lease, cur, is not w.Prev, runs past now, and w would
// delete, move or shorten it (see LeaseWrite).
func changedElsewhere(w LeaseWrite, cur Lease, now time.Time) bool {
	same := w.Prev.IP == cur.IP && w.Prev.Expires.UnixMilli() == cur.Expires.UnixMilli()
	return !same && cur.Expires.After(now) &&
		(w.Delete || cur.IP != w.Lease.IP || w.Lease.Expires.UnixMilli() < cur.Expires.UnixMilli())
}

// applyPut is Write's put of l into m (by MAC.String()): it returns the
// live lease of another MAC on l.IP and false when it may not.
func applyPut(m map[string]Lease, l Lease, now time.Time) (Lease, bool) {
	key := l.MAC.String()
	var stale []string
	for k, o := range m {
		if k == key || o.IP != l.IP {
			continue
		}
		if o.Expires.After(now) {
			return o, false
		}
		stale = append(stale, k)
	}
	for _, k := range stale {
		delete(m, k)
	}
	m[key] = cloneLease(l)
	return Lease{}, true
}

func cloneLease(l Lease) Lease {
	l.MAC = slices.Clone(l.MAC)
	return l
}

// declinedPrefix starts the MAC of a declined address's record.
const declinedPrefix = "declined-address"

// declinedMAC is the MAC of the record that keeps the declined ip out of
// use: 20 bytes, longer than any chaddr.
func declinedMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return append([]byte(declinedPrefix), a[:]...)
}

// isDeclinedMAC reports whether mac is a declinedMAC.
func isDeclinedMAC(mac net.HardwareAddr) bool {
	return len(mac) == len(declinedPrefix)+4 && string(mac[:len(declinedPrefix)]) == declinedPrefix
}
