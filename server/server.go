package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/iscsi"
	"github.com/overboot/overboot/server/machines"
)

// BlobPrefix is where artifacts are served by digest.
const BlobPrefix = "/blobs/sha256/"

// artifact is a resolved profile reference.
type artifact struct {
	Digest boot.Digest
	Size   int64
	Kind   string // kernel, initramfs or root
}

// profile is a config profile with its artifacts resolved.
type profile struct {
	*config.Profile
	kernel, initramfs, root artifact
}

// Server serves one configuration from one store.
type Server struct {
	cfg      *config.Config
	st       *blobstore.Store
	log      *slog.Logger
	profiles map[string]*profile
	kinds    map[boot.Digest]string // what each served digest is, for boot stages
	metrics  *metrics
	machines *tracker
	disks    *disks
}

// New resolves every profile's artifacts (ingesting files given by path
// into the store) and returns a server; a reference that does not resolve
// is an error naming the profile's line.
func New(cfg *config.Config, st *blobstore.Store, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, st: st, log: log, profiles: map[string]*profile{}, kinds: map[boot.Digest]string{}, metrics: newMetrics(), machines: newTracker()}
	s.disks = newDisks(nil)
	s.disks.target = iscsi.New(log)
	for _, p := range cfg.Profiles {
		if (p.Upper == "iscsi" || p.Sanboot != "") && s.disks.state == nil {
			// Machines' secrets and disks: only when a profile needs them.
			state, err := machines.Open(filepath.Join(cfg.Data, "machines"))
			if err != nil {
				return nil, err
			}
			s.disks.state = state
		}
	}
	var errs []error
	ingested := map[string]artifact{}
	for name, p := range cfg.Profiles {
		rp := &profile{Profile: p}
		if p.Sanboot != "" {
			if err := checkDisk(p.Sanboot); err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: sanboot %w", name, err)})
			}
			s.profiles[name] = rp
			continue
		}
		for _, ref := range []struct {
			kind string
			val  string
			dst  *artifact
		}{{"kernel", p.Kernel, &rp.kernel}, {"initramfs", p.Initramfs, &rp.initramfs}, {"root", p.Root, &rp.root}} {
			a, err := s.resolve(ref.val, ingested)
			if err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: %s %s: %w", name, ref.kind, ref.val, err)})
				continue
			}
			a.Kind = ref.kind
			*ref.dst = a
			s.kinds[a.Digest] = ref.kind
		}
		s.profiles[name] = rp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// checkDisk checks that a sanboot base disk is a readable file of whole
// 512-byte blocks.
func checkDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file (a raw disk image)", path)
	case fi.Size() == 0 || fi.Size()%512 != 0:
		return fmt.Errorf("%s: %d bytes, not a whole number of 512-byte blocks", path, fi.Size())
	}
	return nil
}

// resolve turns a store name, sha256:HEX or absolute path into a digest.
func (s *Server) resolve(ref string, ingested map[string]artifact) (artifact, error) {
	if filepath.IsAbs(ref) {
		if a, ok := ingested[ref]; ok {
			return a, nil
		}
		f, err := os.Open(ref)
		if err != nil {
			return artifact{}, err
		}
		defer f.Close()
		d, n, err := s.st.Ingest(f)
		if err != nil {
			return artifact{}, err
		}
		a := artifact{Digest: d, Size: n}
		ingested[ref] = a
		return a, nil
	}
	if strings.HasPrefix(ref, "sha256:") {
		d, err := boot.ParseDigest(ref)
		if err != nil {
			return artifact{}, err
		}
		f, err := s.st.OpenBlob(d)
		if err != nil {
			return artifact{}, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return artifact{}, err
		}
		return artifact{Digest: d, Size: fi.Size()}, nil
	}
	m, err := s.st.Resolve(ref)
	if err != nil {
		return artifact{}, fmt.Errorf("%w (publish it with overboot mkimage ... -store %s -name %s)", err, s.st.Dir(), ref)
	}
	return artifact{Digest: m.Digest, Size: m.Size}, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.bootstrap)
	mux.HandleFunc("GET "+boot.ScriptPath, s.script)
	mux.HandleFunc("GET "+BlobPrefix+"{hex}", s.blob)
	mux.HandleFunc("GET /doc/{token}", s.document)
	mux.HandleFunc("GET /san/{token}", s.sanboot)
	mux.HandleFunc("GET /api/machines", s.apiMachines)
	mux.HandleFunc("POST /api/machines/{mac}/{action}", s.machineAction)
	mux.HandleFunc("DELETE /api/machines/{mac}", s.machineAction)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /metrics", s.metrics.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		http.NotFound(w, r)
	})
	return s.logged(mux)
}

