package dhcp

import (
	"time"
)

// Several servers on one store.
//
// Full servers on one link that share their Leases (the server's
// PostgreSQL store) each keep the table in memory, and learn what the
// others wrote only from the store. The store is the arbiter (see
// Leases.Write): a put on an address another MAC holds is refused, and
// so is a write that would move, shorten or delete a lease another
// server changed since this one last knew it (LeaseWrite.Prev). An
// answer leaves only once its write is in, so a stale memory never puts
// an address on the wire that another server gave: it costs that
// client this server's answer (the other server answers it, or the
// client asks again).
//
// A refused write is what tells a server that another writes beside it:
// it takes in the lease the store named (learn), and then reads all the
// leases again (refresh, outside the lock, at most once every
// refreshGap) and merges the live ones it did not know into its table,
// so that it does not try the other server's addresses one refusal at a
// time. Nothing is reloaded on a timer: a server alone on its store is
// never refused and never reads the table again.
const refreshGap = time.Second

// refreshSoon starts a refresh unless one runs or one ended less than
// refreshGap ago. Call with f.mu held.
func (f *Full) refreshSoon() {
	if f.refreshing || !f.refreshed.IsZero() && f.now().Sub(f.refreshed) < refreshGap {
		return
	}
	f.refreshing = true
	go f.refresh()
}

// refresh reads the leases from the store and merges them (merge).
func (f *Full) refresh() {
	all, err := f.leases.All()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshing, f.refreshed = false, f.now()
	f.stats.Refreshes.Add(1)
	if err != nil {
		f.log.Warn("dhcp cannot read the leases to learn another server's", "err", err)
		return
	}
	f.merge(all, f.now())
}

// merge takes into the table the live leases of all (the store's) that
// it lacks, unless memory knows better: a lease of the MAC, or on the
// address, that runs on in memory may be a decision whose write is
// still queued (the store will arbitrate it), and a MAC with an offer
// outstanding is this server's to decide. Call with f.mu held.
func (f *Full) merge(all []Lease, now time.Time) {
	n := 0
	for _, s := range all {
		if !s.Expires.After(now) || len(s.MAC) == 0 || !s.IP.IsValid() {
			continue
		}
		key := s.MAC.String()
		if _, ok := f.offers[key]; ok {
			continue
		}
		m, ok := f.table.get(key)
		if ok && m.IP == s.IP && !m.Expires.Before(s.Expires) {
			continue // known
		}
		if ok && m.IP != s.IP && m.Expires.After(now) {
			continue
		}
		if o, ok := f.table.onIP(s.IP); ok && o.MAC.String() != key && o.Expires.After(now) {
			continue
		}
		if _, reserved := f.byIP[s.IP]; reserved && f.byIP[s.IP] != key {
			continue
		}
		f.table.set(s)
		n++
	}
	if n > 0 {
		f.log.Info("dhcp learnt the leases another server gave", "leases", n)
	}
}
