package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
)

// Options tune Fetch. Zero values are the documented defaults.
type Options struct {
	Client *http.Client // nil: DefaultClient()
	Policy Policy       // attempts, backoff and stall
	// Progress is called about once a second while bytes arrive, and once
	// at the end (nil: never).
	Progress func(Progress)
}

const (
	bufSize       = 256 << 10
	progressEvery = time.Second
)

// Progress is a snapshot of a running download.
type Progress struct {
	Done, Total int64 // Total is 0 when unknown
	Elapsed     time.Duration
	Attempt     int
}

func (p Progress) String() string {
	s := mib(p.Done)
	if p.Total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", mib(p.Total), p.Done*100/p.Total)
	}
	if p.Elapsed > 0 {
		s += fmt.Sprintf(" at %.1f MiB/s", float64(p.Done)/(1<<20)/p.Elapsed.Seconds())
	}
	if p.Attempt > 1 {
		s += fmt.Sprintf(", attempt %d", p.Attempt)
	}
	return s
}

// Result describes a finished, verified download.
type Result struct {
	Size     int64
	Digest   boot.Digest
	Attempts int
	Resumes  int // attempts that continued with a Range request
	Elapsed  time.Duration
	// Where the time went: hashing and writing the bytes; the rest is
	// waiting for the network.
	Hashing, Writing time.Duration
}

func (r Result) String() string {
	s := fmt.Sprintf("%s in %.1fs", mib(r.Size), r.Elapsed.Seconds())
	if r.Elapsed > 0 {
		s += fmt.Sprintf(" (%.1f MiB/s)", float64(r.Size)/(1<<20)/r.Elapsed.Seconds())
	}
	s += ", " + r.Digest.Short() + " verified"
	switch {
	case r.Resumes == 1:
		s += ", 1 resume"
	case r.Resumes > 1:
		s += fmt.Sprintf(", %d resumes", r.Resumes)
	}
	if r.Attempts > 1 && r.Attempts-1 != r.Resumes {
		s += fmt.Sprintf(", %d attempts", r.Attempts)
	}
	if r.Hashing > 0 || r.Writing > 0 {
		s += fmt.Sprintf(" (sha256 %.1fs, write %.1fs)", r.Hashing.Seconds(), r.Writing.Seconds())
	}
	return s
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// download is the state of one Fetch across attempts.
type download struct {
	url, where string
	want       boot.Digest
	size       int64 // expected size, 0 if unknown
	f          *os.File
	opt        Options
	stallAfter time.Duration

	h         hash.Hash
	done      int64    // bytes written to f and hashed
	validator string   // ETag or Last-Modified of the last response, for If-Range
	seen      []string // the validators seen, once one changed
	ranges    bool     // the server takes Range requests
	total     int64    // size the server announced, 0 if unknown
	start     time.Time
	lastProg  time.Time
	hashing   time.Duration
	writing   time.Duration
	attempt   int
	resumes   int
}

// Fetch downloads url into f (from offset 0, truncating it), verifies the
// SHA-256 against want and, when size > 0, the length, retrying as
// opt.Policy says. On error the file holds an unspecified prefix; the
// caller removes it. Errors name the URL redacted (RedactImageURL) and
// match ErrNotFound, ErrUnavailable, ErrSizeMismatch or ErrDigestMismatch.
func Fetch(ctx context.Context, url string, want boot.Digest, size int64, f *os.File, opt Options) (Result, error) {
	where := RedactImageURL(url)
	if _, err := boot.ParseDigest(string(want)); err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", where, err)
	}
	d := &download{url: url, where: where, want: want, size: size, f: f, opt: opt, stallAfter: opt.Policy.stall(), h: sha256.New(), start: time.Now()}
	d.lastProg = d.start
	if err := d.reset(); err != nil {
		return Result{}, err
	}
	err := opt.Policy.Retry(ctx, func(ctx context.Context, attempt int) error {
		d.attempt = attempt
		if err := d.try(ctx); err != nil {
			return err
		}
		return d.verify()
	})
	if err != nil {
		return Result{}, d.explain(ctx, err)
	}
	return Result{Size: d.done, Digest: d.want, Attempts: d.attempt, Resumes: d.resumes, Elapsed: time.Since(d.start), Hashing: d.hashing, Writing: d.writing}, nil
}

