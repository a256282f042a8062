package telemetry

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/server/state"
)

func TestRowsAndEvents(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	db.SeeMachine(ctx, state.Machine{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Hostname: "pc1"}, state.Enrolled, state.Quota{})
	db.SeeMachine(ctx, state.Machine{MAC: "52:54:00:00:00:02", Profile: "lab", Address: "192.0.2.2"}, state.Pending, state.Quota{})
	m := NewMetrics(Gauges{})
	rec := NewRecorder(db, m, nil)
	page := &StatusPage{View: db, Rec: rec}
	srv := httptest.NewServer(http.HandlerFunc(page.Events))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Scan() // retry:
	id := rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Image: "sha256:0123456789abcdef0123"}, "script")
	rec.Event(ctx, id, state.BootEvent{Source: SourceAgent, Phase: "lower", Outcome: Failed, Seconds: 2, Message: "digest mismatch"})
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) && lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "data: ") {
			got = append(got, l)
		}
	}
	if len(got) != 2 || !strings.Contains(got[1], `"phase":"lower"`) || !strings.Contains(got[1], `"outcome":"failed"`) {
		t.Errorf("events: %q", got)
	}
	rows, err := Rows(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{MAC: "52:54:00:00:00:01", Hostname: "pc1", Profile: "lab", Enrolment: "enrolled", Address: "192.0.2.1", Phase: "lower", Outcome: "failed", Image: "sha256:0123456789ab", Error: "digest mismatch", Updated: rows[0].Updated},
		{MAC: "52:54:00:00:00:02", Profile: "lab", Enrolment: "pending", Address: "192.0.2.2"},
	}
	if d := cmp.Diff(want, rows); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}
	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rr.Body.String(), `overboot_boots_total{outcome="failed"} 1`) || !strings.Contains(rr.Body.String(), `overboot_boot_phase_seconds_sum{phase="lower"} 2`) {
		t.Errorf("metrics:\n%s", rr.Body.String())
	}
}
