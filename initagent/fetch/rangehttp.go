package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// open sends the first request, a Range GET of the first chunk, and
// learns the image's size and validators from it. It returns the first
// chunk, or nil when the answer was a shorter prefix of it.
func (r *RangeReader) open() (*buffer, error) {
	var chunk0 *buffer
	err := r.retry(func() (bool, error) {
		a, err := r.get(0, r.cs-1)
		if err != nil {
			return false, err
		}
		defer a.end()
		resp := a.resp
		switch resp.StatusCode {
		case http.StatusPartialContent:
		case http.StatusOK:
			if resp.ContentLength == 0 {
				// ServeContent answers a Range request for an empty
				// file with 200, not 416.
				return false, Permanent(fmt.Errorf("%w: the image is empty: was it published completely?", ErrSizeMismatch))
			}
			// A cache's miss answers so too (nginx's proxy_cache
			// fetching the whole image): ask again, a few times.
			return false, malformed(fmt.Errorf("%w: HTTP 200 with the whole image for bytes=0-%d: lazy reading needs a server that honours Range, as overboot's /blobs/sha256/ does", ErrNoRange, r.cs-1))
		case http.StatusRequestedRangeNotSatisfiable:
			if cr, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && cr.Total == 0 {
				return false, Permanent(fmt.Errorf("%w: the image is empty: was it published completely?", ErrSizeMismatch))
			}
			return false, Permanent(fmt.Errorf("%w: HTTP %s for bytes=0-%d (Content-Range %q)", ErrSizeMismatch, resp.Status, r.cs-1, resp.Header.Get("Content-Range")))
		default:
			return false, rangeStatusError(resp)
		}
		if err := checkEncoding(resp); err != nil {
			return false, err
		}
		cr, err := parsePartial(resp)
		if err != nil {
			return false, err
		}
		if cr.Total < 0 {
			return false, Permanent(fmt.Errorf("the server does not say the image's size (Content-Range %q)", cr))
		}
		want := min(r.cs, cr.Total) - 1
		if cr.First != 0 || cr.Last > want {
			return false, malformed(fmt.Errorf("asked for bytes 0-%d of the image, got Content-Range %q", r.cs-1, cr))
		}
		if r.opt.ExpectSize > 0 && cr.Total != r.opt.ExpectSize {
			return false, Permanent(fmt.Errorf("%w: the server has %d bytes, expected %d: is the image complete on the server, and the size on the command line right?", ErrSizeMismatch, cr.Total, r.opt.ExpectSize))
		}
		if err := checkLength(resp, cr); err != nil {
			return false, err
		}
		r.size = cr.Total
		r.pin(resp)
		// The headers say all OpenRange must learn. Chunk 0 is kept
		// when the body brings it whole; after a shorter answer, or a
		// body cut short, it is read on demand.
		buf := &buffer{b: make([]byte, cr.Last+1)}
		buf.refs.Store(1)
		n, err := a.read(buf.b)
		r.stats.fetched.Add(int64(n))
		if err == nil && a.expectEOF() == nil && cr.Last == want {
			chunk0 = buf
		}
		return true, nil
	})
	return chunk0, err
}

// pin notes the validators of the image opened, which every later answer
// must carry: a strong ETag, sent as If-Match; without one the
// Last-Modified date, sent as If-Unmodified-Since (a same-size image
// replaced under a server without a strong ETag would otherwise return
// its new bytes, which dm-verity turns into bare I/O errors).
func (r *RangeReader) pin(resp *http.Response) {
	r.etag = resp.Header.Get("ETag")
	r.lastModified = resp.Header.Get("Last-Modified")
	switch {
	case r.etag != "" && !strings.HasPrefix(r.etag, "W/"):
		r.ifMatch = true
	case r.lastModified != "":
		// If-Match compares strongly (RFC 9110 13.1.1): a weak ETag
		// never matches. A date does (13.1.4); the answers' ETags are
		// compared as well.
		r.ifUnmodified = true
		r.opt.Logf("image %s: the server sends no strong ETag (%s): a change of the image on the server is detected by its Last-Modified date, %s", r.where, etagOrNone(resp), r.lastModified)
	case r.etag == "":
		r.opt.Logf("image %s: the server sends neither an ETag nor a Last-Modified date: a change of the image on the server cannot be detected", r.where)
	default:
		r.opt.Logf("image %s: the server sends a weak ETag %s and no Last-Modified date: changes are detected only after a request", r.where, r.etag)
	}
}

