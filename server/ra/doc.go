// Package ra answers IPv6 router solicitations with a router advertisement
// that configures nothing (RFC 4861 section 4.2: router lifetime 0, so
// not a default router; no prefix, so no addresses; neither M nor O, so no
// DHCPv6). It is for IPv4 LANs without IPv6 routers, where a UEFI iPXE
// (Debian's ipxe.efi) waits for an advertisement about 15 s before it runs
// its script: one answer ends the wait. It is off unless the configuration
// names an interface ([server] quiet-ra), and never on one where another
// router advertises (hosts take the M and O flags of the latest
// advertisement).
//
// The advertisement and the solicitation's check are pure (ra.go); the
// socket is Linux's raw ICMPv6 (listen_linux.go).
package ra
