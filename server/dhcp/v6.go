package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// EnterpriseIntel is the enterprise number (IANA's Private Enterprise
// Numbers; 343 is Intel) in the DHCPv6 vendor class option (16) of PXE
// and UEFI HTTP Boot clients: EDK2 and iPXE send
// "PXEClient:Arch:..." or "HTTPClient:Arch:..." under it, and EDK2's
// HTTP Boot takes an offer as an HTTP Boot offer only when option 16
// carries "HTTPClient" back.
const EnterpriseIntel = 343

// Config6 configures a Server6 on one interface.
type Config6 struct {
	// Interface names the interface the socket is bound to, for
	// Request.Interface and the log.
	Interface string
	// ServerIP is this host's global IPv6 address on Interface: the
	// TFTP server of tftp:// answers whose Answer names none.
	ServerIP netip.Addr
	// HardwareAddr is Interface's MAC: the server's DUID-LL (option 2,
	// RFC 8415 section 11.4), stable across restarts.
	HardwareAddr net.HardwareAddr
	// Start and End bound the address pool, both included, in one /64
	// (the prefix the network's router advertises as on-link).
	Start, End netip.Addr
	// LeaseTime is an address's preferred and valid lifetime; T1 is half
	// of it, T2 four fifths (RFC 8415 section 21.4). 0 means one hour.
	LeaseTime time.Duration
	// DNS servers (option 23, RFC 3646), if any.
	DNS []netip.Addr
	// Leases keeps the leases; nil means a MemLeases6 of the server's
	// own (a restart forgets them). The server backs it with its state
	// store.
	Leases Leases6
}

// maxPool6 bounds the pool: an allocation walks it.
const maxPool6 = 1 << 16

// maxIAs6 bounds the IA_NAs of one message that get an address: one
// message cannot take the pool. Those after it get NoAddrsAvail.
const maxIAs6 = 16

// declineHold6 is how long an address a client declined (someone else
// has it) stays out of the pool.
const declineHold6 = 10 * time.Minute

// offerHold6 is how long an address advertised to a Solicit stays the
// client's before its Request.
const offerHold6 = 2 * time.Minute

// Server6 is a DHCPv6 server (RFC 8415) for network boot on an isolated
// network: it gives addresses from a pool (IA_NA; leases kept through
// Leases6) to any client, and to network boot clients the boot file URL
// (option 59, RFC 5970) that Booter gives them: iPXE (user class "iPXE")
// its script, a UEFI HTTP Boot client (vendor class HTTPClient, arch 16)
// an http URL of an EFI iPXE, a UEFI PXE client a tftp:// URL. It
// answers Information-requests (stateless DHCPv6) with the same boot
// options. The network's router advertisements must say "managed" (M
// flag) for clients to ask for addresses, and carry the pool's /64 as
// on-link: this server sends no router advertisements. Relay agents may
// forward clients' messages from the pool's link (Relay-forward, RFC
// 8415 section 19).
//
// An address belongs to one identity association, a (DUID, IAID), at a
// time: a client's two IA_NAs, or two interfaces sharing one host-wide
// DUID, get two addresses. One machine keeps one address from firmware
// to booted system, as with DHCPv4, where leases go by hardware address:
// its firmware, iPXE, the agent and the booted system may each send their
// own DUID (iPXE's is the SMBIOS UUID), and the boot document's token is
// bound to the address iPXE had. So an IA new to the server from a known
// hardware address under another DUID takes that address over: its
// lease moves to the new (DUID, IAID), and the old IA holds it no more.
type Server6 struct {
	cfg      Config6
	serverID dhcpv6.DUID
	booter   Booter
	log      *slog.Logger
	now      func() time.Time
	leases   Leases6

	mu       sync.Mutex // guards declined, and the leases: one message's bindings at a time
	declined map[netip.Addr]time.Time
}

