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
// learns the image's size and ETag from it. It returns the first chunk.
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
			return false, Permanent(fmt.Errorf("%w: HTTP 200 with the whole image for bytes=0-%d: lazy reading needs a server that honours Range, as overboot's /blobs/sha256/ does", ErrNoRange, r.cs-1))
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
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return false, err
		}
		if cr.Total < 0 {
			return false, Permanent(fmt.Errorf("the server does not say the image's size (Content-Range %q)", cr))
		}
		if cr.First != 0 || cr.Last != min(r.cs, cr.Total)-1 {
			return false, fmt.Errorf("asked for bytes 0-%d of the image, got Content-Range %q", r.cs-1, cr)
		}
		if r.opt.ExpectSize > 0 && cr.Total != r.opt.ExpectSize {
			return false, Permanent(fmt.Errorf("%w: the server has %d bytes, expected %d: is the image complete on the server, and the size on the command line right?", ErrSizeMismatch, cr.Total, r.opt.ExpectSize))
		}
		if err := checkLength(resp, cr); err != nil {
			return false, err
		}
		buf := &buffer{b: make([]byte, cr.Last+1)}
		buf.refs.Store(1)
		if err := a.read(buf.b); err != nil {
			return false, fmt.Errorf("bytes 0-%d: %w", cr.Last, err)
		}
		if err := a.expectEOF(); err != nil {
			return false, err
		}
		r.stats.fetched.Add(int64(len(buf.b)))
		r.size, chunk0 = cr.Total, buf
		r.etag = resp.Header.Get("ETag")
		switch {
		case r.etag == "":
			r.opt.Logf("image %s: the server sends no ETag: a change of the image on the server cannot be detected", r.where)
		case strings.HasPrefix(r.etag, "W/"):
			// If-Match compares strongly (RFC 9110 13.1.1): a weak
			// ETag never matches. Responses are still compared.
			r.opt.Logf("image %s: the server sends a weak ETag %s: changes are detected only after a request", r.where, r.etag)
		default:
			r.ifMatch = true
		}
		return true, nil
	})
	return chunk0, err
}

// run brings job j's chunks, retrying from the first missing one.
func (r *RangeReader) run(j *job) {
	next := 0
	err := r.retry(func() (bool, error) {
		n, err := r.fetch(j, next)
		next += n
		return n > 0, err
	})
	for i := next; i < len(j.calls); i++ {
		r.complete(j.calls[i], j.first+int64(i), nil, err)
	}
	if j.prio == fill && errors.Is(err, ErrUnavailable) {
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

// fetch requests job j's chunks from the from-th on and completes their
// calls as the bytes arrive. It returns how many it completed.
func (r *RangeReader) fetch(j *job, from int) (done int, err error) {
	r.mu.Lock()
	fatal := r.fatal
	r.mu.Unlock()
	if fatal != nil {
		return 0, Permanent(fatal)
	}
	c0, cN := j.first+int64(from), j.first+int64(len(j.calls))-1
	first, last := c0*r.cs, cN*r.cs+r.chunkLen(cN)-1
	a, err := r.get(first, last)
	if err != nil {
		return 0, err
	}
	defer a.end()
	cr, err := r.check(a.resp, first, last)
	if err != nil {
		return 0, err
	}
	// Without a Content-Length (a chunked body) the length is known only
	// at its end: hold the chunks back until then.
	hold := a.resp.ContentLength < 0
	var held []*buffer
	defer func() {
		for _, b := range held {
			r.bufs.release(b)
		}
	}()
	pos := first
	for i := from; i < len(j.calls); i++ {
		c := j.first + int64(i)
		n := r.chunkLen(c)
		if pos+n-1 > cr.Last {
			return done, fmt.Errorf("asked for bytes %d-%d, the server sent %d-%d", first, last, cr.First, cr.Last)
		}
		buf := r.bufs.get(n)
		if err := a.read(buf.b); err != nil {
			r.bufs.release(buf)
			return done, fmt.Errorf("bytes %d-%d: %w at byte %d", first, last, err, pos)
		}
		r.stats.fetched.Add(n)
		pos += n
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
		return done, err
	}
	if len(held) > 0 {
		r.up()
	}
	for _, buf := range held {
		r.complete(j.calls[from+done], j.first+int64(from+done), buf, nil)
		done++
	}
	return done, nil
}

// check validates a response to a request for bytes first-last: a 206
// of the same image (ETag, size) starting at first, no longer than asked.
func (r *RangeReader) check(resp *http.Response, first, last int64) (contentRange, error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		return contentRange{}, Permanent(fmt.Errorf("%w: HTTP 200 for bytes=%d-%d: did a proxy come between?", ErrNoRange, first, last))
	case http.StatusPreconditionFailed:
		// If-Match failed (RFC 9110 13.1.1): another image.
		return contentRange{}, Permanent(fmt.Errorf("%w: ETag %s at open, now %s (HTTP 412 to If-Match): the bytes of two versions are never mixed; reboot to start over with the new image", ErrChanged, r.etag, etagOrNone(resp)))
	case http.StatusRequestedRangeNotSatisfiable:
		return contentRange{}, Permanent(fmt.Errorf("%w: HTTP %s for bytes=%d-%d of an image opened as %d bytes (Content-Range %q): was the image replaced or truncated on the server?", ErrSizeMismatch, resp.Status, first, last, r.size, resp.Header.Get("Content-Range")))
	default:
		return contentRange{}, rangeStatusError(resp)
	}
	if err := checkEncoding(resp); err != nil {
		return contentRange{}, err
	}
	if got := resp.Header.Get("ETag"); got != r.etag {
		return contentRange{}, Permanent(fmt.Errorf("%w: ETag %s at open, now %s: the bytes of two versions are never mixed; reboot to start over with the new image", ErrChanged, r.etag, etagOrNone(resp)))
	}
	cr, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return contentRange{}, err
	}
	if cr.Total >= 0 && cr.Total != r.size {
		return contentRange{}, Permanent(fmt.Errorf("%w: %d bytes at open, now %d (ETag %s): the bytes of two versions are never mixed; reboot to start over with the new image", ErrChanged, r.size, cr.Total, etagOrNone(resp)))
	}
	if cr.First != first || cr.Last > last {
		return contentRange{}, fmt.Errorf("asked for bytes %d-%d, got Content-Range %q", first, last, cr)
	}
	return cr, checkLength(resp, cr)
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
		return fmt.Errorf("Content-Length %d for Content-Range %q", resp.ContentLength, cr)
	}
	return nil
}

