package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FullConfig is the network a Full DHCP server hands out addresses on.
type FullConfig struct {
	// Interface names the interface the socket is bound to, for
	// Request.Interface and the log.
	Interface string
	// ServerIP is this host's address on Interface, inside Subnet:
	// option 54, and the TFTP server when an Answer names none.
	ServerIP netip.Addr
	// Subnet is the link's prefix (option 1, the subnet mask).
	Subnet netip.Prefix
	// Start and End bound the pool, both included, inside Subnet. The
	// server's and the router's addresses are skipped if inside.
	Start, End netip.Addr
	// Router is option 3; the zero Addr sends none.
	Router netip.Addr
	// DNS is option 6; empty sends none.
	DNS []netip.Addr
	// LeaseTime is option 51; 0 means one hour.
	LeaseTime time.Duration
	// Reservations give these MACs these addresses, inside Subnet and
	// inside or outside the pool; no other client gets them.
	Reservations []Reservation
}

// Reservation is a static address: MAC always gets IP.
type Reservation struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

const (
	defaultLeaseTime = time.Hour
	// offerHold is how long an offered address waits for the client's
	// REQUEST before another client may get it (RFC 2131 section 4.3.1
	// leaves it to the server; Kea holds none by default). PXE firmware
	// waits a few seconds for ProxyDHCP offers before it requests; a
	// client that asks later still gets the address when no one took it
	// meanwhile. How many offers hold an address at once is bounded too
	// (see offers4.go).
	offerHold = 10 * time.Second
	// declineHold is how long an address a client declined (another host
	// answered ARP for it, RFC 2131 section 4.3.3) is not offered: Kea's
	// "probation", 24 hours there. Ten minutes here, on an isolated
	// network whose operator fixes the other host's address by hand and
	// wants the address back soon; the mark is kept in Leases, so a
	// restart does not forget it.
	declineHold = 10 * time.Minute
)

// Full is a DHCP server (RFC 2131) for an isolated network: it gives
// addresses from a pool or reservations, keeps leases in Leases, and adds
// Booter's answer to the OFFER and ACK of network boot clients. Use
// NewFull.
//
// The leases are in memory (table), loaded from Leases when Full starts:
// an answer is decided without reading the store, and what it changes
// is written in batches (see batch.go) before the answer leaves.
type Full struct {
	cfg      FullConfig
	leases   Leases
	booter   Booter
	log      *slog.Logger
	now      func() time.Time
	reserved map[string]netip.Addr // MAC.String() -> IP
	byIP     map[netip.Addr]string // reserved IP -> MAC.String()
	batch    *batcher
	stats    QueueStats

	// maxHolds and maxRelayHolds bound the offers that hold an address
	// at once, in all and per relay or interface (see holdLimits).
	maxHolds, maxRelayHolds int

	mu      sync.Mutex              // serialises lease decisions; guards the fields below
	table   *table                  // the leases
	writes  []LeaseWrite            // the writes of the decision being made
	offers  map[string]offer        // MAC.String() -> its offer hold not yet taken
	buckets map[string]*tokenBucket // relayKey -> the rate of holds for new MACs
	cursor  netip.Addr              // where spare looks for an address next

	refreshing bool      // a refresh runs (refresh.go)
	refreshed  time.Time // when the last refresh ended
}

