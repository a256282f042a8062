package server

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// maxRanges is the most byte ranges one request may ask for. A client
// resuming a download or reading a lazy root asks for one; 16 leaves room
// for a reader that batches a few.
const maxRanges = 16

// byteRange is one range of a Range header, resolved against the size of
// the content: [start, end).
type byteRange struct{ start, end int64 }

// checkRanges decides whether the Range header h (its value) may be served
// for content of size bytes. It refuses (with the reason) more than
// maxRanges ranges, and more than 2 ranges that overlap or are not in
// ascending order: http.ServeContent would otherwise answer them with a
// multipart body many times the size of the content: each range costs a
// part header of ~100 bytes, and ServeContent's own guard (it ignores
// ranges whose lengths add up to more than the content) lets through any
// number of small ones. nginx and Apache likewise refuse or merge such
// sets.
//
// A header checkRanges cannot parse is not refused here: it is left to
// http.ServeContent, which ignores it or answers 416, as RFC 9110 says.
// The parse accepts at least all that ServeContent's does (the same
// trimming, the same numbers, empty list elements skipped), so nothing
// ServeContent would serve as several ranges escapes the check.
func checkRanges(h string, size int64) error {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil
	}
	var rs []byteRange
	n := 0
	for el := range strings.SplitSeq(spec, ",") {
		el = textproto.TrimString(el)
		if el == "" {
			continue
		}
		r, satisfiable, ok := parseByteRange(el, size)
		if !ok {
			return nil
		}
		n++
		if satisfiable {
			rs = append(rs, r)
		}
	}
	if n > maxRanges {
		return fmt.Errorf("%d ranges asked for: at most %d are served", n, maxRanges)
	}
	if n <= 2 {
		return nil
	}
	for i := 1; i < len(rs); i++ {
		if p, r := rs[i-1], rs[i]; r.start <= p.start || r.start < p.end {
			return fmt.Errorf("%d ranges that overlap or are not in ascending order (bytes %d-%d after %d-%d): more than 2 ranges are served only in ascending order, apart",
				n, r.start, r.end-1, p.start, p.end-1)
		}
	}
	return nil
}

// parseByteRange parses one element of a Range header's list, as
// http.ServeContent does: "a-b", "a-" or "-n" (suffix), numbers parsed
// by strconv.ParseInt. A range that starts at or past the end of the
// content is not satisfiable (ServeContent skips it).
func parseByteRange(el string, size int64) (r byteRange, satisfiable, ok bool) {
	first, last, ok := strings.Cut(el, "-")
	if !ok {
		return r, false, false
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	if first == "" {
		if last == "" || last[0] == '-' {
			return r, false, false
		}
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return r, false, false
		}
		return byteRange{size - min(n, size), size}, true, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return r, false, false
	}
	end := size
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || a > b {
			return r, false, false
		}
		end = min(b, size-1) + 1
	}
	if a >= size {
		return r, false, true
	}
	return byteRange{a, end}, true, true
}

// refuseRanges answers 416 Range Not Satisfiable, with why, and reports
// true when checkRanges refuses the request's Range header for content of
// size bytes. A request whose If-Range surely does not match (etag and
// modtime are the response's; http.ServeContent then sends the whole
// content and ignores Range) is not refused; an If-Range that may match is
// taken as matching.
func refuseRanges(w http.ResponseWriter, r *http.Request, size int64, etag string, modtime time.Time) bool {
	h := r.Header.Get("Range")
	if h == "" || !ifRangeMayMatch(r, etag, modtime) {
		return false
	}
	err := checkRanges(h, size)
	if err == nil {
		return false
	}
	w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	http.Error(w, "range not satisfiable: "+err.Error(), http.StatusRequestedRangeNotSatisfiable)
	return true
}

// ifRangeMayMatch says whether http.ServeContent may honour the request's
// Range, as far as its If-Range goes: it ignores Range when If-Range names
// another entity tag or another date (RFC 9110 §13.1.5). It errs on the
// side of true.
func ifRangeMayMatch(r *http.Request, etag string, modtime time.Time) bool {
	ir := r.Header.Get("If-Range")
	if ir == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return true
	}
	ir = textproto.TrimString(ir)
	if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, `W/"`) {
		// ServeContent matches an entity tag strongly: only ours, as is.
		return etag != "" && strings.HasPrefix(ir, etag)
	}
	t, err := http.ParseTime(ir)
	return err != nil || modtime.IsZero() || t.Unix() == modtime.Unix()
}
