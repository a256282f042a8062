package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// TestMain stops the private PostgreSQL cluster a test started.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestConsoleMeasure runs the console section at a tiny scale on SQLite:
// the store holds the fleet it says, every page was served (the checks
// inside measureConsole: status 200, the page's own content), every
// event reached every stream, and the table names every page.
func TestConsoleMeasure(t *testing.T) { testConsoleMeasure(t, "") }

// TestConsoleMeasurePostgres is TestConsoleMeasure on PostgreSQL (a
// private cluster: skipped where the machine cannot run one, failed
// under OVERBOOT_STRICT=1).
func TestConsoleMeasurePostgres(t *testing.T) { testConsoleMeasure(t, pgtest.Database(t)) }

func testConsoleMeasure(t *testing.T, conn string) {
	dir := t.TempDir()
	spec := consoleSpec{Machines: 50, BigBoots: 3, Requests: 2, Streams: 3, Events: 2}
	f, err := measureConsole(context.Background(), dir, conn, spec, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// 50 machines: #5 waits for approval (no boot), #0 has 3 boots of 15
	// events, the other 48 one boot each: #3 booting (9 events), #7
	// failed (9), 46 up (12).
	wantBoots, wantEvents := 48+3, 3*15+9+9+46*12
	if spec.BigBoots != 3 || f.Boots != wantBoots || f.Events != wantEvents {
		t.Errorf("filled %d boots of %d events, want %d of %d", f.Boots, f.Events, wantBoots, wantEvents)
	}
	keys := map[string]bool{}
	for _, p := range f.Pages {
		keys[p.Key] = true
		if len(p.Times) != spec.Requests || p.Bytes == 0 {
			t.Errorf("%s: %d timings, %d bytes", p.Name, len(p.Times), p.Bytes)
		}
		for _, d := range p.Times {
			if d <= 0 {
				t.Errorf("%s: a time of %v", p.Name, d)
			}
		}
	}
	for _, k := range []string{"overview", "list", "search", "failed", "sorted", "machine", "pending", "changed", "machine-changed"} {
		if !keys[k] {
			t.Errorf("no figure for page %s", k)
		}
	}
	if len(f.FanOut) != spec.Events || len(f.Spread) != spec.Events || len(f.Burst) != spec.Requests {
		t.Errorf("%d fan-outs, %d spreads, %d bursts", len(f.FanOut), len(f.Spread), len(f.Burst))
	}
	// The server serves each stream from a goroutine of its own.
	if f.GoroutinesPerStream < 1 || f.HeapPerStream <= 0 {
		t.Errorf("per stream: %.1f goroutines, %.0f bytes", f.GoroutinesPerStream, f.HeapPerStream)
	}
	var out bytes.Buffer
	printConsoleTable(&out, f)
	for _, p := range f.Pages {
		if !strings.Contains(out.String(), p.Name) {
			t.Errorf("the table lacks %s:\n%s", p.Name, out.String())
		}
	}
	if rs := consoleResults(f); len(rs) < len(f.Pages)+4 {
		t.Errorf("%d results", len(rs))
	}

	// What the store holds.
	ctx := context.Background()
	db, err := state.OpenStore(ctx, state.Where{Data: filepath.Join(dir, "data"), Postgres: conn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := db.Machines(ctx)
	if err != nil || len(ms) != spec.Machines {
		t.Fatalf("%d machines in the store, want %d: %v", len(ms), spec.Machines, err)
	}
	bs, err := db.Boots(ctx, consoleMAC(0), 100)
	if err != nil || len(bs) != spec.BigBoots {
		t.Fatalf("machine 0: %d boots, want %d: %v", len(bs), spec.BigBoots, err)
	}
	evs, err := db.MachineBootEvents(ctx, consoleMAC(0), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if len(evs[b.ID]) != 15 {
			t.Errorf("machine 0's boot %d: %d events, want 15", b.ID, len(evs[b.ID]))
		}
	}
	failed, err := db.Boots(ctx, consoleMAC(7), 1)
	if err != nil || len(failed) != 1 || failed[0].Outcome != telemetry.Failed {
		t.Errorf("machine 7's boot: %+v %v", failed, err)
	}
}