// NewFull checks cfg, reads the leases and returns a server for them.
// booter may be nil (no boot answers, addresses only); log may be nil.
func NewFull(cfg FullConfig, leases Leases, booter Booter, log *slog.Logger) (*Full, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if leases == nil {
		return nil, errors.New("dhcp: no Leases store")
	}
	f := &Full{
		cfg:      cfg,
		leases:   leases,
		booter:   booter,
		log:      discardIfNil(log),
		now:      time.Now,
		reserved: map[string]netip.Addr{},
		byIP:     map[netip.Addr]string{},
		offers:   map[string]offer{},
		buckets:  map[string]*tokenBucket{},
		cursor:   cfg.End,
	}
	f.cfg.DNS = slices.Clone(cfg.DNS)
	if f.cfg.LeaseTime == 0 {
		f.cfg.LeaseTime = defaultLeaseTime
	}
	for _, r := range cfg.Reservations {
		f.reserved[r.MAC.String()] = r.IP
		f.byIP[r.IP] = r.MAC.String()
	}
	f.maxHolds, f.maxRelayHolds = holdLimits(cfg.Start, cfg.End)
	f.batch = newBatcher(leases, func() time.Time { return f.now() })
	f.batch.failed = f.reload
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// load reads the table from the store. Call with f.mu held, or before
// Full is in use.
func (f *Full) load() error {
	all, err := f.leases.All()
	if err != nil {
		return fmt.Errorf("dhcp: read the leases: %w", err)
	}
	f.table = newTable(f.cfg.Start, f.cfg.End, func(ip netip.Addr) bool {
		_, reserved := f.byIP[ip]
		return reserved || ip == f.cfg.ServerIP || ip == f.cfg.Router
	}, all)
	return nil
}

// reload is what follows a batch the store failed: the table again from
// the store, no offer outstanding (their holds may not be there), and
// the decisions queued meanwhile, made from the table as it was, to fail
// too. A store that cannot be read leaves the table as it was: the next
// batch will tell.
func (f *Full) reload() []*pending {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.load(); err != nil {
		f.log.Warn("dhcp cannot read the leases back after a failed write", "err", err)
	}
	clear(f.offers)
	return f.batch.takeAll()
}

// QueueStats counts the requests Serve dropped unanswered.
type QueueStats struct {
	// Full: a request dropped when the queue was full, to make room for
	// a newer one.
	Full atomic.Uint64
	// Stale: a request that waited longer than maxAge to be handled, its
	// client having likely sent it again or given up.
	Stale atomic.Uint64
	// Refreshes: the times Full read the store's leases again after a
	// write it refused (another server writes beside it: refresh.go).
	Refreshes atomic.Uint64
}

// Stats are the drop counts of Full's Serve.
func (f *Full) Stats() *QueueStats { return &f.stats }

func (c FullConfig) check() error {
	if !c.ServerIP.Is4() {
		return fmt.Errorf("dhcp: server address %v is not IPv4", c.ServerIP)
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 {
		return fmt.Errorf("dhcp: subnet %v is not an IPv4 prefix of /30 or wider", c.Subnet)
	}
	host := func(what string, a netip.Addr) error {
		switch {
		case !a.Is4() || !c.Subnet.Contains(a):
			return fmt.Errorf("dhcp: %s %v is not in subnet %v", what, a, c.Subnet)
		case a == c.Subnet.Masked().Addr() || a == lastAddr(c.Subnet):
			return fmt.Errorf("dhcp: %s %v is subnet %v's network or broadcast address", what, a, c.Subnet)
		}
		return nil
	}
	if err := host("server address", c.ServerIP); err != nil {
		return err
	}
	if err := host("pool start", c.Start); err != nil {
		return err
	}
	if err := host("pool end", c.End); err != nil {
		return err
	}
	if c.End.Less(c.Start) {
		return fmt.Errorf("dhcp: pool end %v is before its start %v", c.End, c.Start)
	}
	if c.Router.IsValid() {
		if err := host("router", c.Router); err != nil {
			return err
		}
	}
	for _, d := range c.DNS {
		if !d.Is4() {
			return fmt.Errorf("dhcp: DNS server %v is not IPv4", d)
		}
	}
	if c.LeaseTime < 0 || c.LeaseTime > time.Duration(1<<32-2)*time.Second {
		return fmt.Errorf("dhcp: lease time %v out of range (0 for the default, at most 2^32-2 s)", c.LeaseTime)
	}
	macs, ips := map[string]bool{}, map[netip.Addr]bool{}
	for _, r := range c.Reservations {
		if len(r.MAC) == 0 {
			return fmt.Errorf("dhcp: reservation of %v has no MAC", r.IP)
		}
		if err := host("reserved address of "+r.MAC.String(), r.IP); err != nil {
			return err
		}
		if r.IP == c.ServerIP || r.IP == c.Router {
			return fmt.Errorf("dhcp: reserved address %v of %s is the server's or the router's", r.IP, r.MAC)
		}
		if macs[r.MAC.String()] {
			return fmt.Errorf("dhcp: %s is reserved twice", r.MAC)
		}
		if ips[r.IP] {
			return fmt.Errorf("dhcp: %v is reserved twice", r.IP)
		}
		macs[r.MAC.String()], ips[r.IP] = true, true
	}
	return nil
}

// Serve answers DHCP clients on conn, the DHCP server port 67 of the
// interface (see ListenInterface). It returns nil when ctx ends (conn's
// read deadline is then in the past) or conn is closed; it never closes
// conn.
func (f *Full) Serve(ctx context.Context, conn net.PacketConn) error {
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	written := make(chan struct{})
	go func() {
		defer close(written)
		f.batch.run(wctx)
	}()
	defer func() {
		stop()
		<-written
	}()
	return serveQueued(ctx, conn, f.log, &f.stats, func(ctx context.Context, b []byte, peer *net.UDPAddr, send sendFunc) {
		f.answer(ctx, b, peer, func(reply *dhcpv4.DHCPv4, dst *net.UDPAddr) {
			send(reply.ToBytes(), dst, []any{"type", reply.MessageType(), "mac", reply.ClientHWAddr})
		})
	})
}

// Handle answers one datagram b from peer and returns the reply and
// where it goes, or nil and nil: Serve's work for one datagram, its
// writes committed before it returns (by this goroutine, with those of
// others pending), for callers that do their own reading and sending.
func (f *Full) Handle(ctx context.Context, b []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	type sent struct {
		reply *dhcpv4.DHCPv4
		dst   *net.UDPAddr
	}
	c := make(chan sent, 1)
	f.answer(ctx, b, peer, func(reply *dhcpv4.DHCPv4, dst *net.UDPAddr) { c <- sent{reply, dst} })
	f.batch.flush()
	select {
	case s := <-c:
		return s.reply, s.dst
	default:
		return nil, nil
	}
}

func (f *Full) handle(ctx context.Context, b []byte, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	return f.Handle(ctx, b, peer)
}

// answer decides the answer to one datagram b from peer and calls send
// with it once the writes it depends on are stored (maybe later, from
// another goroutine), or never when there is none.
func (f *Full) answer(ctx context.Context, b []byte, peer *net.UDPAddr, send func(*dhcpv4.DHCPv4, *net.UDPAddr)) {
	req := parsePacket(f.log, b, peer)
	if req == nil {
		return
	}
	if len(req.ClientHWAddr) == 0 {
		f.log.Debug("dhcp ignored a packet without a client hardware address", "peer", peer)
		return
	}
	if n := len(req.ClientHWAddr); n != 6 && n != 8 {
		// Leases are kept by MAC, which a store keeps as text and reads
		// back with net.ParseMAC: 6 or 8 bytes (20 are declinedMAC's).
		f.log.Debug("dhcp ignored a client hardware address neither 6 nor 8 bytes long", "peer", peer, "mac", req.ClientHWAddr.String())
		return
	}
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() && !f.cfg.Subnet.Contains(gi) {
		// RFC 2131 section 4.3.1: giaddr names the client's subnet, and
		// this server has only its own.
		f.log.Debug("dhcp ignored a packet relayed from another subnet", "mac", req.ClientHWAddr.String(), "giaddr", gi)
		return
	}
	mt := req.MessageType()
	// The boot answer first, outside the lock: the Booter may take its
	// time, and the decision and the queueing of its writes are one
	// step, in order.
	var boot func(reply *dhcpv4.DHCPv4) Answer
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		boot = f.boot(ctx, req)
	}

	f.mu.Lock()
	f.writes = nil
	reply, err := f.decide(req, mt)
	writes := f.writes
	f.writes = nil
	if err != nil {
		f.mu.Unlock()
		f.log.Warn("dhcp not answering", "type", mt, "mac", req.ClientHWAddr.String(), "iface", f.cfg.Interface, "err", err)
		return
	}
	var a Answer
	if reply != nil && boot != nil {
		if t := reply.MessageType(); t == dhcpv4.MessageTypeOffer || t == dhcpv4.MessageTypeAck {
			a = boot(reply)
		}
	}
	done := func(conflicts []LeaseConflict, err error) {
		switch {
		case err != nil:
			f.log.Warn("dhcp not answering: the leases could not be stored", "type", mt, "mac", req.ClientHWAddr.String(), "iface", f.cfg.Interface, "err", err)
		case len(conflicts) > 0 && f.learn(writes, conflicts, req.ClientHWAddr):
			// The answer rests on a write the store refused.
		case reply != nil:
			f.log.Info("dhcp answer", "type", reply.MessageType(), "mac", req.ClientHWAddr.String(), "ip", reply.YourIPAddr, "iface", f.cfg.Interface, "file", a.File, "url", a.URL, "message", reply.Message())
			send(reply, fullReplyAddr(req, reply))
		}
	}
	if len(writes) == 0 {
		f.mu.Unlock()
		done(nil, nil)
		return
	}
	f.batch.add(&pending{writes: writes, done: done})
	f.mu.Unlock()
}

// learn takes in what the store said of the writes it refused: another
// server gave the address (Owner, another MAC's), or changed the MAC's
// lease (Owner, the MAC's own); in memory from now on, and the rest of
// the store's leases soon (refresh). It reports whether a refused write
// was mac's: the answer to mac rests on it, and is not sent (the client
// asks again).
func (f *Full) learn(writes []LeaseWrite, conflicts []LeaseConflict, mac net.HardwareAddr) (refused bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conflicts {
		w := writes[c.Index]
		key := w.Lease.MAC.String()
		refused = refused || key == mac.String()
		// Memory goes back to what the store has, unless a later
		// decision changed it since.
		cur, ok := f.table.get(key)
		if w.Delete && !ok || !w.Delete && ok && cur.IP == w.Lease.IP && cur.Expires.Equal(w.Lease.Expires) {
			f.table.remove(key)
			if p := w.Prev; p != nil && p.IP.IsValid() {
				if _, taken := f.table.onIP(p.IP); !taken {
					f.table.set(*p)
				}
			}
		}
		if o, ok := f.offers[key]; ok && o.hold.IP == w.Lease.IP {
			delete(f.offers, key)
		}
		if len(c.Owner.MAC) > 0 && c.Owner.IP.IsValid() {
			if o, ok := f.table.onIP(c.Owner.IP); ok && !slices.Equal(o.MAC, c.Owner.MAC) {
				delete(f.offers, o.MAC.String())
			}
			f.table.set(c.Owner)
		}
		f.log.Info("dhcp write refused: another server has changed the lease (the store keeps theirs)", "mac", key, "ip", w.Lease.IP, "delete", w.Delete, "owner", c.Owner.MAC.String(), "owner_ip", c.Owner.IP, "until", c.Owner.Expires)
	}
	f.refreshSoon()
	return refused
}

// put makes l its MAC's lease, in memory now and in the store with the
// decision's batch, if the store's lease of the MAC is still the one in
// memory (Prev). Call with f.mu held.
func (f *Full) put(l Lease) {
	prev := f.prev(l.MAC)
	f.table.set(l)
	f.writes = append(f.writes, LeaseWrite{Lease: cloneLease(l), Prev: prev})
}

// remove forgets mac's lease, in memory now and in the store with the
// decision's batch, if the store's is still the one in memory. Call with
// f.mu held.
func (f *Full) remove(mac net.HardwareAddr) {
	prev := f.prev(mac)
	f.table.remove(mac.String())
	f.writes = append(f.writes, LeaseWrite{Lease: Lease{MAC: slices.Clone(mac)}, Delete: true, Prev: prev})
}

// prev is mac's lease in memory, for a write's Prev: the zero Lease when
// it has none. Call with f.mu held.
func (f *Full) prev(mac net.HardwareAddr) *Lease {
	l, _ := f.table.get(mac.String())
	l = cloneLease(l)
	return &l
}

// boot asks Booter for req's answer when req is a netboot client's, and
// returns what adds it to a reply (and returns it); nil for none.
func (f *Full) boot(ctx context.Context, req *dhcpv4.DHCPv4) func(reply *dhcpv4.DHCPv4) Answer {
	if f.booter == nil {
		return nil
	}
	r, err := parseRequest(req, f.cfg.Interface)
	if err != nil {
		f.log.Debug("dhcp no boot answer", "mac", req.ClientHWAddr.String(), "err", err)
		return nil
	}
	a, err := f.booter.Boot(ctx, r)
	if err != nil {
		f.log.Warn("dhcp booter failed, address without a boot answer", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return nil
	}
	if a.IsZero() {
		return nil
	}
	if err := a.check(r); err != nil {
		f.log.Warn("dhcp address without a boot answer", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return nil
	}
	return func(reply *dhcpv4.DHCPv4) Answer {
		applyBoot(reply, req, r, a, f.cfg.ServerIP)
		return a
	}
}

// decide applies req to the leases and returns the reply, or nil for
// none (RFC 2131 section 4.3). Call with f.mu held.
func (f *Full) decide(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	now := f.now()
	f.expireOffers(now)
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return f.discover(req, now)
	case dhcpv4.MessageTypeRequest:
		return f.request(req, now)
	case dhcpv4.MessageTypeDecline:
		f.decline(req, now)
		return nil, nil
	case dhcpv4.MessageTypeRelease:
		f.release(req, now)
		return nil, nil
	case dhcpv4.MessageTypeInform:
		return f.inform(req), nil
	}
	f.log.Debug("dhcp ignored a message", "type", mt, "mac", req.ClientHWAddr.String())
	return nil, nil
}

// discover offers an address (RFC 2131 section 4.3.1) and holds it for
// offerHold, or for longer when the client's lease on it runs longer.
// An offer that holds an address for a client without a live lease on
// it is kept in offers until the client takes it or it lapses; when
// mayHold says no more may (a flood of DISCOVERs from made-up MACs), the
// offer holds nothing and names an address from spare.
func (f *Full) discover(req *dhcpv4.DHCPv4, now time.Time) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	key := mac.String()
	want, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	rec, hasRec := f.table.get(key)
	_, reserved := f.reserved[key]
	o, pending := f.offers[key]
	relay := f.relayKey(req)
	holds := reserved || pending || hasRec && rec.Expires.After(now) || f.mayHold(relay, hasRec, now)
	ip, err := f.allocate(mac, want, now, holds)
	if err != nil {
		return nil, err
	}
	if !holds {
		f.log.Debug("dhcp offer holds no address: too many offers outstanding or new clients too fast", "mac", key, "ip", ip, "relay", relay)
		return f.withAddress(newReply(req, dhcpv4.MessageTypeOffer, f.cfg.ServerIP), ip), nil
	}
	hold := Lease{MAC: mac, IP: ip, Expires: now.Add(offerHold), Hostname: req.HostName()}
	bound := false
	if hasRec && rec.IP == ip {
		if rec.Expires.After(hold.Expires) {
			hold.Expires, bound = rec.Expires, true
		}
		if hold.Hostname == "" {
			hold.Hostname = rec.Hostname
		}
	}
	if !pending {
		o = offer{prev: rec, hadPrev: hasRec}
	}
	f.put(hold)
	if reserved || bound {
		// No one else may have the address anyway.
		delete(f.offers, key)
	} else {
		o.hold, o.relay = hold, relay
		f.offers[key] = o
	}
	return f.withAddress(newReply(req, dhcpv4.MessageTypeOffer, f.cfg.ServerIP), ip), nil
}

// request answers the three kinds of DHCPREQUEST (RFC 2131 section
// 4.3.2): SELECTING (option 54 set), INIT-REBOOT (option 50, no 54) and
// RENEWING or REBINDING (ciaddr, no 50; with our option 54 too, which
// some clients send).
func (f *Full) request(req *dhcpv4.DHCPv4, now time.Time) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	sid := req.ServerIdentifier()
	want, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	ciaddr, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	rec, hasRec := f.table.get(mac.String())
	var ip netip.Addr
	switch {
	case sid != nil && !sid.Equal(f.cfg.ServerIP.AsSlice()):
		// The client took another server's offer: withdraw ours, if it
		// has one it never took. Anyone can send this with any MAC: a
		// lease stays (dnsmasq and Kea ignore it too).
		if o, ok := f.offers[mac.String()]; ok {
			f.withdraw(o, now)
		}
		f.log.Debug("dhcp client chose another server", "mac", mac.String(), "server", sid)
		return nil, nil
	case sid != nil:
		// SELECTING names the offered address in option 50. A client
		// renewing with our server identifier (RFC 2131 says it MUST NOT
		// send one, some do) names it in ciaddr: Kea and dnsmasq take
		// that, and so does this server.
		switch {
		case want.IsValid():
			ip = want
		case ciaddr.IsValid() && !ciaddr.IsUnspecified():
			ip = ciaddr
		default:
			return f.nak(req, "no requested address (option 50) in a DHCPREQUEST"), nil
		}
	case want.IsValid():
		// INIT-REBOOT: "If the DHCP server has no record of this client,
		// then it MUST remain silent", unless we know its address anyway.
		if !f.cfg.Subnet.Contains(want) {
			return f.nak(req, fmt.Sprintf("%v is not on this network", want)), nil
		}
		if !hasRec && f.reserved[mac.String()] != want {
			f.log.Debug("dhcp INIT-REBOOT of a client we have no record of", "mac", mac.String(), "ip", want)
			return nil, nil
		}
		ip = want
	case ciaddr.IsValid() && !ciaddr.IsUnspecified():
		ip = ciaddr
	default:
		f.log.Debug("dhcp ignored a DHCPREQUEST without an address", "mac", mac.String())
		return nil, nil
	}
	// A client's record on another address refuses the REQUEST, unless
	// the client is selecting our offer and that record has ended: an
	// offer that holds nothing (see offers4.go) leaves the record as it
	// was.
	if hasRec && rec.IP != ip && (rec.Expires.After(now) || sid == nil || !want.IsValid()) {
		return f.nak(req, fmt.Sprintf("%v is not the address of %s", ip, mac)), nil
	}
	if why := f.whyNot(mac, ip, now); why != "" {
		return f.nak(req, why), nil
	}
	host := req.HostName()
	if host == "" && hasRec {
		host = rec.Hostname
	}
	f.put(Lease{MAC: mac, IP: ip, Expires: now.Add(f.cfg.LeaseTime), Hostname: host})
	delete(f.offers, mac.String())
	p := f.withAddress(newReply(req, dhcpv4.MessageTypeAck, f.cfg.ServerIP), ip)
	p.ClientIPAddr = ip4(req.ClientIPAddr)
	return p, nil
}