// Serve serves on ln until ctx is done, then shuts down (bounded).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut a slow machine's 1 GB download.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// ListenAndServe listens on the configured address and serves until ctx
// is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// base is the URL machines reach us at: configured, or the request's Host.
func (s *Server) base(r *http.Request) (string, error) {
	if s.cfg.URL != "" {
		return s.cfg.URL, nil
	}
	host := r.Host
	if host == "" || len(host) > 255 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != "" {
		return "", fmt.Errorf("request Host %q: set url in [server] of the config", host)
	}
	return "http://" + host, nil
}

func (s *Server) bootstrap(w http.ResponseWriter, r *http.Request) {
	base, err := s.base(r)
	if err != nil {
		s.ipxe(w, http.StatusBadRequest, boot.FailScript(err.Error()))
		return
	}
	text, err := boot.ChainScript{Server: base}.Render()
	if err != nil {
		s.ipxe(w, http.StatusInternalServerError, boot.FailScript(err.Error()))
		return
	}
	s.ipxe(w, http.StatusOK, text)
}

func (s *Server) ipxe(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(text))
}

// script renders a machine's iPXE script. Errors are scripts too: iPXE
// shows their message and exits non-zero, so the firmware falls through.
func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	c, err := boot.ParseQuery(r.URL.Query())
	if err != nil {
		s.ipxe(w, http.StatusBadRequest, boot.FailScript(err.Error()))
		return
	}
	if c.MAC == nil {
		s.ipxe(w, http.StatusBadRequest, boot.FailScript("query parameter mac: missing"))
		return
	}
	text, profName, err := s.renderScript(r, c)
	if err != nil {
		s.log.Warn("no script", "mac", c.MAC.String(), "err", err)
		s.ipxe(w, http.StatusNotFound, boot.FailScript(err.Error()))
		return
	}
	s.machines.script(c.MAC.String(), profName, remoteIP(r))
	s.ipxe(w, http.StatusOK, text)
}

func (s *Server) renderScript(r *http.Request, c boot.Client) (string, string, error) {
	cp, m := s.cfg.ProfileFor(c.MAC)
	if cp == nil {
		return "", "", fmt.Errorf("no profile for %s and no [profile %s] in %s", c.MAC, config.DefaultProfile, s.cfg.File)
	}
	p := s.profiles[cp.Name]
	base, err := s.base(r)
	if err != nil {
		return "", "", err
	}
	comment := fmt.Sprintf("%s, profile %s", c.MAC, p.Name)
	if m != nil && m.Hostname != "" {
		comment = fmt.Sprintf("%s (%s), profile %s", m.Hostname, c.MAC, p.Name)
	}
	if p.Sanboot != "" {
		// The sanboot script carries the machine's CHAP secret: served
		// once, behind a single-use URL.
		tok, err := s.disks.newToken(c.MAC, p.Name)
		if err != nil {
			return "", "", err
		}
		text, err := boot.ChainOnceScript{Comment: comment, URL: base + "/san/" + tok}.Render()
		return text, p.Name, err
	}
	blob := func(a artifact) string { return base + BlobPrefix + a.Digest.Hex() }
	params := boot.Params{
		Lower: blob(p.root), Digest: p.root.Digest, Size: p.root.Size,
		UpperSize: p.UpperSize, Init: p.Init, OnFail: p.OnFail, FailDelay: p.OnFailDelay,
		FetchAttempts: p.FetchAttempts,
	}
	if p.Upper == "iscsi" {
		// The document carries the machine's CHAP secret: never the
		// command line, which every user of the booted system can read.
		tok, err := s.disks.newToken(c.MAC, p.Name)
		if err != nil {
			return "", "", err
		}
		params = boot.Params{Doc: base + "/doc/" + tok, OnFail: p.OnFail, FailDelay: p.OnFailDelay, FetchAttempts: p.FetchAttempts}
	}
	if err := params.Validate(); err != nil {
		return "", "", fmt.Errorf("profile %s: %w", p.Name, err)
	}
	text, err := boot.KernelScript{
		Comment: comment,
		Kernel:  blob(p.kernel),
		Initrds: []string{blob(p.initramfs)},
		Args:    append(append([]string(nil), p.Cmdline...), params.Args()...),
	}.Render()
	return text, p.Name, err
}

// blob serves an artifact by digest. The path is never built from the
// request: only a parsed digest reaches the store.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	d, err := boot.ParseDigest("sha256:" + r.PathValue("hex"))
	if err != nil {
		http.Error(w, "bad digest: want /blobs/sha256/<64 lowercase hex digits>", http.StatusBadRequest)
		return
	}
	f, err := s.st.OpenBlob(d)
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
	w.Header().Set("ETag", `"`+d.String()+`"`)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Type", "application/octet-stream")
	kind := s.kinds[d]
	s.metrics.downloads.Add(1)
	defer s.metrics.downloads.Add(-1)
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	s.metrics.addBytes(cw.n)
	if kind != "" && r.Method == http.MethodGet {
		s.machines.blob(remoteIP(r), kind, cw.n)
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
