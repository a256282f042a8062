package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Lease6 is the address of one identity association (RFC 8415 section
// 12): an IA_NA of one client, named by the client's DUID and the IA's
// IAID. It is held for an Advertise, or bound by a Reply.
type Lease6 struct {
	DUID []byte
	IAID uint32
	IP   netip.Addr
	// Expires is when the address stops being the IA's. A record past it
	// is kept: the IA gets the same address back when it is still free.
	Expires time.Time
	// MAC is the client's hardware address when known: a machine's next
	// DUID takes its address over (see Server6).
	MAC net.HardwareAddr
}

// Leases6 keeps Server6's leases: one per (DUID, IAID), and one at most
// per address. The server backs it with its state store; MemLeases6 is
// an in-memory one. Server6 calls it with its own lock held, one call at
// a time per Server6.
type Leases6 interface {
	// Get returns the lease of the IA iaid of the client duid, and false
	// when it has none.
	Get(duid []byte, iaid uint32) (Lease6, bool, error)
	// Put stores l, replacing the lease of l.DUID and l.IAID, and any
	// other lease of l.IP (Server6 puts an address only when no other IA
	// holds it unexpired).
	Put(l Lease6) error
	// Delete removes the lease of (duid, iaid); removing none is no
	// error.
	Delete(duid []byte, iaid uint32) error
	// All returns every lease, expired ones included, in any order.
	All() ([]Lease6, error)
}

// MemLeases6 is Leases6 in memory, safe for concurrent use. Its zero
// value is empty and ready.
type MemLeases6 struct {
	mu sync.Mutex        // guards m
	m  map[iaKey6]Lease6 // by DUID and IAID
}

// iaKey6 names an identity association: the client's DUID (its bytes)
// and the IA's IAID.
type iaKey6 struct {
	duid string
	iaid uint32
}

func keyOf6(l Lease6) iaKey6 { return iaKey6{string(l.DUID), l.IAID} }

// Get implements Leases6.
func (s *MemLeases6) Get(duid []byte, iaid uint32) (Lease6, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[iaKey6{string(duid), iaid}]
	return cloneLease6(l), ok, nil
}

// Put implements Leases6.
func (s *MemLeases6) Put(l Lease6) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[iaKey6]Lease6{}
	}
	k := keyOf6(l)
	for other, o := range s.m {
		if o.IP == l.IP && other != k {
			delete(s.m, other)
		}
	}
	s.m[k] = cloneLease6(l)
	return nil
}

// Delete implements Leases6.
func (s *MemLeases6) Delete(duid []byte, iaid uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, iaKey6{string(duid), iaid})
	return nil
}

// All implements Leases6, sorted by address.
func (s *MemLeases6) All() ([]Lease6, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Lease6, 0, len(s.m))
	for _, l := range s.m {
		out = append(out, cloneLease6(l))
	}
	slices.SortFunc(out, func(a, b Lease6) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func cloneLease6(l Lease6) Lease6 {
	l.DUID = bytes.Clone(l.DUID)
	l.MAC = slices.Clone(l.MAC)
	return l
}

// leaseView6 is the leases as one message's handling sees them: All read
// once, then kept in step with the Puts and Deletes made through it.
// Server6.mu is held while it lives.
type leaseView6 struct {
	store  Leases6
	byKey  map[iaKey6]Lease6
	byAddr map[netip.Addr]iaKey6
}

func loadLeases6(store Leases6) (*leaseView6, error) {
	all, err := store.All()
	if err != nil {
		return nil, err
	}
	v := &leaseView6{store: store, byKey: make(map[iaKey6]Lease6, len(all)), byAddr: make(map[netip.Addr]iaKey6, len(all))}
	for _, l := range all {
		k := keyOf6(l)
		if prev, ok := v.byAddr[l.IP]; ok && prev != k {
			// A store holding an address twice (it should not): the
			// later-expiring record counts.
			if !l.Expires.After(v.byKey[prev].Expires) {
				continue
			}
			delete(v.byKey, prev)
		}
		v.byKey[k] = l
		v.byAddr[l.IP] = k
	}
	return v, nil
}

func (v *leaseView6) put(l Lease6) error {
	if err := v.store.Put(l); err != nil {
		return err
	}
	k := keyOf6(l)
	if old, ok := v.byKey[k]; ok && old.IP != l.IP {
		delete(v.byAddr, old.IP)
	}
	if other, ok := v.byAddr[l.IP]; ok && other != k {
		delete(v.byKey, other)
	}
	v.byKey[k] = l
	v.byAddr[l.IP] = k
	return nil
}

func (v *leaseView6) delete(k iaKey6) error {
	if err := v.store.Delete([]byte(k.duid), k.iaid); err != nil {
		return err
	}
	if old, ok := v.byKey[k]; ok {
		delete(v.byAddr, old.IP)
		delete(v.byKey, k)
	}
	return nil
}