func etagOrNone(resp *http.Response) string {
	if e := resp.Header.Get("ETag"); e != "" {
		return e
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
// Patience; the first failure of an outage, which all requests share, is
// logged, and so is the next success. It counts the retries.
func (r *RangeReader) newPolicy() Policy {
	return Policy{
		Attempts:   -1,
		Patience:   r.opt.Patience,
		Backoff:    rangeBackoff,
		MaxBackoff: rangeMaxBackoff,
		Stall:      r.opt.Stall,
		Retrying:   func(int, time.Duration, error) { r.stats.retries.Add(1) },
		outage: &outage{
			began: func(err error) {
				patience := "until it is back"
				if r.opt.Patience > 0 {
					patience = fmt.Sprintf("for up to %v", r.opt.Patience)
				}
				r.opt.Logf("image server %s failing (%v): retrying %s", r.where, err, patience)
			},
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
// strong, so the server itself refuses another version.
func (r *RangeReader) get(first, last int64) (*attempt, error) {
	ctx, st := withStall(r.ctx, r.policy.stall())
	a := &attempt{st: st}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		a.end()
		return nil, Permanent(withoutURL(err))
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	if r.ifMatch {
		req.Header.Set("If-Match", r.etag)
	}
	r.stats.requests.Add(1)
	resp, err := do(r.client, req)
	if err != nil {
		err = st.noAnswer(err) // before end stops the timer
		a.end()
		return nil, err
	}
	a.resp = resp
	return a, nil
}

// read fills p from the body: a short body is an error, never data.
func (a *attempt) read(p []byte) error {
	for n := 0; n < len(p); {
		m, err := a.resp.Body.Read(p[n:])
		n += m
		if m > 0 {
			a.st.progress()
		}
		if n == len(p) {
			return nil
		}
		if err == io.EOF {
			return fmt.Errorf("body ended %d bytes early", len(p)-n)
		}
		if err != nil {
			return a.st.noData(err)
		}
	}
	return nil
}

// expectEOF checks the body ends here. Reading to EOF also returns the
// connection to the pool.
func (a *attempt) expectEOF() error {
	var b [1]byte
	for {
		n, err := a.resp.Body.Read(b[:])
		switch {
		case n > 0:
			return errors.New("body longer than its Content-Range")
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
