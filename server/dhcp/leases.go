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

// Leases keeps Full's leases, one per MAC. The server backs it with its
// state store; MemLeases is an in-memory one. Full calls it with its own
// lock held, one call at a time per Full.
//
// An address a client declined (RFC 2131 section 4.3.3) is kept out of
// use by a Lease too, so a restart does not forget it: its MAC is 20
// bytes, "declined-address" and the IPv4 address, which no DHCPv4
// client can send (chaddr holds at most 16 bytes), and it expires when
// the address may be offered again. A store must keep MACs of 6, 8 and
// 20 bytes (net.ParseMAC reads back their String form); Full ignores
// clients with a hardware address of another length.
type Leases interface {
	// Get returns mac's lease, and false when it has none.
	Get(mac net.HardwareAddr) (Lease, bool, error)
	// Put stores l, replacing l.MAC's lease.
	Put(l Lease) error
	// Delete removes mac's lease; removing none is no error.
	Delete(mac net.HardwareAddr) error
	// All returns every lease, expired ones included, in any order.
	All() ([]Lease, error)
}

// MemLeases is Leases in memory, safe for concurrent use. Its zero value
// is empty and ready.
type MemLeases struct {
	mu sync.Mutex       // guards m
	m  map[string]Lease // by MAC.String()
}

// Get implements Leases.
func (s *MemLeases) Get(mac net.HardwareAddr) (Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[mac.String()]
	return cloneLease(l), ok, nil
}

// Put implements Leases.
func (s *MemLeases) Put(l Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Lease{}
	}
	s.m[l.MAC.String()] = cloneLease(l)
	return nil
}

// Delete implements Leases.
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
