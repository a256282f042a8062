package tftp

import (
	"strconv"
	"time"
)

// Limits of the options, from their RFCs.
const (
	minBlockSize   = 8     // RFC 2348
	maxBlockSize   = 65464 // RFC 2348
	maxWindowSize  = 65535 // RFC 7440
	defaultBlkSize = 512   // RFC 1350, when blksize is not negotiated
	// maxClientTimeout is the longest timeout option (RFC 2349 allows up
	// to 255 s) the server accepts: with Retries retransmissions a client
	// that vanished would hold a transfer slot for minutes. A longer one
	// is ignored, as RFC 2347 lets a server ignore any option, and the
	// client keeps its default.
	maxClientTimeout = 10
)

// limits are the server's side of a negotiation.
type limits struct {
	maxBlockSize  int
	maxWindowSize int
	timeout       time.Duration // used when the client asks for none
}

// params are a transfer's negotiated parameters.
type params struct {
	blockSize  int
	windowSize int
	timeout    time.Duration
}

// negotiate decides a transfer's parameters from the request's options,
// the server's limits and the file's size (-1 if unknown), and returns
// the options to acknowledge in an OACK, in the order the client sent
// them. No OACK (nil) means the transfer starts with DATA 1 and RFC
// 1350's defaults. Options we do not know, or whose values we refuse, are
// left out rather than echoed: RFC 2347 says a server ignores an option
// it does not support, and the client then assumes its default.
func negotiate(opts []Option, lim limits, size int64) (params, []Option) {
	p := params{blockSize: defaultBlkSize, windowSize: 1, timeout: lim.timeout}
	var oack []Option
	for _, o := range opts {
		switch o.Name {
		case "blksize":
			// RFC 2348: 8..65464; the server may answer less than asked,
			// never more.
			v, ok := decimal(o.Value)
			if !ok || v < minBlockSize {
				continue
			}
			p.blockSize = min(v, lim.maxBlockSize, maxBlockSize)
			oack = append(oack, Option{Name: "blksize", Value: strconv.Itoa(p.blockSize)})
		case "tsize":
			// RFC 2349: in an RRQ the client sends 0 and the server
			// answers the file's size.
			if _, ok := decimal(o.Value); !ok || size < 0 {
				continue
			}
			oack = append(oack, Option{Name: "tsize", Value: strconv.FormatInt(size, 10)})
		case "timeout":
			// RFC 2349: 1..255 seconds, accepted as asked or not at all.
			v, ok := decimal(o.Value)
			if !ok || v < 1 || v > maxClientTimeout {
				continue
			}
			p.timeout = time.Duration(v) * time.Second
			oack = append(oack, Option{Name: "timeout", Value: strconv.Itoa(v)})
		case "windowsize":
			// RFC 7440: 1..65535; the server may answer less.
			v, ok := decimal(o.Value)
			if !ok || v < 1 || lim.maxWindowSize < 1 {
				continue
			}
			p.windowSize = min(v, lim.maxWindowSize, maxWindowSize)
			oack = append(oack, Option{Name: "windowsize", Value: strconv.Itoa(p.windowSize)})
		}
	}
	return p, oack
}

// decimal parses an option's value: ASCII digits only (strconv.Atoi
// would take a sign), at most 9 of them so it fits any int.
func decimal(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
