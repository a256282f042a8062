package telemetry

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/overboot/overboot/server/state"
)

// View is what the status page reads (server/state).
type View interface {
	Machines(ctx context.Context) ([]state.Machine, error)
	LatestBoots(ctx context.Context) ([]state.Boot, error)
	Disks(ctx context.Context) ([]state.Disk, error)
}

// Row is one machine on the status page.
type Row struct {
	MAC       string `json:"mac"`
	Hostname  string `json:"hostname,omitempty"`
	Profile   string `json:"profile"`
	Enrolment string `json:"enrolment"`
	Address   string `json:"address"`
	Phase     string `json:"phase"`   // of its latest boot
	Outcome   string `json:"outcome"` // running, ok, failed
	Image     string `json:"image,omitempty"`
	User      string `json:"user,omitempty"`
	Disk      string `json:"disk,omitempty"` // e.g. "upper 4.0 GiB"
	Error     string `json:"error,omitempty"`
	Updated   string `json:"updated,omitempty"`
}

// Rows builds the status table: every machine the store knows, with its
// latest boot, sorted by MAC.
func Rows(ctx context.Context, v View) ([]Row, error) {
	ms, err := v.Machines(ctx)
	if err != nil {
		return nil, err
	}
	boots, err := v.LatestBoots(ctx)
	if err != nil {
		return nil, err
	}
	ks, err := v.Disks(ctx)
	if err != nil {
		return nil, err
	}
	byMAC := map[string]state.Boot{}
	for _, b := range boots {
		byMAC[b.MAC] = b
	}
	disk := map[string]string{}
	for _, k := range ks {
		disk[k.OwnerKind+" "+k.Owner+" "+k.Profile] = fmt.Sprintf("%s %s", k.Kind, humanBytes(k.Size))
	}
	rows := make([]Row, 0, len(ms))
	for _, m := range ms {
		r := Row{MAC: m.MAC, Hostname: m.Hostname, Profile: m.Profile, Enrolment: string(m.Enrolment), Address: m.Address}
		if b, ok := byMAC[m.MAC]; ok {
			r.Phase, r.Outcome, r.User, r.Updated = b.Phase, b.Outcome, b.User, b.Updated.Format(time.RFC3339)
			if len(b.Image) > 19 {
				r.Image = b.Image[:19]
			}
			if b.Outcome == Failed {
				r.Error = b.Message
			}
			if b.User != "" {
				r.Disk = disk[state.OwnerUser+" "+b.User+" "+b.Profile]
			}
		}
		if r.Disk == "" {
			r.Disk = disk[state.OwnerMachine+" "+m.MAC+" "+m.Profile]
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Parse(statusHTML))

// StatusPage serves /status (the page), /status/rows (its table as JSON)
// and /status/events (updates as server-sent events).
type StatusPage struct {
	View View
	Rec  *Recorder
	Log  *slog.Logger
}

// Page serves the HTML page.
func (p *StatusPage) Page(w http.ResponseWriter, r *http.Request) {
	rows, err := Rows(r.Context(), p.View)
	if err != nil {
		p.log().Error("status page", "err", err)
		http.Error(w, "cannot read the state store", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing from elsewhere: the page is whole as served.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	if err := statusPage.Execute(w, struct {
		Rows []Row
		Now  string
	}{rows, time.Now().UTC().Format(time.RFC3339)}); err != nil {
		p.log().Debug("status page write", "err", err)
	}
}

// RowsJSON serves the table as JSON.
func (p *StatusPage) RowsJSON(w http.ResponseWriter, r *http.Request) {
	rows, err := Rows(r.Context(), p.View)
	if err != nil {
		http.Error(w, `{"error":"cannot read the state store"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rows)
}

// Events streams updates as server-sent events until the client goes.
func (p *StatusPage) Events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	c := p.Rec.hub.subscribe()
	defer p.Rec.hub.unsubscribe(c)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	keep := time.NewTicker(20 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-c:
			if _, err := fmt.Fprintf(w, "event: machine\ndata: %s\n\n", b); err != nil {
				return
			}
			fl.Flush()
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func (p *StatusPage) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}
