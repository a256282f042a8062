package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Stage is one step of a machine's boot as the server saw it:
// script -> kernel -> initramfs -> root.
type Stage struct {
	Name  string    `json:"name"`
	At    time.Time `json:"at"`
	Bytes int64     `json:"bytes,omitempty"`
}

// MachineState is what /api/machines reports per machine.
type MachineState struct {
	MAC      string    `json:"mac"`
	Profile  string    `json:"profile"`
	Address  string    `json:"address"`
	Boots    int       `json:"boots"`
	Stages   []Stage   `json:"stages"` // of the latest boot
	LastSeen time.Time `json:"last_seen"`
}

// tracker follows boots: the script request names the MAC; blob requests
// from the same address are attributed to it.
type tracker struct {
	mu       sync.Mutex // guards byMAC and byAddr
	byMAC    map[string]*MachineState
	byAddr   map[string]string // remote address -> MAC of its last script
	nowClock func() time.Time
}

func newTracker() *tracker {
	return &tracker{byMAC: map[string]*MachineState{}, byAddr: map[string]string{}, nowClock: time.Now}
}

func (t *tracker) script(mac, profile, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byMAC[mac]
	if m == nil {
		m = &MachineState{MAC: mac}
		t.byMAC[mac] = m
	}
	now := t.nowClock()
	m.Profile, m.Address, m.LastSeen = profile, addr, now
	m.Boots++
	m.Stages = []Stage{{Name: "script", At: now}}
	t.byAddr[addr] = mac
}

// stage records a boot stage of a machine known by MAC.
func (t *tracker) stage(mac, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.byMAC[mac]; m != nil {
		now := t.nowClock()
		m.LastSeen = now
		m.Stages = append(m.Stages, Stage{Name: name, At: now})
	}
}

func (t *tracker) blob(addr, kind string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byMAC[t.byAddr[addr]]
	if m == nil {
		return // a machine booted with a static command line
	}
	now := t.nowClock()
	m.LastSeen = now
	m.Stages = append(m.Stages, Stage{Name: kind, At: now, Bytes: n})
}

func (t *tracker) list() []MachineState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MachineState, 0, len(t.byMAC))
	for _, mac := range sortedKeys(t.byMAC) {
		m := *t.byMAC[mac]
		m.Stages = append([]Stage(nil), m.Stages...)
		out = append(out, m)
	}
	return out
}

func (s *Server) apiMachines(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.machines.list())
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "overboot: %d profiles, %d machines configured, %d downloads running\n\n", len(s.profiles), len(s.cfg.Machines), s.metrics.downloads.Load())
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tPROFILE\tADDRESS\tBOOTS\tLAST STAGE\tSEEN")
	for _, m := range s.machines.list() {
		var names []string
		for _, st := range m.Stages {
			names = append(names, st.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", m.MAC, m.Profile, m.Address, m.Boots, strings.Join(names, " > "), m.LastSeen.Format(time.RFC3339))
	}
	tw.Flush()
}

// metrics are Prometheus counters, written by hand (text format 0.0.4).
type metrics struct {
	mu        sync.Mutex // guards requests
	requests  map[[2]string]int64
	bytes     atomic.Int64
	downloads atomic.Int64
}

func newMetrics() *metrics { return &metrics{requests: map[[2]string]int64{}} }

func (m *metrics) addBytes(n int64) { m.bytes.Add(n) }

func (m *metrics) request(endpoint string, code int) {
	m.mu.Lock()
	m.requests[[2]string{endpoint, fmt.Sprint(code)}]++
	m.mu.Unlock()
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# HELP overboot_http_requests_total HTTP requests by endpoint and status code.")
	fmt.Fprintln(w, "# TYPE overboot_http_requests_total counter")
	m.mu.Lock()
	keys := make([]string, 0, len(m.requests))
	vals := map[string]int64{}
	for k, v := range m.requests {
		s := fmt.Sprintf("overboot_http_requests_total{endpoint=%q,code=%q}", k[0], k[1])
		keys = append(keys, s)
		vals[s] = v
	}
	m.mu.Unlock()
	for _, k := range sortedKeys(vals) {
		fmt.Fprintf(w, "%s %d\n", k, vals[k])
	}
	fmt.Fprintln(w, "# HELP overboot_http_sent_bytes_total Artifact bytes sent.")
	fmt.Fprintln(w, "# TYPE overboot_http_sent_bytes_total counter")
	fmt.Fprintf(w, "overboot_http_sent_bytes_total %d\n", m.bytes.Load())
	fmt.Fprintln(w, "# HELP overboot_http_downloads Artifact downloads in progress.")
	fmt.Fprintln(w, "# TYPE overboot_http_downloads gauge")
	fmt.Fprintf(w, "overboot_http_downloads %d\n", m.downloads.Load())
	_ = keys
}

// statusWriter records the status code for the access log and metrics,
// keeping io.ReaderFrom (sendfile) reachable.
type statusWriter struct {
	*countingWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
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

// logged wraps h with the access log and request metrics. Only the path
// is logged: a query may one day carry a token.
func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{countingWriter: &countingWriter{ResponseWriter: w}}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.metrics.request(endpoint(r.URL.Path), sw.code)
		path := r.URL.Path
		for _, pre := range []string{"/doc/", "/san/"} {
			if strings.HasPrefix(path, pre) {
				path = pre + "[token]" // a live token is a credential
			}
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("method", r.Method), slog.String("path", path),
			slog.Int("code", sw.code), slog.String("remote", r.RemoteAddr), slog.Duration("took", time.Since(start)))
	})
}

// endpoint names a path for metrics without unbounded label values.
func endpoint(p string) string {
	switch {
	case strings.HasPrefix(p, BlobPrefix):
		return "blobs"
	case strings.HasPrefix(p, "/doc/"):
		return "doc"
	case strings.HasPrefix(p, "/san/"):
		return "san"
	case p == "/boot.ipxe", p == "/ipxe", p == "/api/machines", p == "/status", p == "/metrics":
		return p
	}
	return "other"
}