// run brings job j's chunks, retrying from the first byte missing. A
// correct answer shorter than asked is continued at once.
func (r *RangeReader) run(j *job) {
	next := 0
	err := r.retry(func() (bool, error) {
		progress := false
		for {
			n, grew, err := r.fetch(j, next)
			next += n
			progress = progress || n > 0 || grew
			if err != nil || next == len(j.calls) {
				return progress, err
			}
		}
	})
	if j.part != nil {
		r.bufs.release(j.part)
		j.part, j.have = nil, 0
	}
	for i := next; i < len(j.calls); i++ {
		r.complete(j.calls[i], j.first+int64(i), nil, err)
	}
	if j.prio == fill && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrProtocol)) {
		// Past Patience, every new job fails at its first attempt: the
		// fill, which makes its own jobs, must wait between them.
		r.pauseFill(fillPause)
	}
}

// pauseFill stops the fill from making jobs for d.
func (r *RangeReader) pauseFill(d time.Duration) {
	r.mu.Lock()
	r.fillPaused = true
	r.mu.Unlock()
	time.AfterFunc(d, func() {
		r.mu.Lock()
		r.fillPaused = false
		r.work.Broadcast()
		r.mu.Unlock()
	})
}

// fetch requests job j's chunks from the from-th on, less the j.have
// bytes of it held in j.part, and completes their calls as the bytes
// arrive. It returns how many it completed, and whether it added bytes to
// j.part: a body cut short, or a correct answer that ends early, leaves
// the bytes of its last chunk there, and the next request starts after
// them. (A cache of slices cuts the body where two versions of the image
// meet: the next request, past the cut, then meets the new version's
// validators and fails as ErrChanged.)
func (r *RangeReader) fetch(j *job, from int) (done int, grew bool, err error) {
	r.mu.Lock()
	fatal := r.fatal
	r.mu.Unlock()
	if fatal != nil {
		return 0, false, Permanent(fatal)
	}
	c0, cN := j.first+int64(from), j.first+int64(len(j.calls))-1
	first, last := c0*r.cs+j.have, cN*r.cs+r.chunkLen(cN)-1
	a, err := r.get(first, last)
	if err != nil {
		return 0, false, err
	}
	defer a.end()
	cr, err := r.check(a.resp, first, last)
	if err != nil {
		return 0, false, err
	}
	// Without a Content-Length (a chunked body) the length is known only
	// at its end: hold the chunks back until then.
	hold := a.resp.ContentLength < 0
	var held []*buffer
	var tail *buffer // the last chunk's bytes when the answer ends inside it
	var tailHave int64
	defer func() {
		for _, b := range held {
			r.bufs.release(b)
		}
		if tail != nil {
			r.bufs.release(tail)
		}
	}()
	pos := first // the next byte of the image the body brings
	for i := from; i < len(j.calls) && pos <= cr.Last; i++ {
		c := j.first + int64(i)
		start, n := c*r.cs, r.chunkLen(c)
		buf, have := j.part, j.have
		if i != from || buf == nil {
			buf, have = r.bufs.get(n), 0
		}
		j.part, j.have = nil, 0
		end := min(start+n, cr.Last+1) // past the bytes of c this answer brings
		got, err := a.read(buf.b[have : end-start])
		r.stats.fetched.Add(int64(got))
		pos += int64(got)
		if err != nil {
			if !hold && have+int64(got) > 0 {
				j.part, j.have = buf, have+int64(got) // correct bytes: keep them
				grew = got > 0
			} else {
				r.bufs.release(buf)
			}
			return done, grew, fmt.Errorf("bytes %d-%d: %w at byte %d", first, last, err, pos)
		}
		if end < start+n {
			tail, tailHave = buf, end-start
			break
		}
		if hold {
			held = append(held, buf)
			continue
		}
		if done == 0 {
			r.up() // before a reader hears of it
		}
		r.complete(j.calls[i], c, buf, nil)
		r.bufs.release(buf)
		done++
	}
	if err := a.expectEOF(); err != nil {
		return done, false, err
	}
	if len(held) > 0 {
		r.up()
	}
	for _, buf := range held {
		r.complete(j.calls[from+done], j.first+int64(from+done), buf, nil)
		done++
	}
	if tail != nil {
		j.part, j.have, grew = tail, tailHave, true
		tail = nil
	}
	return done, grew, nil
}