// decline marks the address a client found in use (RFC 2131 section
// 4.3.3) as not to be offered for declineHold: a record in Leases on
// declinedMAC(ip), in place of the client's. It counts only with our
// server identifier (RFC 2131 table 5: MUST) and for the address leased
// or offered to the sender, whose lease or offer has not ended: anyone
// could otherwise take any address out of use, its holder's renewal
// refused.
func (f *Full) decline(req *dhcpv4.DHCPv4, now time.Time) {
	mac := req.ClientHWAddr
	ip, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	if sid := req.ServerIdentifier(); sid == nil || !sid.Equal(f.cfg.ServerIP.AsSlice()) {
		f.log.Debug("dhcp ignored a DHCPDECLINE without our server identifier", "mac", mac.String(), "ip", ip, "server", sid)
		return
	}
	if !ip.IsValid() || !f.cfg.Subnet.Contains(ip) {
		f.log.Debug("dhcp ignored a DHCPDECLINE of an address not ours", "mac", mac.String(), "ip", ip)
		return
	}
	rec, ok := f.table.get(mac.String())
	if !ok || rec.IP != ip || !rec.Expires.After(now) {
		f.log.Debug("dhcp ignored a DHCPDECLINE of an address not leased or offered to its sender", "mac", mac.String(), "ip", ip)
		return
	}
	// The client's lease goes first: an address is one lease's.
	f.remove(mac)
	f.put(Lease{MAC: declinedMAC(ip), IP: ip, Expires: now.Add(declineHold)})
	delete(f.offers, mac.String())
	f.log.Warn("dhcp address declined: another host on the link uses it; not offered for a while", "ip", ip, "mac", mac.String(), "for", declineHold)
}