// NewServer6 checks cfg and returns a server with the leases of
// cfg.Leases. log nil means no log.
func NewServer6(cfg Config6, b Booter, log *slog.Logger) (*Server6, error) {
	if b == nil {
		return nil, errors.New("dhcpv6: no Booter")
	}
	if len(cfg.HardwareAddr) == 0 {
		return nil, errors.New("dhcpv6: no hardware address for the server's DUID")
	}
	if cfg.ServerIP.IsValid() && (!cfg.ServerIP.Is6() || cfg.ServerIP.Is4In6()) {
		return nil, fmt.Errorf("dhcpv6: server address %s is not IPv6", cfg.ServerIP)
	}
	for _, a := range []netip.Addr{cfg.Start, cfg.End} {
		if !a.Is6() || a.Is4In6() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			return nil, fmt.Errorf("dhcpv6: pool bound %v is not a global IPv6 unicast address", a)
		}
	}
	p := netip.PrefixFrom(cfg.Start, 64).Masked()
	if !p.Contains(cfg.End) || cfg.End.Less(cfg.Start) {
		return nil, fmt.Errorf("dhcpv6: pool %s-%s: want Start <= End in one /64", cfg.Start, cfg.End)
	}
	if n := poolSize6(cfg.Start, cfg.End); n > maxPool6 {
		return nil, fmt.Errorf("dhcpv6: pool %s-%s has more than %d addresses", cfg.Start, cfg.End, maxPool6)
	}
	for _, d := range cfg.DNS {
		if !d.Is6() || d.Is4In6() {
			return nil, fmt.Errorf("dhcpv6: DNS server %s is not IPv6", d)
		}
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	leases := cfg.Leases
	if leases == nil {
		leases = &MemLeases6{}
	}
	return &Server6{
		cfg:      cfg,
		serverID: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: slices.Clone(cfg.HardwareAddr)},
		booter:   b,
		log:      discardIfNil(log),
		now:      time.Now,
		leases:   leases,
		declined: map[netip.Addr]time.Time{},
	}, nil
}

// poolSize6 is the number of addresses from start to end, capped above
// maxPool6.
func poolSize6(start, end netip.Addr) int {
	a, b := start.As16(), end.As16()
	if !bytes.Equal(a[:12], b[:12]) {
		return maxPool6 + 1
	}
	lo := uint64(a[12])<<24 | uint64(a[13])<<16 | uint64(a[14])<<8 | uint64(a[15])
	hi := uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	if hi-lo >= maxPool6 {
		return maxPool6 + 1
	}
	return int(hi-lo) + 1
}

// Serve answers DHCPv6 clients on conn, port 547 of Interface with the
// All_DHCP_Relay_Agents_and_Servers group joined (ListenInterface6),
// until ctx ends (conn's read deadline is then in the past) or conn is
// closed; it never closes conn.
func (s *Server6) Serve(ctx context.Context, conn net.PacketConn) error {
	return serveDatagrams(ctx, conn, s.log, func(ctx context.Context, b []byte, peer *net.UDPAddr) ([]byte, *net.UDPAddr, []any) {
		reply, dst := s.Handle(ctx, b, peer)
		if reply == nil {
			return nil, nil, nil
		}
		return reply.ToBytes(), dst, []any{"type", reply.Type()}
	})
}

