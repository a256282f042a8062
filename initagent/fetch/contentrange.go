package fetch

import (
	"fmt"
	"strings"
)

// contentRange is a parsed Content-Range header (RFC 9110 section 14.4),
// the agent's one parser of it: Fetch checks a resumed download's with it,
// a RangeReader every answer's.
//
//	Content-Range     = range-unit SP ( range-resp / unsatisfied-range )
//	range-resp        = incl-range "/" ( complete-length / "*" )
//	incl-range        = first-pos "-" last-pos
//	unsatisfied-range = "*/" complete-length
type contentRange struct {
	First, Last int64 // inclusive; both -1 for an unsatisfied range ("bytes */N")
	Total       int64 // complete length; -1 when the server sent "*"
}

func (c contentRange) String() string {
	total := "*"
	if c.Total >= 0 {
		total = fmt.Sprint(c.Total)
	}
	if c.First < 0 {
		return "bytes */" + total
	}
	return fmt.Sprintf("bytes %d-%d/%s", c.First, c.Last, total)
}

// parseContentRange parses a bytes Content-Range. It is strict: positions
// are plain decimal digits (no sign, no spaces), first <= last, and last is
// below a known complete length, so a satisfied range names at least one
// byte inside the representation.
func parseContentRange(s string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, fmt.Errorf("bad Content-Range %q: %s", s, why)
	}
	unit, rest, ok := strings.Cut(s, " ")
	if !ok || !strings.EqualFold(unit, "bytes") { // range units are case-insensitive (RFC 9110 14.1)
		return bad("want bytes FIRST-LAST/TOTAL")
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no /TOTAL")
	}
	cr := contentRange{Total: -1}
	if total != "*" {
		n, ok := decimal(total)
		if !ok {
			return bad("total is not a number")
		}
		cr.Total = n
	}
	if span == "*" {
		if cr.Total < 0 {
			return bad("*/* names nothing")
		}
		cr.First, cr.Last = -1, -1
		return cr, nil
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return bad("no FIRST-LAST")
	}
	first, ok1 := decimal(a)
	last, ok2 := decimal(b)
	if !ok1 || !ok2 {
		return bad("positions are not numbers")
	}
	if last < first {
		return bad("last before first")
	}
	if cr.Total >= 0 && last >= cr.Total {
		return bad("range beyond the total")
	}
	cr.First, cr.Last = first, last
	return cr, nil
}

// decimal parses 1*DIGIT of at most 18 digits, so it cannot overflow an
// int64 (the RFC has no bound; no image is an exabyte).
func decimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