// check validates a response to a request for bytes first-last: a 206 of
// the same image (validators, size) starting at first, no longer than
// asked. A 200 is a cache's miss (nginx's proxy_cache answers a Range
// request so while it fetches the whole image): retried, as a 5xx is.
func (r *RangeReader) check(resp *http.Response, first, last int64) (contentRange, error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		return contentRange{}, fmt.Errorf("HTTP 200 with the whole image for bytes=%d-%d: a cache in between answering a miss?", first, last)
	case http.StatusPreconditionFailed:
		switch {
		case r.ifMatch:
			// If-Match failed (RFC 9110 13.1.1): another image.
			return contentRange{}, r.changed(fmt.Sprintf("ETag %s at open, now %s (HTTP 412 to If-Match)", r.etag, etagOrNone(resp)))
		case r.ifUnmodified:
			// If-Unmodified-Since failed (13.1.4): modified since.
			return contentRange{}, r.changed(fmt.Sprintf("Last-Modified %s at open, now %s (HTTP 412 to If-Unmodified-Since)", r.lastModified, headerOrNone(resp, "Last-Modified")))
		}
		return contentRange{}, rangeStatusError(resp)
	case http.StatusRequestedRangeNotSatisfiable:
		return contentRange{}, Permanent(fmt.Errorf("%w: HTTP %s for bytes=%d-%d of an image opened as %d bytes (Content-Range %q): was the image replaced or truncated on the server?", ErrSizeMismatch, resp.Status, first, last, r.size, resp.Header.Get("Content-Range")))
	default:
		return contentRange{}, rangeStatusError(resp)
	}
	if err := checkEncoding(resp); err != nil {
		return contentRange{}, err
	}
	if got := resp.Header.Get("ETag"); got != r.etag {
		return contentRange{}, r.changed(fmt.Sprintf("ETag %s at open, now %s", etagOr(r.etag), etagOrNone(resp)))
	}
	if got := resp.Header.Get("Last-Modified"); r.ifUnmodified && got != r.lastModified {
		return contentRange{}, r.changed(fmt.Sprintf("Last-Modified %s at open, now %s", r.lastModified, headerOrNone(resp, "Last-Modified")))
	}
	cr, err := parsePartial(resp)
	if err != nil {
		return contentRange{}, err
	}
	if cr.Total >= 0 && cr.Total != r.size {
		return contentRange{}, r.changed(fmt.Sprintf("%d bytes at open, now %d (ETag %s)", r.size, cr.Total, etagOrNone(resp)))
	}
	if cr.First != first || cr.Last > last {
		return contentRange{}, malformed(fmt.Errorf("asked for bytes %d-%d, got Content-Range %q", first, last, cr))
	}
	return cr, checkLength(resp, cr)
}

// changed is the permanent error for an image that is no longer the one
// opened.
func (r *RangeReader) changed(what string) error {
	return Permanent(fmt.Errorf("%w: %s: the bytes of two versions are never mixed; reboot to start over with the new image", ErrChanged, what))
}

// parsePartial parses a 206's Content-Range: a single part. A
// multipart/byteranges answer to one range is malformed (RFC 9110 14.6
// lets a server send one, and nothing here reads it).
func parsePartial(resp *http.Response) (contentRange, error) {
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "multipart/byteranges") {
		return contentRange{}, malformed(fmt.Errorf("a multipart/byteranges answer (Content-Type %q) to a single range", ct))
	}
	cr, err := parseContentRange(resp.Header.Get("Content-Range"))
	return cr, malformed(err)
}

// checkEncoding refuses a coded body: its bytes are not the image's at
// the Content-Range's offsets. Requests do not ask for one (a Range
// request keeps net/http from asking for gzip).
func checkEncoding(resp *http.Response) error {
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return Permanent(fmt.Errorf("the server sends the image with Content-Encoding %q: serve it as stored", ce))
	}
	return nil
}

// checkLength compares a known Content-Length with the Content-Range.
func checkLength(resp *http.Response, cr contentRange) error {
	if resp.ContentLength >= 0 && resp.ContentLength != cr.Last-cr.First+1 {
		return malformed(fmt.Errorf("Content-Length %d for Content-Range %q", resp.ContentLength, cr))
	}
	return nil
}

func etagOrNone(resp *http.Response) string { return headerOrNone(resp, "ETag") }

func headerOrNone(resp *http.Response, key string) string { return etagOr(resp.Header.Get(key)) }

func etagOr(v string) string {
	if v != "" {
		return v
	}
	return "(none)"
}

// rangeStatusError classifies an unexpected status: the server's trouble
// (StatusError.Retryable) is retried, anything else is not, for no other
// answer than a 206 brings the image's bytes.
func rangeStatusError(resp *http.Response) error {
	se := &StatusError{Code: resp.StatusCode, Status: resp.Status}
	switch {
	case errors.Is(se, ErrNotFound):
		return Permanent(notFound(se))
	case se.Retryable():
		return se
	default:
		return Permanent(fmt.Errorf("unexpected %w", se))
	}
}