// Handle answers one datagram b from peer: the reply and where it goes
// (back to peer: the client's link-local address and port 546, or the
// relay agent's address and port), or nil. A Relay-forward (RFC 8415
// section 19), however deeply nested, gets a Relay-reply with the answer
// to the client message inside.
func (s *Server6) Handle(ctx context.Context, b []byte, peer *net.UDPAddr) (dhcpv6.DHCPv6, *net.UDPAddr) {
	d, err := dhcpv6.FromBytes(b)
	if err != nil {
		s.log.Debug("dhcpv6 ignored a malformed packet", "peer", peer, "len", len(b), "err", err)
		return nil, nil
	}
	var relays []*dhcpv6.RelayMessage
	for d.IsRelay() {
		r, ok := d.(*dhcpv6.RelayMessage)
		if !ok || r.Type() != dhcpv6.MessageTypeRelayForward {
			s.log.Debug("dhcpv6 ignored a relay message that is not a Relay-forward", "peer", peer, "type", d.Type())
			return nil, nil
		}
		if len(relays) == maxRelays6 {
			s.log.Debug("dhcpv6 ignored a Relay-forward nested too deep", "peer", peer, "relays", len(relays))
			return nil, nil
		}
		relays = append(relays, r)
		if d = r.Options.RelayMessage(); d == nil {
			s.log.Debug("dhcpv6 ignored a Relay-forward without a message", "peer", peer)
			return nil, nil
		}
	}
	m, ok := d.(*dhcpv6.Message)
	if !ok {
		return nil, nil
	}
	c := s.client(m, peer, relays)
	reply, err := s.reply(ctx, m, c)
	if errors.Is(err, errNotForUs) {
		s.log.Debug("dhcpv6 not answering", "type", m.Type(), "peer", peer, "relays", len(relays), "err", err)
		return nil, nil
	}
	if err != nil {
		s.log.Warn("dhcpv6 not answering: leases unavailable", "type", m.Type(), "peer", peer, "err", err)
		return nil, nil
	}
	if reply == nil {
		return nil, nil
	}
	if len(relays) > 0 {
		return relayReply6(relays, reply), peer
	}
	return reply, peer
}

// maxRelays6 bounds the Relay-forwards around one message: relays add
// one while the hop count is below HOP_COUNT_LIMIT, 8 (RFC 8415 sections
// 7.6 and 19.1.1), so at most 9 come from conforming relays.
const maxRelays6 = 9

// client6 is what the server knows of a client beyond its message.
type client6 struct {
	// peer is the client's address: the datagram's source, or the
	// peer-address of the relay closest to the client.
	peer *net.UDPAddr
	// mac is its hardware address, when known (clientMAC, or the Client
	// Link-Layer Address option of the relay closest to it).
	mac net.HardwareAddr
	// offLink is set when the relay closest to the client names a link
	// (its link-address, RFC 8415 section 19.1.1) outside the pool's
	// /64: the pool's addresses are no use there.
	offLink bool
}

// client finds out about the client of m, received from peer through
// relays (outermost first).
func (s *Server6) client(m *dhcpv6.Message, peer *net.UDPAddr, relays []*dhcpv6.RelayMessage) client6 {
	cid := m.Options.ClientID()
	if len(relays) == 0 {
		return client6{peer: peer, mac: clientMAC(cid, peer)}
	}
	r := relays[len(relays)-1]
	c := client6{peer: &net.UDPAddr{IP: r.PeerAddr}}
	c.mac = clientMAC(cid, nil)
	if c.mac == nil {
		if ht, lla := r.Options.ClientLinkLayerAddress(); ht == iana.HWTypeEthernet && len(lla) == 6 {
			c.mac = slices.Clone(lla)
		}
	}
	if c.mac == nil {
		c.mac = clientMAC(cid, c.peer)
	}
	if link, ok := netip.AddrFromSlice(r.LinkAddr); ok {
		link = link.Unmap()
		global := link.IsGlobalUnicast() && !link.IsLinkLocalUnicast()
		c.offLink = global && !netip.PrefixFrom(s.cfg.Start, 64).Masked().Contains(link)
	}
	return c
}

// relayReply6 wraps reply in a Relay-reply for each Relay-forward of
// relays (outermost first), each with the hop count, link-address and
// peer-address of its Relay-forward, and its Interface-ID option (RFC
// 8415 sections 19.3 and 21.18) and Relay Source Port option (RFC 8357)
// when it had them.
func relayReply6(relays []*dhcpv6.RelayMessage, reply *dhcpv6.Message) *dhcpv6.RelayMessage {
	var inner dhcpv6.DHCPv6 = reply
	var out *dhcpv6.RelayMessage
	for i := len(relays) - 1; i >= 0; i-- {
		f := relays[i]
		out = &dhcpv6.RelayMessage{MessageType: dhcpv6.MessageTypeRelayReply, HopCount: f.HopCount,
			LinkAddr: slices.Clone(f.LinkAddr), PeerAddr: slices.Clone(f.PeerAddr)}
		for _, code := range []dhcpv6.OptionCode{dhcpv6.OptionInterfaceID, dhcpv6.OptionRelayPort} {
			if o := f.GetOneOption(code); o != nil {
				out.AddOption(o)
			}
		}
		out.AddOption(dhcpv6.OptRelayMessage(inner))
		inner = out
	}
	return out
}

