package dhcp

import (
	"fmt"
	"time"
)

// offer is an address Full holds for a client's DHCPREQUEST (RFC 2131
// section 4.3.1), the client having no live lease on it: the record
// written for the hold, and the client's record from before.
type offer struct {
	hold    Lease
	prev    Lease // the client's record before the offer, if hadPrev
	hadPrev bool
}

// expireOffers forgets the offers whose hold has lapsed by now. The
// record of a client Full had never seen before goes (DISCOVERs from
// made-up MACs leave nothing behind); another client's stays, expired, as
// its record. A client that asks late for its lapsed offer gets it all
// the same when no one took it meanwhile. Call with f.mu held.
func (f *Full) expireOffers(now time.Time) error {
	for key, o := range f.offers {
		if o.hold.Expires.After(now) {
			continue
		}
		delete(f.offers, key)
		if o.hadPrev {
			continue
		}
		if err := f.dropHold(o, nil); err != nil {
			return err
		}
	}
	return nil
}

// withdraw forgets the offer o, the client having taken another server's,
// and puts the client's record back as it was before the offer: the
// record from before when it was on the same address or had ended (a
// live lease on another address may have been given away meanwhile),
// else none. Call with f.mu held.
func (f *Full) withdraw(o offer, now time.Time) error {
	delete(f.offers, o.hold.MAC.String())
	if o.hadPrev && (o.prev.IP == o.hold.IP || !o.prev.Expires.After(now)) {
		return f.dropHold(o, &o.prev)
	}
	return f.dropHold(o, nil)
}

// dropHold replaces the hold of offer o in the leases by prev, or removes
// it when prev is nil, unless the client's record has changed since.
func (f *Full) dropHold(o offer, prev *Lease) error {
	mac := o.hold.MAC
	cur, ok, err := f.leases.Get(mac)
	if err != nil {
		return fmt.Errorf("read lease: %w", err)
	}
	if !ok || cur.IP != o.hold.IP || !cur.Expires.Equal(o.hold.Expires) {
		return nil
	}
	if prev != nil {
		err = f.leases.Put(*prev)
	} else {
		err = f.leases.Delete(mac)
	}
	if err != nil {
		return fmt.Errorf("drop the offer of %v to %s: %w", o.hold.IP, mac, err)
	}
	return nil
}
