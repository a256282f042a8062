package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/overboot/overboot/server/state"
)

// StateLeases keeps Full's leases in the server's state store (SQLite
// or PostgreSQL), which several servers may share: its WriteLeases is
// the arbiter Leases.Write describes.
func StateLeases(db *state.DB) Leases { return leaseStore{db} }

// leaseStore keeps the DHCP server's leases in the state store.
type leaseStore struct{ db *state.DB }

func toLease(sl state.Lease) (Lease, error) {
	mac, err := net.ParseMAC(sl.MAC)
	if err != nil {
		return Lease{}, fmt.Errorf("lease of %q: %w", sl.MAC, err)
	}
	ip, err := netip.ParseAddr(sl.IP)
	if err != nil {
		return Lease{}, fmt.Errorf("lease of %s: %w", sl.MAC, err)
	}
	return Lease{MAC: mac, IP: ip, Expires: sl.Expires, Hostname: sl.Hostname}, nil
}

func (l leaseStore) Write(ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	sws := make([]state.LeaseWrite, len(ws))
	for i, w := range ws {
		sws[i] = state.LeaseWrite{Delete: w.Delete, Lease: state.Lease{MAC: w.Lease.MAC.String()}}
		if !w.Delete {
			sws[i].Lease = state.Lease{MAC: w.Lease.MAC.String(), IP: w.Lease.IP.String(), Expires: w.Lease.Expires, Hostname: w.Lease.Hostname}
		}
		if p := w.Prev; p != nil {
			// The zero Lease (none) has no address: "" in the store's terms.
			sws[i].Prev = &state.Lease{MAC: w.Lease.MAC.String(), Expires: p.Expires}
			if p.IP.IsValid() {
				sws[i].Prev.IP = p.IP.String()
			}
		}
	}
	scs, err := l.db.WriteLeases(context.Background(), sws, now)
	if err != nil {
		return nil, err
	}
	cs := make([]LeaseConflict, 0, len(scs))
	for _, sc := range scs {
		owner, err := toLease(sc.Owner)
		if err != nil {
			// The batch is in; the owner is only unknown to memory.
			owner = Lease{}
		}
		cs = append(cs, LeaseConflict{Index: sc.Index, Owner: owner})
	}
	return cs, nil
}

func (l leaseStore) All() ([]Lease, error) {
	sls, err := l.db.Leases(context.Background())
	if err != nil {
		return nil, err
	}
	out := make([]Lease, 0, len(sls))
	for _, sl := range sls {
		d, err := toLease(sl)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