// errNotForUs marks messages this server must not answer: another
// server's, or malformed for their type (RFC 8415 section 16).
var errNotForUs = errors.New("not for this server")

func (s *Server6) reply(ctx context.Context, m *dhcpv6.Message, c client6) (*dhcpv6.Message, error) {
	cid := m.Options.ClientID()
	sid := m.Options.ServerID()
	ours := sid != nil && sid.Equal(s.serverID)
	switch t := m.Type(); t {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		if cid == nil || sid != nil {
			return nil, fmt.Errorf("%s with no client ID or with a server ID: %w", t, errNotForUs)
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if cid == nil || !ours {
			return nil, fmt.Errorf("%s with no client ID or for another server (%v): %w", t, sid, errNotForUs)
		}
	case dhcpv6.MessageTypeInformationRequest:
		// RFC 8415 section 16.12: discarded when it carries an IA option.
		hasIA := m.GetOneOption(dhcpv6.OptionIANA) != nil || m.GetOneOption(dhcpv6.OptionIATA) != nil || m.GetOneOption(dhcpv6.OptionIAPD) != nil
		if sid != nil && !ours || hasIA {
			return nil, fmt.Errorf("%s for another server or with an IA: %w", t, errNotForUs)
		}
	default:
		return nil, fmt.Errorf("message type %s: %w", t, errNotForUs)
	}

	typ := dhcpv6.MessageTypeReply
	if m.Type() == dhcpv6.MessageTypeSolicit && m.GetOneOption(dhcpv6.OptionRapidCommit) == nil {
		typ = dhcpv6.MessageTypeAdvertise
	}
	out := &dhcpv6.Message{MessageType: typ, TransactionID: m.TransactionID}
	if cid != nil {
		out.AddOption(dhcpv6.OptClientID(cid))
	}
	out.AddOption(dhcpv6.OptServerID(s.serverID))

	mac := c.mac
	var ips []string
	switch m.Type() {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		if m.Type() == dhcpv6.MessageTypeSolicit && len(m.Options.IANA()) == 0 {
			// No IA_NA (this server gives nothing else): its Request
			// would get no address either, so, as RFC 3315 section
			// 17.2.2 says (RFC 8415 section 18.3.9 keeps it for a client
			// that gets no address in any IA), only NoAddrsAvail and the
			// IDs. RFC 8415 section 18.2.9: the client ignores such an
			// Advertise.
			if typ == dhcpv6.MessageTypeReply {
				out.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
			}
			out.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "no IA_NA: this server gives addresses only"})
			return s.logged(m, out, Request{MAC: mac}, Answer{}, ips), nil
		}
		if typ == dhcpv6.MessageTypeAdvertise {
			// RFC 8415 section 18.2.1: 255 makes the client take this
			// advertise at once rather than wait for others.
			out.AddOption(dhcpv6.OptPreference(255))
		} else if m.Type() == dhcpv6.MessageTypeSolicit {
			out.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
		}
		ias, err := s.bindAll(m.Type(), typ, cid, c, m.Options.IANA())
		if err != nil {
			return nil, err
		}
		for _, o := range ias {
			out.AddOption(o)
			if a := o.Options.OneAddress(); a != nil {
				ips = append(ips, a.IPv6Addr.String())
			}
		}
	case dhcpv6.MessageTypeConfirm:
		// RFC 8415 section 18.3.3: are the client's addresses on this
		// link? Without any, no reply.
		status, n := s.confirm(m)
		if n == 0 {
			return nil, fmt.Errorf("confirm without addresses: %w", errNotForUs)
		}
		out.AddOption(status)
		return s.logged(m, out, Request{MAC: mac}, Answer{}, ips), nil
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		unknown, err := s.release(m.Type(), cid, m.Options.IANA())
		if err != nil {
			return nil, err
		}
		for _, o := range unknown {
			out.AddOption(o)
		}
		out.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
		return s.logged(m, out, Request{MAC: mac}, Answer{}, ips), nil
	}

	if len(s.cfg.DNS) > 0 {
		dns := make([]net.IP, len(s.cfg.DNS))
		for i, d := range s.cfg.DNS {
			dns[i] = d.AsSlice()
		}
		out.AddOption(dhcpv6.OptDNS(dns...))
	}

	r, err := parseRequest6(m, c.peer, s.cfg.Interface)
	r.MAC = mac
	if err != nil {
		// Not a network boot client: the address alone.
		s.log.Debug("dhcpv6 no boot answer", "mac", r.MAC.String(), "err", err)
		return s.logged(m, out, r, Answer{}, ips), nil
	}
	a, err := s.booter.Boot(ctx, r)
	if err != nil {
		s.log.Warn("dhcpv6 booter failed, answering without a boot file", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return s.logged(m, out, r, Answer{}, ips), nil
	}
	if a.IsZero() {
		return s.logged(m, out, r, a, ips), nil
	}
	u, err := bootURL6(r, a, s.cfg.ServerIP)
	if err != nil {
		s.log.Warn("dhcpv6 boot answer unusable, answering without it", "mac", r.MAC.String(), "arch", r.Arch, "err", err)
		return s.logged(m, out, r, Answer{}, ips), nil
	}
	if r.IsHTTPClient() {
		out.AddOption(&dhcpv6.OptVendorClass{EnterpriseNumber: EnterpriseIntel, Data: [][]byte{[]byte(ClassHTTP)}})
	}
	// Last, on purpose: EDK2's HTTP Boot reads option 59 as a
	// NUL-terminated string (AsciiStrLen on the option's data), so an
	// option after it would run into the URL; what follows the last
	// option in its buffer is zero.
	out.AddOption(dhcpv6.OptBootFileURL(u))
	return s.logged(m, out, r, Answer{URL: u}, ips), nil
}