// release ends a client's lease (RFC 2131 section 4.3.4). The record
// stays, expired, so the client gets the same address back next time.
func (f *Full) release(req *dhcpv4.DHCPv4, now time.Time) {
	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(f.cfg.ServerIP.AsSlice()) {
		return
	}
	mac := req.ClientHWAddr
	ip, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	rec, ok := f.table.get(mac.String())
	if !ok || rec.IP != ip {
		return
	}
	rec.Expires = now
	f.put(rec)
	delete(f.offers, mac.String())
}

// inform answers a client with an address of its own (RFC 2131 section
// 4.3.5): the network's options, no address, no lease time.
func (f *Full) inform(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	p := newReply(req, dhcpv4.MessageTypeAck, f.cfg.ServerIP)
	p.ClientIPAddr = ip4(req.ClientIPAddr)
	f.networkOptions(p)
	return p
}

// nak is a DHCPNAK with why in option 56 (RFC 2131 section 4.3.2, table
// 3). Through a relay it asks for a broadcast on the client's link.
func (f *Full) nak(req *dhcpv4.DHCPv4, why string) *dhcpv4.DHCPv4 {
	p := newReply(req, dhcpv4.MessageTypeNak, f.cfg.ServerIP)
	p.UpdateOption(dhcpv4.OptMessage(why))
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		p.SetBroadcast()
	}
	return p
}

