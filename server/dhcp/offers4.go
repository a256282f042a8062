package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Offers and floods of DISCOVERs.
//
// An offer holds its address for offerHold (RFC 2131 section 4.3.1), so
// that the next client is not offered it too; left unbounded, DISCOVERs
// from made-up MACs, a few a second, keep a /24 held. So the offers
// holding an address at once (outstanding: neither taken by a REQUEST
// nor lapsed) are bounded, in all (maxHolds, a quarter of the pool, at
// most maxHoldsCap) and per relay (giaddr) or, for clients on the link,
// the interface (maxRelayHolds, half of that); and a MAC the leases do
// not know gets a hold only at the rate of its relay's token bucket
// (newMACBurst, then newMACRate a second), which bounds the store's
// writes. Reservations and clients renewing their live lease are not
// counted: no one else may have their address anyway.
//
// An offer beyond those bounds is still made, and holds nothing: a
// client whose REQUEST follows gets the address when no one took it
// meanwhile, and a NAK, then a new DISCOVER, when someone did. Such
// offers name spare addresses: never used first, from a cursor that goes
// down the pool from its end while held offers fill it from its start,
// so that neither they nor each other name the same address soon again.
// A flood thus holds at most a quarter of the pool, and real clients get
// addresses beside it.
const (
	maxHoldsCap = 256
	newMACBurst = 16
	newMACRate  = 4 // a second
)

// holdLimits are maxHolds and maxRelayHolds for the pool start-end.
func holdLimits(start, end netip.Addr) (all, perRelay int) {
	all = int(min(max(poolSize(start, end)/4, 1), maxHoldsCap))
	return all, max(1, all/2)
}

// poolSize is the number of addresses from start to end, both included.
func poolSize(start, end netip.Addr) uint64 {
	return uint64(u32(end)) - uint64(u32(start)) + 1
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func fromU32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// offer is an address Full holds for a client's DHCPREQUEST (RFC 2131
// section 4.3.1), the client having no live lease on it: the record
// written for the hold, and the client's record from before.
type offer struct {
	hold    Lease
	relay   string // relayKey of the DISCOVER
	prev    Lease  // the client's record before the offer, if hadPrev
	hadPrev bool
}

// relayKey names where req came from: its relay (giaddr), or the
// interface for a client on the link.
func (f *Full) relayKey(req *dhcpv4.DHCPv4) string {
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		return "relay " + gi.String()
	}
	return "interface " + f.cfg.Interface
}

// mayHold reports whether a new offer through relay may hold its
// address now: fewer than maxHolds outstanding, fewer than maxRelayHolds
// through relay, and for a MAC the leases do not know (!known) a token
// from relay's bucket. Call with f.mu held.
func (f *Full) mayHold(relay string, known bool, now time.Time) bool {
	if len(f.offers) >= f.maxHolds {
		return false
	}
	n := 0
	for _, o := range f.offers {
		if o.relay == relay {
			n++
		}
	}
	if n >= f.maxRelayHolds {
		return false
	}
	if known {
		return true
	}
	b, ok := f.buckets[relay]
	if !ok {
		if len(f.buckets) >= 64 {
			// Relays are in the subnet, and many: forget the idle.
			for k, b := range f.buckets {
				if b.full(now) {
					delete(f.buckets, k)
				}
			}
		}
		b = &tokenBucket{burst: newMACBurst, rate: newMACRate}
		f.buckets[relay] = b
	}
	return b.take(now)
}

// spareWindow bounds the addresses spare looks at for one offer.
const spareWindow = 256

// spare picks an address for an offer that holds none: going down the
// pool from the cursor, wrapping at its start, the first free address
// never used, or else the first free one, within spareWindow addresses;
// it moves the cursor below it. When those are all taken, the address a
// held offer would get (without taking it). Call with f.mu held.
func (f *Full) spare(mac net.HardwareAddr, now time.Time) (netip.Addr, error) {
	lo, hi := u32(f.cfg.Start), u32(f.cfg.End)
	at := u32(f.cursor)
	if at < lo || at > hi {
		at = hi
	}
	var used netip.Addr
	for range min(poolSize(f.cfg.Start, f.cfg.End), spareWindow) {
		ip := fromU32(at)
		if at == lo {
			at = hi
		} else {
			at--
		}
		if f.whyNot(mac, ip, now) != "" {
			continue
		}
		if _, had := f.table.onIP(ip); !had {
			f.cursor = fromU32(at)
			return ip, nil
		}
		if !used.IsValid() {
			used = ip
		}
	}
	if used.IsValid() {
		if u := u32(used); u == lo {
			f.cursor = f.cfg.End
		} else {
			f.cursor = fromU32(u - 1)
		}
		return used, nil
	}
	f.cursor = fromU32(at)
	if ip, ok := f.table.unused(false); ok {
		return ip, nil
	}
	if l, ok := f.table.oldest(now, func(ip netip.Addr) bool { return f.whyNot(mac, ip, now) == "" }); ok {
		return l.IP, nil
	}
	return netip.Addr{}, ErrPoolExhausted
}

// tokenBucket is a rate: burst events at once, then rate a second. Its
// clock is the caller's (take's now), so it is pure.
type tokenBucket struct {
	burst, rate float64
	tokens      float64
	last        time.Time // of the last take; zero: never, the bucket full
}

// take reports whether an event may happen at now, and counts it when it
// may. A clock that goes back adds no tokens.
func (b *tokenBucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *tokenBucket) refill(now time.Time) {
	switch {
	case b.last.IsZero():
		b.tokens = b.burst
	case now.After(b.last):
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	default:
		return
	}
	b.last = now
}

// full reports whether the bucket would be full at now: as good as new.
func (b *tokenBucket) full(now time.Time) bool {
	if b.last.IsZero() {
		return true
	}
	return now.After(b.last) && b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst
}

// expireOffers forgets the offers whose hold has lapsed by now. The
// record of a client Full had never seen before goes (DISCOVERs from
// made-up MACs leave nothing behind); another client's stays, expired, as
// its record. A client that asks late for its lapsed offer gets it all
// the same when no one took it meanwhile. Call with f.mu held.
func (f *Full) expireOffers(now time.Time) {
	for key, o := range f.offers {
		if o.hold.Expires.After(now) {
			continue
		}
		delete(f.offers, key)
		if o.hadPrev {
			continue
		}
		f.dropHold(o, nil)
	}
}

// withdraw forgets the offer o, the client having taken another server's,
// and puts the client's record back as it was before the offer: the
// record from before when it was on the same address or had ended (a
// live lease on another address may have been given away meanwhile),
// else none. Call with f.mu held.
func (f *Full) withdraw(o offer, now time.Time) {
	delete(f.offers, o.hold.MAC.String())
	if o.hadPrev && (o.prev.IP == o.hold.IP || !o.prev.Expires.After(now)) {
		f.dropHold(o, &o.prev)
		return
	}
	f.dropHold(o, nil)
}

// dropHold replaces the hold of offer o in the leases by prev, or removes
// it when prev is nil, unless the client's record has changed since. An
// address prev names that someone else has now stays theirs: the client
// then has no record. Call with f.mu held.
func (f *Full) dropHold(o offer, prev *Lease) {
	mac := o.hold.MAC
	cur, ok := f.table.get(mac.String())
	if !ok || cur.IP != o.hold.IP || !cur.Expires.Equal(o.hold.Expires) {
		return
	}
	if prev != nil {
		if other, taken := f.table.onIP(prev.IP); !taken || slices.Equal(other.MAC, mac) {
			f.put(*prev)
			return
		}
	}
	f.remove(mac)
}
