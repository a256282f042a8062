package server

import (
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

// blob serves an artifact by digest. The path is never built from the
// request: only a parsed digest reaches the store.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	d, err := boot.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		http.Error(w, "bad digest: want /blobs/sha256/<64 lowercase hex digits>", http.StatusBadRequest)
		return
	}
	f, err := s.blobs.OpenBlob(d)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		s.log.Error("open blob", "digest", d.String(), "err", err)
		http.Error(w, "cannot open the artifact", http.StatusInternalServerError)
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
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	s.metrics.Sent(cw.n)
	if kind := s.sets.Load().Kind(d); kind != "" && r.Method == http.MethodGet {
		s.rec.Download(r.Context(), remoteIP(r), kind, cw.n)
	}
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

// tree serves the dm-verity tree of an image, once a boot document has
// made it (GET builds nothing).
func (s *Server) tree(w http.ResponseWriter, r *http.Request) {
	d, err := boot.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		http.Error(w, "bad digest: want /verity/sha256/<64 lowercase hex digits of the image's digest>", http.StatusBadRequest)
		return
	}
	t, ok := s.trees.Lookup(d)
	if !ok {
		http.NotFound(w, r)
		return
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