// explain turns what the policy gave up with into the error Fetch returns.
func (d *download) explain(ctx context.Context, err error) error {
	var ex *ExhaustedError
	var se *StatusError
	var pe *ProtocolError
	switch {
	case ctx.Err() != nil, errors.As(err, &pe):
		return fmt.Errorf("fetch %s: %w", d.where, err)
	case errors.As(err, &ex):
		return fmt.Errorf("fetch %s: %w", d.where, unreachable(ex))
	case errors.As(err, &se) && errors.Is(se, ErrNotFound):
		return fmt.Errorf("fetch %s: %w", d.where, notFound(se))
	case errors.As(err, &se):
		return fmt.Errorf("fetch %s: %w: HTTP %s", d.where, ErrUnavailable, se.Status)
	}
	return err // says what and where already
}

// reset starts over from byte zero.
func (d *download) reset() error {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fetch %s: %w", d.where, err)
	}
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("fetch %s: %w", d.where, err)
	}
	d.h.Reset()
	d.done = 0
	return nil
}

// try runs one HTTP request, appending what arrives.
func (d *download) try(ctx context.Context) error {
	ctx, st := withStall(ctx, d.stallAfter)
	defer st.release()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return Permanent(fmt.Errorf("fetch %s: %w", d.where, withoutURL(err)))
	}
	resuming := d.done > 0 && d.ranges && d.validator != ""
	if resuming {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.done))
		req.Header.Set("If-Range", d.validator)
	}
	// The stall timer covers the wait for headers as well as the body.
	resp, err := do(d.opt.Client, req)
	if err != nil {
		return st.noAnswer(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		if err := checkEncoding(resp); err != nil {
			return fmt.Errorf("fetch %s: %w", d.where, err)
		}
		if err := d.sameVersion(resp); err != nil {
			return err
		}
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && resuming:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err == nil && cr.First != d.done {
			err = fmt.Errorf("Content-Range %q for bytes=%d-", cr, d.done)
		}
		if err == nil {
			err = checkLength(resp, cr)
		}
		if err != nil {
			// Not the bytes we asked for: start over.
			if err := d.reset(); err != nil {
				return Permanent(err)
			}
			return malformed(err)
		}
		d.resumes++
		if cr.Total > 0 {
			d.total = cr.Total
		}
	case resp.StatusCode == http.StatusOK:
		if d.done > 0 {
			// The server ignored the Range, or If-Range said the image
			// changed: the bytes so far may belong to another version.
			if err := d.reset(); err != nil {
				return Permanent(err)
			}
		}
		d.total = resp.ContentLength
		if d.total < 0 {
			d.total = 0
		}
		d.ranges = resp.Header.Get("Accept-Ranges") == "bytes"
		if d.validator == "" {
			d.validator = validator(resp)
		}
		if len(d.seen) == 0 {
			d.seen = []string{etagOr(d.validator)}
		}
	default:
		if err := checkStatus(resp); err != nil {
			return err // Fetch says what it means
		}
		// Another 2xx (206 to a request without Range): not the image.
		return malformed(fmt.Errorf("HTTP %s", resp.Status))
	}
	st.slowly(d.opt.Policy.slow())
	if d.size > 0 && d.total > 0 && d.total != d.size {
		what := "truncated"
		if d.total > d.size {
			what = "too large"
		}
		return fmt.Errorf("fetch %s: %w: %s: the server has %d bytes, expected %d: is the image complete on the server, and the size on the command line right?", d.where, ErrSizeMismatch, what, d.total, d.size)
	}
	return d.copy(resp.Body, st)
}

// validator is what If-Range compares: a strong ETag, or else the
// Last-Modified date (RFC 9110 13.1.5); "" when there is neither.
func validator(resp *http.Response) string {
	if v := resp.Header.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
		return v
	}
	return resp.Header.Get("Last-Modified")
}

