package telemetry

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/overboot/overboot/server/state"
)

func TestRowsAndEvents(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	db.Ask(ctx, state.Request{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Hostname: "pc1"}, state.Quota{})
	db.Approve(ctx, "52:54:00:00:00:01", "lab", "192.0.2.1", state.Quota{})
	db.Refresh(ctx, state.Machine{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Hostname: "pc1"}, false)
	db.Ask(ctx, state.Request{MAC: "52:54:00:00:00:02", Profile: "lab", Address: "192.0.2.2"}, state.Quota{})
	// Someone says the approved machine's MAC from elsewhere, and boots
	// of machine 3 come from two addresses at once.
	db.Ask(ctx, state.Request{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.66", Conflict: true}, state.Quota{})
	db.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:03", Profile: "kiosk", Address: "192.0.2.3"}, "open", state.Quota{})
	// Machine 4's TPM waits for approval; machine 5's is pinned, and
	// another TPM said its MAC.
	ek4, ek5, ek6 := "sha256:"+strings.Repeat("4", 64), "sha256:"+strings.Repeat("5", 64), "sha256:"+strings.Repeat("6", 64)
	db.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:04", Profile: "tpm", Address: "192.0.2.4"}, "tpm", state.Quota{})
	db.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:05", Profile: "tpm", Address: "192.0.2.5"}, "tpm", state.Quota{})
	if err := db.AskTPM(ctx, "52:54:00:00:00:04", ek4, "192.0.2.4"); err != nil {
		t.Fatal(err)
	}
	if err := db.PinTPM(ctx, "52:54:00:00:00:05", ek5); err != nil {
		t.Fatal(err)
	}
	if err := db.RefuseTPM(ctx, "52:54:00:00:00:05", ek6, "192.0.2.66"); err != nil {
		t.Fatal(err)
	}
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
	rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:03", Profile: "kiosk", Address: "192.0.2.3"}, "script")
	rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:03", Profile: "kiosk", Address: "192.0.2.77"}, "script")
	rows, err := Rows(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{MAC: "52:54:00:00:00:01", Hostname: "pc1", Profile: "lab", Enrolment: "approved", Address: "192.0.2.1", Pinned: "192.0.2.1", Phase: "lower", Outcome: "failed", Image: "sha256:0123456789ab", Error: "digest mismatch", Updated: rows[0].Updated,
			ImageDigest: "sha256:0123456789abcdef0123", UpdatedAt: rows[0].UpdatedAt,
			Conflict: "asked for lab from 192.0.2.66 (1 times) while approved elsewhere"},
		{MAC: "52:54:00:00:00:02", Profile: "lab", Enrolment: "pending", Address: "192.0.2.2"},
		{MAC: "52:54:00:00:00:03", Profile: "kiosk", Enrolment: "open", Address: "192.0.2.77", Phase: "script", Outcome: "ok", Updated: rows[2].Updated, UpdatedAt: rows[2].UpdatedAt,
			Conflict: "booting from 192.0.2.3 and 192.0.2.77 at once"},
		{MAC: "52:54:00:00:00:04", Profile: "tpm", Enrolment: "pending", Address: "192.0.2.4",
			TPM: "waits for approval: EK " + ek4 + " from 192.0.2.4 (overboot machine approve 52:54:00:00:00:04)"},
		{MAC: "52:54:00:00:00:05", Profile: "tpm", Enrolment: "tpm", Address: "192.0.2.5", TPM: "EK " + ek5,
			Conflict: "another TPM (EK " + ek6 + ") from 192.0.2.66 refused (1 times)"},
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

// TestStatusSnapshot: the table is read again only after a change: the
// changed machines' rows alone when they are few, the whole table past
// MaxDirty of them; a change is never missed; the rows brought up to
// date one by one are the rows a whole build makes.
func TestStatusSnapshot(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	counting := &countingView{DB: db}
	rec := NewRecorder(db, nil, nil)
	page := &StatusPage{View: counting, Rec: rec}
	for range 20 {
		if _, err := page.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if counting.n != 1 {
		t.Errorf("20 reads without a change built the table %d times", counting.n)
	}
	same := func(what string) []Row {
		t.Helper()
		rows, err := page.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := Rows(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(whole, rows, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: the table brought up to date differs from a whole build (-whole +got):\n%s", what, d)
		}
		return rows
	}
	db.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:09", Profile: "kiosk"}, "open", state.Quota{})
	rec.Changed("52:54:00:00:00:09")
	if rows := same("a new machine"); counting.n != 1 || len(rows) != 1 {
		t.Errorf("after a change: %d whole builds, %d rows", counting.n, len(rows))
	}
	db.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:01", Profile: "kiosk"}, "open", state.Quota{})
	id := rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "kiosk", Address: "192.0.2.1", Image: "sha256:0123456789abcdef0123"}, "script")
	rec.Event(ctx, id, state.BootEvent{Source: SourceAgent, Phase: "lower", Outcome: Failed, Message: "digest mismatch"})
	rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:09", Profile: "kiosk", Address: "192.0.2.9"}, "script")
	rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:09", Profile: "kiosk", Address: "192.0.2.99"}, "script")
	if rows := same("boots, a failure, a conflict"); counting.n != 1 || len(rows) != 2 || rows[0].Error != "digest mismatch" || rows[1].Conflict == "" {
		t.Errorf("after boots: %d whole builds, %+v", counting.n, rows)
	}
	db.DeleteMachine(ctx, "52:54:00:00:00:09")
	rec.Changed("52:54:00:00:00:09")
	if rows := same("a machine deleted"); len(rows) != 1 {
		t.Errorf("after a delete: %+v", rows)
	}
	// Past MaxDirty changed machines: one whole build.
	for i := range MaxDirty + 1 {
		rec.Changed(fmt.Sprintf("52:54:00:01:%02x:%02x", i/256, i%256))
	}
	same("many changes")
	if counting.n != 2 {
		t.Errorf("after %d changes: %d whole builds, want 2", MaxDirty+1, counting.n)
	}
}

type countingView struct {
	*state.DB
	n int
}

func (c *countingView) Machines(ctx context.Context) ([]state.Machine, error) {
	c.n++
	return c.DB.Machines(ctx)
}

// TestStatusStreamsBounded: past MaxStreams, a new event stream is
// refused, and a closed one makes room.
func TestStatusStreamsBounded(t *testing.T) {
	page := &StatusPage{Rec: NewRecorder(nil, nil, nil), MaxStreams: 2}
	srv := httptest.NewServer(http.HandlerFunc(page.Events))
	defer srv.Close()
	var open []*http.Response
	for range 2 {
		r, err := http.Get(srv.URL)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("stream: %v %v", r, err)
		}
		open = append(open, r)
	}
	if r, err := http.Get(srv.URL); err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third stream: %v %v", r, err)
	}
	open[0].Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get(srv.URL)
		if err == nil && r.StatusCode == 200 {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed stream made no room")
		}
		time.Sleep(50 * time.Millisecond)
	}
	open[1].Body.Close()
}