// withAddress gives p the address ip and the network's options with the
// lease time and its renewal (T1, half) and rebinding (T2, 7/8) times
// (RFC 2131 section 4.4.5, RFC 2132 sections 9.2, 9.11, 9.12).
func (f *Full) withAddress(p *dhcpv4.DHCPv4, ip netip.Addr) *dhcpv4.DHCPv4 {
	p.YourIPAddr = ip.AsSlice()
	f.networkOptions(p)
	lt := f.cfg.LeaseTime
	p.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	p.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	p.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	return p
}

// networkOptions adds options 1, 3 and 6 (RFC 2132 sections 3.3, 3.5, 3.8).
func (f *Full) networkOptions(p *dhcpv4.DHCPv4) {
	p.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(f.cfg.Subnet.Bits(), 32)))
	if f.cfg.Router.IsValid() {
		p.UpdateOption(dhcpv4.OptRouter(f.cfg.Router.AsSlice()))
	}
	if len(f.cfg.DNS) > 0 {
		ips := make([]net.IP, len(f.cfg.DNS))
		for i, d := range f.cfg.DNS {
			ips[i] = d.AsSlice()
		}
		p.UpdateOption(dhcpv4.OptDNS(ips...))
	}
}

// ErrPoolExhausted is returned (and logged) when no address is free.
var ErrPoolExhausted = errors.New("dhcp: no free address in the pool")