// sameVersion compares an answer's validator with the last one seen. A
// first change starts the download over (the digest says whether the new
// version is the image named); a second is a permanent ErrChanged: the
// image keeps changing, or a cache holds parts of two versions and cuts
// every body where they meet (nginx's slice module does, logging "etag
// mismatch in slice response"), which retrying would only repeat.
func (d *download) sameVersion(resp *http.Response) error {
	v := validator(resp)
	if d.validator == "" || v == d.validator {
		return nil
	}
	d.seen = append(d.seen, etagOr(v))
	if len(d.seen) > 2 {
		return Permanent(fmt.Errorf("fetch %s: %w during the download: %s: was it replaced on the server, or does a cache in between hold parts of two versions? Reboot to start over", d.where, ErrChanged, strings.Join(d.seen, ", then ")))
	}
	prev := d.validator
	d.validator = v
	if resp.StatusCode == http.StatusPartialContent {
		// If-Range matched, yet another version answered: ask for the
		// whole image.
		if err := d.reset(); err != nil {
			return Permanent(err)
		}
		return fmt.Errorf("%s answered for %s: starting over", etagOr(v), prev)
	}
	return nil
}

// copy appends body to the file and the hash, resetting the stall timer on
// every read. Hashing runs in its own goroutine, fed in order: on a
// machine with two CPUs it overlaps receiving, which matters under
// emulation, where SHA-256 is the slowest part of a download.
func (d *download) copy(body io.Reader, st *stall) (err error) {
	const nbuf = 8
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, bufSize)
	}
	full := make(chan []byte, nbuf)
	hashed := make(chan time.Duration)
	go func() {
		var took time.Duration
		for b := range full {
			t0 := time.Now()
			d.h.Write(b)
			took += time.Since(t0)
			free <- b[:cap(b)]
		}
		hashed <- took
	}()
	defer func() {
		// Every byte written is hashed before copy returns: a resume
		// continues the same hash.
		close(full)
		d.hashing += <-hashed
	}()
	limit := d.size
	if limit == 0 {
		limit = d.total
	}
	for {
		buf := <-free
		n, err := body.Read(buf)
		if n > 0 {
			st.progress(n)
			if limit > 0 && d.done+int64(n) > limit {
				return fmt.Errorf("fetch %s: %w: more than the expected %d bytes", d.where, ErrSizeMismatch, limit)
			}
			t0 := time.Now()
			if _, werr := d.f.Write(buf[:n]); werr != nil {
				return Permanent(fmt.Errorf("fetch %s: write %s: %w", d.where, d.f.Name(), werr))
			}
			d.writing += time.Since(t0)
			full <- buf[:n]
			d.done += int64(n)
			if d.opt.Progress != nil && time.Since(d.lastProg) >= progressEvery {
				d.lastProg = time.Now()
				d.opt.Progress(d.progress())
			}
		} else {
			free <- buf
		}
		if err == io.EOF {
			if d.total > 0 && d.done < d.total {
				return fmt.Errorf("connection closed at byte %d of %d", d.done, d.total)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w at byte %d", st.noData(err), d.done)
		}
	}
}

func (d *download) progress() Progress {
	total := d.size
	if total == 0 {
		total = d.total
	}
	return Progress{Done: d.done, Total: total, Elapsed: time.Since(d.start), Attempt: d.attempt}
}

// verify checks the length and digest of a complete download.
func (d *download) verify() error {
	if d.opt.Progress != nil {
		d.opt.Progress(d.progress())
	}
	if d.size > 0 && d.done != d.size {
		return fmt.Errorf("fetch %s: %w: truncated: got %d bytes, expected %d", d.where, ErrSizeMismatch, d.done, d.size)
	}
	if got := boot.DigestFromSum(d.h.Sum(nil)); got != d.want {
		return fmt.Errorf("image %s: %w: sha256 is %s, expected %s: the image is corrupted or truncated, or the command line names another image", d.where, ErrDigestMismatch, got.Hex(), d.want.Hex())
	}
	return nil
}