// newPolicy is the reader's retry policy: no bound on the attempts but
// Patience and MaxMalformed; the first failure of an outage, which all
// requests share, is logged, again every LogEvery while it lasts, and so
// is the next success. It counts the retries.
func (r *RangeReader) newPolicy() Policy {
	patience := "until it is back"
	if r.opt.Patience > 0 {
		patience = fmt.Sprintf("for up to %v", r.opt.Patience)
	}
	return Policy{
		Attempts:     -1,
		Patience:     r.opt.Patience,
		Backoff:      rangeBackoff,
		MaxBackoff:   rangeMaxBackoff,
		Stall:        r.opt.Stall,
		SlowBytes:    r.opt.SlowBytes,
		SlowWindow:   r.opt.SlowWindow,
		MaxMalformed: r.opt.MaxMalformed,
		Retrying:     func(int, time.Duration, error) { r.stats.retries.Add(1) },
		outage: &outage{
			began: func(err error) {
				r.opt.Logf("image server %s failing (%v): retrying %s", r.where, err, patience)
			},
			still: func(err error, lasted time.Duration) {
				r.opt.Logf("image server %s still failing after %.0fs (%v): retrying %s", r.where, lasted.Seconds(), err, patience)
			},
			every: r.opt.LogEvery,
			ended: func(took time.Duration) {
				r.opt.Logf("image server %s back after %.1fs", r.where, took.Seconds())
			},
		},
	}
}

// retry runs try with the reader's policy until it succeeds, fails
// permanently, the RangeReader closes, or the server has failed for
// Patience: since this try's first failure without progress, or since the
// outage began if that is earlier (a try queued behind others during an
// outage does not wait Patience afresh). A permanent error is recorded: no
// later request is sent.
func (r *RangeReader) retry(try func() (progress bool, err error)) error {
	err := r.policy.retry(r.ctx, func(context.Context, int) (bool, error) { return try() })
	var ex *ExhaustedError
	switch {
	case IsPermanent(err):
		r.setFatal(err)
	case errors.As(err, &ex):
		err = unreachable(err)
	}
	return err
}

// up notes a successful attempt, ending the outage if there was one.
func (r *RangeReader) up() { r.policy.outage.end() }

// attempt is one request, abandoned when no byte arrives for Stall.
type attempt struct {
	resp *http.Response
	st   *stall
}

// get sends a GET for bytes first-last, with If-Match when the ETag is
// strong, else If-Unmodified-Since when there is a Last-Modified date, so
// the server itself refuses another version. The body must then come at
// the policy's minimum rate.
func (r *RangeReader) get(first, last int64) (*attempt, error) {
	ctx, st := withStall(r.ctx, r.policy.stall())
	a := &attempt{st: st}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		a.end()
		return nil, Permanent(withoutURL(err))
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	switch {
	case r.ifMatch:
		req.Header.Set("If-Match", r.etag)
	case r.ifUnmodified:
		req.Header.Set("If-Unmodified-Since", r.lastModified)
	}
	r.stats.requests.Add(1)
	resp, err := do(r.client, req)
	if err != nil {
		err = st.noAnswer(err) // before end stops the timer
		a.end()
		return nil, err
	}
	a.resp = resp
	st.slowly(r.policy.slow())
	return a, nil
}

// read fills p from the body and returns how many bytes it read: a short
// body is an error, never data. A body that ends cleanly before its
// Content-Range says (chunked) is malformed; one cut is not.
func (a *attempt) read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		m, err := a.resp.Body.Read(p[n:])
		n += m
		if m > 0 {
			a.st.progress(m)
		}
		if n == len(p) {
			return n, nil
		}
		if err == io.EOF {
			return n, malformed(fmt.Errorf("body ended %d bytes early", len(p)-n))
		}
		if err != nil {
			return n, a.st.noData(err)
		}
	}
	return len(p), nil
}

// expectEOF checks the body ends here. Reading to EOF also returns the
// connection to the pool.
func (a *attempt) expectEOF() error {
	var b [1]byte
	for {
		n, err := a.resp.Body.Read(b[:])
		switch {
		case n > 0:
			return malformed(errors.New("body longer than its Content-Range"))
		case err == io.EOF:
			return nil
		case err != nil:
			return a.st.noData(err)
		}
	}
}

func (a *attempt) end() {
	if a.resp != nil {
		a.resp.Body.Close()
	}
	a.st.release()
}
