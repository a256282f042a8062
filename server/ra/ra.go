package ra

import (
	"net"
	"time"
)

// ICMPv6 types (RFC 4861 section 4).
const (
	typeRouterSolicitation  = 133
	typeRouterAdvertisement = 134
	optSourceLinkLayer      = 1
)

// MinInterval is the least time between two advertisements
// (MIN_DELAY_BETWEEN_RAS, RFC 4861 section 10): solicitations that come
// sooner are not answered again.
const MinInterval = 3 * time.Second

// Quiet is the router advertisement this package sends, from the
// interface whose hardware address is mac (as its source link-layer
// address option; none when mac is not 6 bytes): hop limit, flags, router
// lifetime, reachable time and retransmission timer all 0, which says
// "not a router, nothing to configure here". The kernel fills in the
// checksum.
func Quiet(mac net.HardwareAddr) []byte {
	b := make([]byte, 16, 24)
	b[0] = typeRouterAdvertisement
	if len(mac) == 6 {
		b = append(b, optSourceLinkLayer, 1)
		b = append(b, mac...)
	}
	return b
}

// IsSolicitation reports whether b (an ICMPv6 message) is a router
// solicitation: type 133, code 0, at least its 8 bytes, and every option
// a whole number of 8-byte units (RFC 4861 section 6.1.1's checks that
// need no IP header).
func IsSolicitation(b []byte) bool {
	if len(b) < 8 || b[0] != typeRouterSolicitation || b[1] != 0 {
		return false
	}
	for opts := b[8:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return false
		}
		opts = opts[int(opts[1])*8:]
	}
	return true
}
