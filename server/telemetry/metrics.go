package telemetry

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/state"
)

// Gauges the metrics read when scraped.
type Gauges struct {
	ISCSIConnections func() int   // open iSCSI connections, logged in or not
	ISCSISessions    func() int   // logged-in iSCSI sessions
	DiskBytes        func() int64 // total size of the private disks
	// DHCPDropped counts the requests the full DHCP server dropped
	// unanswered, by reason (DHCPQueueFull, DHCPStale).
	DHCPDropped func(reason string) uint64
}

// The reasons overboot_dhcp_dropped_total counts.
const (
	DHCPQueueFull = "queue_full" // the queue was full: the oldest request went
	DHCPStale     = "stale"      // the request waited past a second
)

// Metrics are the server's Prometheus metrics, on a registry of their own
// (no global state).
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	sent      prometheus.Counter
	downloads prometheus.Gauge
	boots     *prometheus.CounterVec
	phases    *prometheus.HistogramVec
	refusals  *prometheus.CounterVec
	logins    *prometheus.CounterVec
}

// RefusalReasons are the reasons a request is refused, as
// overboot_refusals_total counts them.
var RefusalReasons = []string{"wrong_address", "rate_limit", "quota", "bad_token", "pending", "conflict"}

// NewMetrics registers the metrics; a nil gauge function is left out.
func NewMetrics(g Gauges) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "overboot_http_requests_total", Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "overboot_http_sent_bytes_total", Help: "Artifact bytes sent.",
		}),
		downloads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "overboot_http_downloads", Help: "Artifact downloads in progress.",
		}),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "overboot_boots_total", Help: "Boots that reached the root (ok) or failed, as the agents reported.",
		}, []string{"outcome"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "overboot_boot_phase_seconds", Help: "Duration of the agent's boot phases, as reported.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120},
		}, []string{"phase"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "overboot_refusals_total", Help: "Requests refused, by reason (" + strings.Join(RefusalReasons, ", ") + ").",
		}, []string{"reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "overboot_logins_total", Help: "Boot menu logins by outcome (ok, wrong, limited).",
		}, []string{"outcome"}),
	}
	// Every series a dashboard names is there from the start, at zero,
	// not only after its first event.
	for _, o := range []string{OK, Failed} {
		m.boots.WithLabelValues(o)
	}
	for _, ph := range boot.Phases {
		m.phases.WithLabelValues(ph)
	}
	for _, r := range RefusalReasons {
		m.refusals.WithLabelValues(r)
	}
	for _, o := range []string{"ok", "wrong", "limited"} {
		m.logins.WithLabelValues(o)
	}
	for _, e := range []string{"/boot.ipxe", "/ipxe", "blobs", "doc", "report"} {
		m.requests.WithLabelValues(e, "200")
	}
	m.reg.MustRegister(m.requests, m.sent, m.downloads, m.boots, m.phases, m.refusals, m.logins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if g.ISCSIConnections != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "overboot_iscsi_connections", Help: "Open iSCSI connections, logged in or not."},
			func() float64 { return float64(g.ISCSIConnections()) }))
	}
	if g.ISCSISessions != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "overboot_iscsi_sessions", Help: "Logged-in iSCSI sessions."},
			func() float64 { return float64(g.ISCSISessions()) }))
	}
	if g.DiskBytes != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "overboot_disk_bytes", Help: "Total size of the private disks (sparse: what they may grow to)."},
			func() float64 { return float64(g.DiskBytes()) }))
	}
	if g.DHCPDropped != nil {
		for _, r := range []string{DHCPQueueFull, DHCPStale} {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "overboot_dhcp_dropped_total",
				Help: "DHCP requests the full DHCP server dropped unanswered: queue_full (the oldest, for a newer), stale (waited past a second).", ConstLabels: prometheus.Labels{"reason": r}},
				func() float64 { return float64(g.DHCPDropped(r)) }))
		}
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request counts an HTTP request.
func (m *Metrics) Request(endpoint string, code int) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

// Sent counts artifact bytes sent.
func (m *Metrics) Sent(n int64) { m.sent.Add(float64(n)) }

// Downloading moves the downloads-in-progress gauge by delta.
func (m *Metrics) Downloading(delta int) { m.downloads.Add(float64(delta)) }

// Refused counts a refusal.
func (m *Metrics) Refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// Login counts a login attempt.
func (m *Metrics) Login(outcome string) { m.logins.WithLabelValues(outcome).Inc() }

func (m *Metrics) event(e state.BootEvent) {
	if e.Source != SourceAgent {
		return
	}
	switch e.Outcome {
	case Running:
		// The agent becomes the image's init at switch_root: its start
		// is the last report of a boot that reached its root.
		if e.Phase == boot.PhaseSwitchRoot {
			m.boots.WithLabelValues(OK).Inc()
		}
	case OK:
		m.phases.WithLabelValues(e.Phase).Observe(e.Seconds)
	case Failed:
		m.phases.WithLabelValues(e.Phase).Observe(e.Seconds)
		m.boots.WithLabelValues(Failed).Inc()
	}
}
