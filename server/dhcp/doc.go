// Package dhcp is the DHCP side of PXE booting: it tells network boot
// firmware, and iPXE after it, what to download. The server wires it; a
// Booter the server provides decides, per client, the answer: a TFTP
// file or a URL (Policy is a default: iPXE binaries by architecture, the
// script URL to iPXE).
//
//	Proxy{ServerIP, Interface, Booter}.Serve(ctx, conn)        port 67
//	Proxy{...}.ServeBootServer(ctx, conn)                       port 4011
//	NewFull(FullConfig, Leases, Booter, log).Serve(ctx, conn)   port 67
//	NewServer6(Config6, Booter, log).Serve(ctx, conn)           port 547 (IPv6)
//
// Two modes, one or the other on each interface, never both: two DHCP
// answers to one DISCOVER from the same host confuse firmware.
//
//   - ProxyDHCP (Proxy, PXE 2.1 section 2.2.3, RFC 4578) where the site
//     has a DHCP server: it never hands out addresses. It answers only
//     DHCPDISCOVERs whose option 60 starts with "PXEClient" or
//     "HTTPClient", with an offer without an address that carries the
//     boot answer (see ProxyReply, the pure reply builder), and the PXE
//     boot server requests on port 4011 with an ACK of the same.
//   - Full DHCP (Full, RFC 2131) on an isolated network that has no DHCP
//     server: addresses from a pool or reservations, router and DNS
//     options, leases kept through the Leases interface (MemLeases in
//     memory; the server backs it with its store; Full keeps the table
//     in memory, see table4.go, and writes it in batches, see batch.go:
//     an OFFER or ACK leaves once its lease is stored), DECLINE (with our
//     server identifier, from the client the address is leased or
//     offered to) and RELEASE honoured, and the same boot answer in the
//     OFFER and ACK of boot clients. Run Proxy.ServeBootServer beside it
//     for firmware that asks on port 4011. Reservations are by MAC
//     (chaddr, 6 or 8 bytes; other clients are ignored). An offer holds
//     its address for ten seconds; a quarter of the pool at most (256)
//     is held by offers at once, half of that per relay or interface,
//     and MACs never seen get holds at a bounded rate (see offers4.go):
//     an offer beyond holds nothing, so DISCOVERs from made-up MACs
//     cannot use up the pool. A REQUEST naming another server withdraws
//     only an offer not yet taken, never a lease. Replies go where RFC
//     2131 section 4.1 says (the relay, else ciaddr, else broadcast),
//     never to the datagram's source address.
//
// And for IPv6, Server6 (RFC 8415 DHCPv6, RFC 5970 network boot
// options) on an isolated network: addresses from a pool in one /64
// (IA_NA; an address is one DUID and IAID's at a time; leases kept
// through the Leases6 interface, MemLeases6 in memory, the server backs
// it with its store), and to boot clients option 59, the boot file URL,
// from the same Booter: iPXE (user class option 15 "iPXE") the script, a
// UEFI HTTP Boot client (option 16 "HTTPClient", option 61 arch 16) an
// http URL with option 16 "HTTPClient" back, a UEFI PXE client a
// tftp://[server]/file URL. It sends no router advertisements: the
// network's router must (M flag, the /64 on-link).
//
// The caller opens the sockets: ListenInterface (Linux) binds a broadcast
// socket to one interface (SO_BINDTODEVICE), ListenInterface6 an IPv6
// one that has joined ff02::1:2 there; ports 67 and 547 need
// CAP_NET_BIND_SERVICE. Serve reads packets into a bounded queue (the
// oldest dropped when full, any dropped after a second: see serve.go),
// handles them concurrently and returns when its context ends. Logging is log/slog: packets that are not ours
// or malformed at Debug, answers at Info, store and Booter failures at
// Warn.
//
// Not done: Full does not ping or ARP an address before offering it
// (RFC 2131 section 2.2 suggests it): an address some other host took
// by hand is offered anyway, and the client's DHCPDECLINE then takes it
// out of the pool for ten minutes, a mark kept in Leases (a restart
// keeps it; Server6's declined addresses are kept in memory only).
// Clients that go through the whole exchange from made-up MACs still
// take an address each for a lease time: DHCP cannot tell them from
// real ones. Server6 answers relayed messages (Relay-forward, RFC 8415
// section 19) with a Relay-reply, but from its one pool: a client whose
// closest relay names a link outside the pool's /64 gets no address. It
// answers no IA_TA or IA_PD, and has no ProxyDHCP mode beside a site's
// DHCPv6 server. No option overload (RFC 2131 option 52), no failover
// protocol between servers (several Fulls may share one store instead:
// the store arbitrates each address, see refresh.go), no relay-agent
// specific policy (option 82 is echoed, nothing more).
package dhcp
