package server

import (
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// statusWriter records the status code for the access log and metrics,
// keeping io.ReaderFrom (sendfile) and Flush reachable.
type statusWriter struct {
	*countingWriter
	code int
	// storeDown, when set, is asked before a 500 or 503 goes out: while the
	// state store cannot be reached the answer is 503 with Retry-After,
	// which says "the same request will work later" to iPXE's bootstrap
	// (it retries), the agent and HTTP clients.
	storeDown func() bool
}

// RetryAfter is what a 503 for an unreachable state store asks clients
// to wait, in seconds.
const RetryAfter = 5

func (s *statusWriter) WriteHeader(code int) {
	// A 503 a handler chose (a report it could not record) gets the
	// Retry-After too when the store is why.
	if (code == http.StatusInternalServerError || code == http.StatusServiceUnavailable) && s.code == 0 && s.storeDown != nil && s.storeDown() {
		code = http.StatusServiceUnavailable
		s.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	if s.code == 0 {
		s.code = code
	}
	s.countingWriter.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.countingWriter.Write(p)
}

// tokenPaths carry a credential in their path; a login's query carries a
// password. The log shows neither.
var tokenPaths = []string{"/doc/", "/san/", "/login/", "/entry/", "/report/"}

// logged wraps h with the access log and request metrics. Only the path
// is logged, never the query (a login's password travels in it), and a
// path's token is replaced by [token].
func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{countingWriter: &countingWriter{ResponseWriter: w}, storeDown: func() bool { return s.storeDown(r.Context()) }}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.metrics.Request(endpoint(r.URL.Path), sw.code)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("method", r.Method), slog.String("path", redactPath(r.URL.Path)),
			slog.Int("code", sw.code), slog.String("remote", r.RemoteAddr), slog.Duration("took", time.Since(start)))
	})
}

func redactPath(p string) string {
	for _, pre := range tokenPaths {
		if rest, ok := strings.CutPrefix(p, pre); ok {
			if pre == "/entry/" {
				if _, name, ok := strings.Cut(rest, "/"); ok {
					return pre + "[token]/" + name
				}
			}
			return pre + "[token]"
		}
	}
	return p
}

// endpoint names a path for metrics without unbounded label values.
func endpoint(p string) string {
	switch {
	case strings.HasPrefix(p, BlobPrefix):
		return "blobs"
	case strings.HasPrefix(p, TreePrefix):
		return "verity"
	case strings.HasPrefix(p, "/api/v1/"):
		return "api"
	}
	for _, pre := range tokenPaths {
		if strings.HasPrefix(p, pre) {
			return strings.Trim(pre, "/")
		}
	}
	switch p {
	case "/boot.ipxe", "/ipxe", "/status", "/status/rows", "/status/events", "/metrics":
		return p
	}
	return "other"
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
