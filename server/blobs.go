package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/hashtrees"
	"github.com/overboot/overboot/server/peers"
)

// blob serves an artifact by digest. The path is never built from the
// request: only a parsed digest reaches the store.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	d, err := boot.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		http.Error(w, "bad digest: want /blobs/sha256/<64 lowercase hex digits>", http.StatusBadRequest)
		return
	}
	f, code, why := s.openBlob(r, d)
	if code != 0 {
		http.Error(w, why, code)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot stat the artifact", http.StatusInternalServerError)
		return
	}
	// Blobs are immutable: a strong ETag makes If-Range resumes safe.
	etag := `"` + d.String() + `"`
	if refuseRanges(w, r, fi.Size(), etag, fi.ModTime()) {
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Type", "application/octet-stream")
	s.metrics.Downloading(1)
	defer s.metrics.Downloading(-1)
	cw := &countingWriter{ResponseWriter: w}
	start := time.Now()
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	took := time.Since(start)
	s.metrics.Sent(cw.n)
	// A boot event per download of a profile's artifact: whole GETs only.
	// A lazy root reads its image in hundreds of Range requests, which
	// would each cost a write to the store; a resumed download is counted
	// by its first request. Recorded after the machine may have closed the
	// connection: the event outlives the request.
	// The body's last bytes leave first: the machine never waits for the
	// store, and a download goes on while the store is down, without its
	// event (nor a log line per download).
	if kind := s.sets.Load().Kind(d); kind != "" && r.Method == http.MethodGet && r.Header.Get("Range") == "" && !s.storeWasDown() {
		http.NewResponseController(w).Flush()
		s.rec.Download(context.WithoutCancel(r.Context()), remoteIP(r), kind, cw.n, took.Seconds())
	}
}

// openBlob opens the blob d; one this server lacks is fetched from its
// peers and origin first (package server/peers), unless the request is
// itself a peer's fetch, which is answered from this store only: two
// servers that list each other cannot ask each other in a loop. On
// failure it returns the HTTP code and why.
func (s *Server) openBlob(r *http.Request, d boot.Digest) (*os.File, int, string) {
	f, err := s.blobs.OpenBlob(d)
	if errors.Is(err, blobstore.ErrNotFound) && s.fetch.Sourced() && r.Header.Get(peers.Header) == "" {
		if err = s.fetch.Fetch(r.Context(), d, -1); err == nil {
			f, err = s.blobs.OpenBlob(d)
		} else if r.Context().Err() != nil {
			return nil, http.StatusServiceUnavailable, "gone while the artifact was fetched"
		} else if !errors.Is(err, peers.ErrNotFound) {
			s.log.Warn("cannot fetch a blob from the peers", "digest", d.String(), "err", err)
			return nil, http.StatusBadGateway, "the artifact is not here and the peers did not send it: see the server's log"
		}
	}
	switch {
	case errors.Is(err, blobstore.ErrNotFound) || errors.Is(err, peers.ErrNotFound):
		return nil, http.StatusNotFound, "404 page not found"
	case err != nil:
		s.log.Error("open blob", "digest", d.String(), "err", err)
		return nil, http.StatusInternalServerError, "cannot open the artifact"
	}
	return f, 0, ""
}

// countingWriter counts body bytes. It implements io.ReaderFrom by
// delegating, so http.ServeContent's copy from the file still reaches
// net.TCPConn.ReadFrom: sendfile, zero-copy.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// Flush passes through, for the status page's event stream.
func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// tree serves the dm-verity tree of an image. A boot document makes it;
// a server asked for one it has not made (the machine's document came
// from another server) makes it from the image, fetched from a peer if
// need be: the tree of an image is the same bytes on every server (its
// salt comes from the image's digest), so nothing but the image needs to
// be trusted, and it is checked by its digest. Only a squashfs image gets
// a tree.
func (s *Server) tree(w http.ResponseWriter, r *http.Request) {
	d, err := boot.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		http.Error(w, "bad digest: want /verity/sha256/<64 lowercase hex digits of the image's digest>", http.StatusBadRequest)
		return
	}
	t, ok := s.trees.Lookup(d)
	if !ok {
		var code int
		var why string
		if t, code, why = s.makeTree(r, d); code != 0 {
			http.Error(w, why, code)
			return
		}
	}
	f, err := os.Open(s.trees.Path(d))
	if err != nil {
		http.Error(w, "cannot open the tree", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot stat the tree", http.StatusInternalServerError)
		return
	}
	etag := `"` + t.Hash.String() + `"`
	if refuseRanges(w, r, fi.Size(), etag, fi.ModTime()) {
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// makeTree makes the tree of the image d (see tree); on failure it
// returns the HTTP code and why.
func (s *Server) makeTree(r *http.Request, d boot.Digest) (hashtrees.Tree, int, string) {
	f, code, why := s.openBlob(r, d)
	if code != 0 {
		return hashtrees.Tree{}, code, why
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return hashtrees.Tree{}, http.StatusInternalServerError, "cannot stat the image"
	}
	if blobstore.Sniff(f) != blobstore.KindRoot {
		return hashtrees.Tree{}, http.StatusNotFound, "no tree: not a squashfs image"
	}
	t, err := s.trees.Get(r.Context(), d, s.blobs.BlobPath(d), fi.Size())
	if err != nil {
		s.log.Error("dm-verity tree", "image", d.String(), "err", err)
		return hashtrees.Tree{}, http.StatusInternalServerError, "cannot make the image's dm-verity tree: see the server's log"
	}
	return t, 0, ""
}