// allocate picks mac's address for an offer: its reservation; else its
// previous address, or the one it asks for (option 50), when free; else,
// for an offer that holds its address, the pool's lowest address no one
// has had, or else the one whose lease expired longest ago (its old
// lease goes when the hold is put); for one that holds none, spare's.
// Call with f.mu held.
func (f *Full) allocate(mac net.HardwareAddr, want netip.Addr, now time.Time, hold bool) (netip.Addr, error) {
	if ip, ok := f.reserved[mac.String()]; ok {
		if why := f.whyNot(mac, ip, now); why != "" {
			return netip.Addr{}, fmt.Errorf("reserved address of %s: %s", mac, why)
		}
		return ip, nil
	}
	// A decline that has run its time: the address is as good as never
	// used.
	for _, m := range f.table.endMarks(now) {
		f.writes = append(f.writes, LeaseWrite{Lease: m, Delete: true, Prev: &m})
	}
	var own netip.Addr
	if rec, ok := f.table.get(mac.String()); ok {
		own = rec.IP
	}
	for _, ip := range []netip.Addr{own, want} {
		if ip.IsValid() && f.whyNot(mac, ip, now) == "" {
			return ip, nil
		}
	}
	if !hold {
		return f.spare(mac, now)
	}
	if ip, ok := f.table.unused(true); ok {
		return ip, nil
	}
	usable := func(ip netip.Addr) bool { return f.whyNot(mac, ip, now) == "" }
	if l, ok := f.table.oldest(now, usable); ok {
		delete(f.offers, l.MAC.String())
		return l.IP, nil
	}
	return netip.Addr{}, ErrPoolExhausted
}