func (s *Server6) logged(m, out *dhcpv6.Message, r Request, a Answer, ips []string) *dhcpv6.Message {
	s.log.Info("dhcpv6 answer", "type", out.Type(), "to", m.Type(), "mac", r.MAC.String(), "arch", r.Arch,
		"userclass", r.UserClass, "iface", s.cfg.Interface, "ip", strings.Join(ips, ","), "url", a.URL)
	return out
}

// bindAll answers the IA_NAs ias of one message of type req from client
// cid (c) with a reply of type reply: an IA_NA for each, with its address
// or a status (bind). The error is the store's.
func (s *Server6) bindAll(req, reply dhcpv6.MessageType, cid dhcpv6.DUID, c client6, ias []*dhcpv6.OptIANA) ([]*dhcpv6.OptIANA, error) {
	if len(ias) == 0 {
		return nil, nil
	}
	if c.offLink {
		out := make([]*dhcpv6.OptIANA, len(ias))
		for i, ia := range ias {
			if req == dhcpv6.MessageTypeRenew || req == dhcpv6.MessageTypeRebind {
				out[i] = iaStatus6(ia.IaId, iana.StatusNoBinding, "no binding on this link")
			} else {
				out[i] = iaStatus6(ia.IaId, iana.StatusNoAddrsAvail, "no address pool for this link")
			}
		}
		return out, nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := loadLeases6(s.leases)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out := make([]*dhcpv6.OptIANA, 0, len(ias))
	for i, ia := range ias {
		if i >= maxIAs6 {
			out = append(out, iaStatus6(ia.IaId, iana.StatusNoAddrsAvail, "too many IA_NAs in one message"))
			continue
		}
		o, err := s.bind(v, req, reply, cid, c.mac, ia, now)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func iaStatus6(iaid [4]byte, code iana.StatusCode, msg string) *dhcpv6.OptIANA {
	o := &dhcpv6.OptIANA{IaId: iaid}
	o.Options.Add(&dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: msg})
	return o
}

func iaKeyOf(cid dhcpv6.DUID, iaid [4]byte) iaKey6 {
	return iaKey6{duid: string(cid.ToBytes()), iaid: binary.BigEndian.Uint32(iaid[:])}
}

// bind gives the IA ia of client cid an address, or says why not, in an
// IA_NA for the reply. A Solicit's address is held for offerHold6, a
// Request's (or a rapid-commit Solicit's), a Renew's and a Rebind's for
// the lease time. An IA new to v from a hardware address whose lease is
// another DUID's takes that lease over (see Server6). s.mu is held.
func (s *Server6) bind(v *leaseView6, req, reply dhcpv6.MessageType, cid dhcpv6.DUID, mac net.HardwareAddr, ia *dhcpv6.OptIANA, now time.Time) (*dhcpv6.OptIANA, error) {
	lt := s.cfg.LeaseTime
	key := iaKeyOf(cid, ia.IaId)
	renew := req == dhcpv6.MessageTypeRenew || req == dhcpv6.MessageTypeRebind
	var hint netip.Addr
	if a := ia.Options.OneAddress(); a != nil {
		hint, _ = netip.AddrFromSlice(a.IPv6Addr)
		hint = hint.Unmap()
	}
	if _, ok := v.byKey[key]; !ok && len(mac) > 0 {
		if l, ok := s.machineLease(v, key, mac); ok {
			// Put replaces the other IA's lease of the address.
			l.DUID, l.IAID, l.MAC = []byte(key.duid), key.iaid, slices.Clone(mac)
			if err := v.put(l); err != nil {
				return nil, fmt.Errorf("move lease of %v: %w", l.IP, err)
			}
		}
	}
	addr, ok := s.pick(v, key, hint, now, renew)
	if !ok {
		if renew {
			return iaStatus6(ia.IaId, iana.StatusNoBinding, "no binding for this IA"), nil
		}
		return iaStatus6(ia.IaId, iana.StatusNoAddrsAvail, "no address free in the pool"), nil
	}
	hold := lt
	prev, had := v.byKey[key]
	if reply == dhcpv6.MessageTypeAdvertise {
		hold = offerHold6
		if had && prev.IP == addr && prev.Expires.After(now.Add(hold)) {
			hold = prev.Expires.Sub(now)
		}
	}
	l := Lease6{DUID: []byte(key.duid), IAID: key.iaid, IP: addr, Expires: now.Add(hold), MAC: slices.Clone(mac)}
	if len(l.MAC) == 0 && had {
		l.MAC = prev.MAC
	}
	if err := v.put(l); err != nil {
		return nil, fmt.Errorf("lease %v: %w", addr, err)
	}
	out := &dhcpv6.OptIANA{IaId: ia.IaId, T1: lt / 2, T2: lt * 4 / 5}
	out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: addr.AsSlice(), PreferredLifetime: lt, ValidLifetime: lt})
	return out, nil
}

