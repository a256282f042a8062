package peers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

// Header marks a request one server sends another for a blob: it is
// answered from the receiver's own store only (HeaderValue).
const (
	Header      = "Overboot-Peer-Fetch"
	HeaderValue = "1"
)

// BlobPath is where a source serves a blob: BASE + BlobPath + HEX.
const BlobPath = "/blobs/sha256/"

// ErrNotFound says that no source has the blob.
var ErrNotFound = errors.New("not found at any peer or origin")

// DefaultStall is how long a transfer may go without a byte before it is
// given up and the next source is tried.
const DefaultStall = 60 * time.Second

// maxFetches bounds the distinct blobs fetched at once; more wait.
const maxFetches = 4

// Fetcher fetches blobs into a store from Sources.
type Fetcher struct {
	Store  *blobstore.Store
	Client *http.Client // nil: a client with no overall timeout
	Log    *slog.Logger // nil: discard
	// Stall is DefaultStall when 0.
	Stall time.Duration

	once     sync.Once
	slots    chan struct{}
	mu       sync.Mutex // guards sources, inflight and missed
	sources  []string
	inflight map[boot.Digest]*call
	missed   map[boot.Digest]time.Time // no source had it, then
}

// MissTTL is how long a digest no source had is answered "not found"
// without asking them again: a stream of made-up digests costs each peer
// one request per digest at most, and a digest asked again and again one
// request per MissTTL. At most maxMissed are kept.
const (
	MissTTL   = 10 * time.Second
	maxMissed = 4096
)

// SetSources sets the base URLs (http://HOST[:PORT][/PATH]) asked, in
// order, from the next fetch on.
func (f *Fetcher) SetSources(urls []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.sources, urls) {
		clear(f.missed) // a new source may have what the old ones lacked
	}
	f.sources = slices.Clone(urls)
}

// Sources are the base URLs asked, in order.
func (f *Fetcher) Sources() []string {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sources
}

type call struct {
	done    chan struct{}
	err     error
	waiters int // callers waiting for it (guarded by Fetcher.mu)
}

// Sourced reports whether f has sources to fetch from (a nil Fetcher has
// none).
func (f *Fetcher) Sourced() bool { return len(f.Sources()) > 0 }

// Fetch brings the blob d into the store, unless it is there already.
// size is the size it must have, or -1 when unknown (then the source's
// Content-Length must say it). It waits for a transfer of d already
// running rather than start another; ctx ends the wait, not the transfer.
// The error is ErrNotFound (wrapped, naming what each source answered)
// when no source had d.
func (f *Fetcher) Fetch(ctx context.Context, d boot.Digest, size int64) error {
	if _, err := boot.ParseDigest(string(d)); err != nil {
		return err
	}
	if !f.Sourced() {
		return fmt.Errorf("blob %s: no peers or origin configured: %w", d, ErrNotFound)
	}
	f.once.Do(func() {
		f.slots = make(chan struct{}, maxFetches)
		f.inflight = map[boot.Digest]*call{}
		f.missed = map[boot.Digest]time.Time{}
	})
	f.mu.Lock()
	if at, ok := f.missed[d]; ok && time.Since(at) < MissTTL {
		f.mu.Unlock()
		return fmt.Errorf("blob %s: no peer or origin had it %s ago: %w", d, time.Since(at).Round(time.Second), ErrNotFound)
	}
	c, ok := f.inflight[d]
	if !ok {
		c = &call{done: make(chan struct{})}
		f.inflight[d] = c
		go func() {
			c.err = f.fetch(d, size)
			f.mu.Lock()
			delete(f.inflight, d)
			if errors.Is(c.err, ErrNotFound) {
				if len(f.missed) >= maxMissed {
					clear(f.missed)
				}
				f.missed[d] = time.Now()
			}
			f.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Fetcher) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

// fetch tries each source in turn.
func (f *Fetcher) fetch(d boot.Digest, size int64) error {
	f.slots <- struct{}{}
	defer func() { <-f.slots }()
	if _, err := f.Store.OpenBlob(d); err == nil {
		return nil // brought in by another process, or before we were asked
	}
	var why []string
	notFound := true
	for _, src := range f.Sources() {
		err := f.fetchFrom(src, d, size)
		if err == nil {
			return nil
		}
		var de *blobstore.DigestError
		switch {
		case errors.As(err, &de):
			f.log().Warn("a peer sent a blob that is not what its digest says: not kept", "peer", src, "digest", d.String(), "err", err)
			notFound = false
		case errors.Is(err, errNoBlob):
		default:
			f.log().Warn("cannot fetch a blob from a peer", "peer", src, "digest", d.String(), "err", err)
			notFound = false
		}
		why = append(why, src+": "+err.Error())
	}
	err := fmt.Errorf("blob %s: %s", d, strings.Join(why, "; "))
	if notFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

var errNoBlob = errors.New("404 not found")

func (f *Fetcher) fetchFrom(src string, d boot.Digest, size int64) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(src, "/")+BlobPath+d.Hex(), nil)
	if err != nil {
		return err
	}
	req.Header.Set(Header, HeaderValue)
	// The bytes as stored: a transparent gzip would hash something else.
	req.Header.Set("Accept-Encoding", "identity")
	stall := cmp.Or(f.Stall, DefaultStall)
	timer := time.AfterFunc(stall, func() { cancel(fmt.Errorf("no answer for %v", stall)) })
	defer timer.Stop()
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			return c
		}
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNoBlob
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("HTTP %s", resp.Status)
	case resp.Header.Get("Content-Encoding") != "" && resp.Header.Get("Content-Encoding") != "identity":
		return fmt.Errorf("Content-Encoding %s: want the blob's bytes as they are", resp.Header.Get("Content-Encoding"))
	}
	if size < 0 {
		size = resp.ContentLength
		if size < 0 {
			return errors.New("no Content-Length, and the blob's size is not known here")
		}
	} else if resp.ContentLength >= 0 && resp.ContentLength != size {
		return &blobstore.DigestError{Want: d, WantSize: size, GotSize: resp.ContentLength}
	}
	body := &stallReader{r: resp.Body, timer: timer, after: stall}
	if err := f.Store.IngestAs(body, d, size); err != nil {
		if c := context.Cause(ctx); c != nil && !errors.As(err, new(*blobstore.DigestError)) {
			return fmt.Errorf("%w (after %d bytes)", c, body.n)
		}
		return err
	}
	f.log().Info("blob fetched from a peer", "peer", src, "digest", d.String(), "bytes", size)
	return nil
}

// stallReader pushes the stall timer back at every byte read.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	after time.Duration
	n     int64
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.n += int64(n)
		s.timer.Reset(s.after)
	}
	return n, err
}