// whyNot says why mac may not have ip now, "" when it may: an address
// reserved for another MAC, outside the pool (unless reserved for mac),
// the server's or router's, recently declined, or leased to another MAC
// until later than now. Call with f.mu held.
func (f *Full) whyNot(mac net.HardwareAddr, ip netip.Addr, now time.Time) string {
	key := mac.String()
	if owner, ok := f.byIP[ip]; ok && owner != key {
		return fmt.Sprintf("%v is reserved for %s", ip, owner)
	}
	if r, ok := f.reserved[key]; ok && r != ip {
		return fmt.Sprintf("%s has the reserved address %v, not %v", mac, r, ip)
	}
	if _, ok := f.byIP[ip]; !ok && (ip.Less(f.cfg.Start) || f.cfg.End.Less(ip)) {
		return fmt.Sprintf("%v is outside the pool %v-%v", ip, f.cfg.Start, f.cfg.End)
	}
	if ip == f.cfg.ServerIP || ip == f.cfg.Router {
		return fmt.Sprintf("%v is the server's or the router's", ip)
	}
	l, ok := f.table.onIP(ip)
	switch {
	case !ok || !l.Expires.After(now) || slices.Equal(l.MAC, mac):
	case isDeclinedMAC(l.MAC):
		return fmt.Sprintf("%v was declined: another host uses it (not offered until %s)", ip, l.Expires.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("%v is leased to %s until %s", ip, l.MAC, l.Expires.UTC().Format(time.RFC3339))
	}
	return ""
}

// lastAddr is p's last (broadcast) address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}