// machineLease is the lease a new IA key from hardware address mac takes
// over: one of mac's under another DUID (a previous boot stage's), in
// the pool; the latest to expire. s.mu is held.
func (s *Server6) machineLease(v *leaseView6, key iaKey6, mac net.HardwareAddr) (Lease6, bool) {
	var best Lease6
	found := false
	for k, l := range v.byKey {
		if k.duid == key.duid || !bytes.Equal(l.MAC, mac) || !s.inPool(l.IP) {
			continue
		}
		if !found || l.Expires.After(best.Expires) || l.Expires.Equal(best.Expires) && l.IP.Less(best.IP) {
			best, found = l, true
		}
	}
	return best, found
}

// pick chooses key's address: its lease's, else the client's hint when
// free, else (unless renewing, which needs a binding or the hint) the
// first free address of the pool. s.mu is held.
func (s *Server6) pick(v *leaseView6, key iaKey6, hint netip.Addr, now time.Time, renew bool) (netip.Addr, bool) {
	if l, ok := v.byKey[key]; ok && s.inPool(l.IP) && s.free(v, l.IP, key, now) {
		return l.IP, true
	}
	if hint.IsValid() && s.inPool(hint) && s.free(v, hint, key, now) {
		return hint, true
	}
	if renew {
		return netip.Addr{}, false
	}
	for a, n := s.cfg.Start, 0; n < maxPool6 && !s.cfg.End.Less(a); a, n = a.Next(), n+1 {
		if s.free(v, a, key, now) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (s *Server6) inPool(a netip.Addr) bool {
	return a.Is6() && !a.Less(s.cfg.Start) && !s.cfg.End.Less(a)
}

// free reports whether a may go to key: no other IA holds it unexpired
// and no client declined it lately. s.mu is held.
func (s *Server6) free(v *leaseView6, a netip.Addr, key iaKey6, now time.Time) bool {
	if until, ok := s.declined[a]; ok {
		if now.Before(until) {
			return false
		}
		delete(s.declined, a)
	}
	other, ok := v.byAddr[a]
	if !ok || other == key {
		return true
	}
	return !v.byKey[other].Expires.After(now)
}

// release ends the bindings of a Release, or of a Decline, whose
// addresses then stay out of the pool for declineHold6: an IA's lease
// ends when the message names its address; other addresses are ignored
// (RFC 8415 sections 18.3.7 and 18.3.8). It returns, for the reply, an
// IA_NA with status NoBinding for each IA the server has no lease of.
func (s *Server6) release(t dhcpv6.MessageType, cid dhcpv6.DUID, ias []*dhcpv6.OptIANA) ([]*dhcpv6.OptIANA, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var unknown []*dhcpv6.OptIANA
	for _, ia := range ias {
		key := iaKeyOf(cid, ia.IaId)
		l, ok, err := s.leases.Get([]byte(key.duid), key.iaid)
		if err != nil {
			return nil, fmt.Errorf("lease: %w", err)
		}
		if !ok {
			unknown = append(unknown, iaStatus6(ia.IaId, iana.StatusNoBinding, "no binding for this IA"))
			continue
		}
		for _, o := range ia.Options.Addresses() {
			a, ok := netip.AddrFromSlice(o.IPv6Addr)
			if !ok || a.Unmap() != l.IP {
				continue
			}
			if t == dhcpv6.MessageTypeDecline && s.inPool(l.IP) {
				s.declined[l.IP] = now.Add(declineHold6)
			}
			if err := s.leases.Delete([]byte(key.duid), key.iaid); err != nil {
				return nil, fmt.Errorf("end lease of %v: %w", l.IP, err)
			}
			break
		}
	}
	return unknown, nil
}

// confirm answers a Confirm: Success when every address is in the pool's
// /64, NotOnLink otherwise; n is the number of addresses.
func (s *Server6) confirm(m *dhcpv6.Message) (*dhcpv6.OptStatusCode, int) {
	link := netip.PrefixFrom(s.cfg.Start, 64).Masked()
	n, on := 0, true
	for _, ia := range m.Options.IANA() {
		for _, o := range ia.Options.Addresses() {
			n++
			a, ok := netip.AddrFromSlice(o.IPv6Addr)
			if !ok || !link.Contains(a.Unmap()) {
				on = false
			}
		}
	}
	if !on {
		return &dhcpv6.OptStatusCode{StatusCode: iana.StatusNotOnLink, StatusMessage: "not on this link"}, n
	}
	return &dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess}, n
}

// parseRequest6 reads what a DHCPv6 network boot client says about
// itself (RFC 5970): option 61, client architecture; 15, user class
// ("iPXE"); 16, vendor class ("PXEClient:Arch:..." or "HTTPClient:..."
// under any enterprise number). The MAC comes from a DUID-LL or DUID-LLT
// or else from peer's EUI-64 link-local address; UUID from a DUID-UUID
// (iPXE's). It fails with ErrNotNetboot for other clients, returning the
// MAC all the same.
func parseRequest6(m *dhcpv6.Message, peer *net.UDPAddr, ifname string) (Request, error) {
	cid := m.Options.ClientID()
	r := Request{MAC: clientMAC(cid, peer), Interface: ifname, Arch: archUnspecified}
	var uc []string
	for _, c := range m.Options.UserClasses() {
		uc = append(uc, string(c))
	}
	r.UserClass = strings.Join(uc, ",")
	var vcArch Arch
	var vcHasArch bool
	for _, vc := range m.Options.VendorClasses() {
		for _, d := range vc.Data {
			if class, a, has := parseVendorClass(string(d)); class != "" && r.VendorClass == "" {
				r.VendorClass, vcArch, vcHasArch = string(d), a, has
			}
		}
	}
	if archs := m.Options.ArchTypes(); len(archs) > 0 {
		r.Arch = Arch(archs[0])
	} else if vcHasArch {
		r.Arch = vcArch
	}
	if u, ok := cid.(*dhcpv6.DUIDUUID); ok {
		h := hex.EncodeToString(u.UUID[:])
		r.UUID = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	if r.VendorClass == "" && !r.IsIPXE() {
		return r, fmt.Errorf("vendor class %q, user class %q: %w", r.VendorClass, r.UserClass, ErrNotNetboot)
	}
	return r, nil
}

// clientMAC is the MAC in a DUID-LL or DUID-LLT, else the one in peer's
// modified EUI-64 interface identifier (RFC 4291 appendix A) when its
// address is link-local and has one, else nil.
func clientMAC(cid dhcpv6.DUID, peer *net.UDPAddr) net.HardwareAddr {
	switch d := cid.(type) {
	case *dhcpv6.DUIDLL:
		if len(d.LinkLayerAddr) == 6 {
			return slices.Clone(d.LinkLayerAddr)
		}
	case *dhcpv6.DUIDLLT:
		if len(d.LinkLayerAddr) == 6 {
			return slices.Clone(d.LinkLayerAddr)
		}
	}
	if peer == nil {
		return nil
	}
	ip := peer.IP.To16()
	if ip == nil || !ip.IsLinkLocalUnicast() || ip.To4() != nil || ip[11] != 0xff || ip[12] != 0xfe {
		return nil
	}
	return net.HardwareAddr{ip[8] ^ 2, ip[9], ip[10], ip[13], ip[14], ip[15]}
}

// bootURL6 is option 59 for a, checked against the client r: a URL as
// is (http or https, for iPXE and HTTP Boot clients), a TFTP file as
// tftp://[server]/file (RFC 5970 section 3.1), the server being a's
// TFTPServer or else serverIP.
func bootURL6(r Request, a Answer, serverIP netip.Addr) (string, error) {
	switch {
	case a.File != "" && a.URL != "":
		return "", errors.New("answer has both a TFTP file and a URL")
	case a.File != "":
		if r.IsHTTPClient() {
			return "", fmt.Errorf("TFTP file %q for a UEFI HTTP Boot client, which needs a URL", a.File)
		}
		srv := a.TFTPServer
		if !srv.IsValid() {
			srv = serverIP
		}
		if !srv.Is6() || srv.Is4In6() {
			return "", fmt.Errorf("TFTP server %v of %q is not IPv6", srv, a.File)
		}
		u := url.URL{Scheme: "tftp", Host: "[" + srv.String() + "]", Path: "/" + strings.TrimPrefix(a.File, "/")}
		return u.String(), nil
	case a.URL != "":
		u, err := url.Parse(a.URL)
		if err != nil {
			return "", fmt.Errorf("answer's URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return "", fmt.Errorf("answer's URL %q is not an http or https URL", a.URL)
		}
		if strings.IndexByte(a.URL, 0) >= 0 {
			return "", errors.New("answer's URL has a NUL byte")
		}
		if !r.IsIPXE() && !r.IsHTTPClient() {
			return "", fmt.Errorf("URL %q for a client that is neither iPXE nor a UEFI HTTP Boot client: it can only use TFTP", a.URL)
		}
		return a.URL, nil
	}
	return "", errors.New("answer has neither a TFTP file nor a URL")
}
