package telemetry

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/overboot/overboot/server/state"
)

// TestDownloadRecorded: a download is an event of the latest boot of the
// address it went to, with its bytes and how long it took; a download
// to an address without a boot records nothing.
func TestDownloadRecorded(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	rec := NewRecorder(db, NewMetrics(Gauges{}), nil)
	earlier := rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, "script")
	id := rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, "script")
	other := rec.Start(ctx, state.Boot{MAC: "52:54:00:00:00:02", Profile: "lab", Address: "192.0.2.2"}, "script")
	rec.Download(ctx, "192.0.2.1", "kernel", 12<<20, 0.75)
	rec.Download(ctx, "192.0.2.1", "initramfs", 3<<20, 0.25)
	rec.Download(ctx, "192.0.2.9", "kernel", 1, 1) // no boot from there

	got, err := db.BootEvents(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.BootEvent{
		{Source: SourceServer, Phase: "script", Outcome: OK},
		{Source: SourceServer, Phase: "kernel", Outcome: OK, Bytes: 12 << 20, Seconds: 0.75},
		{Source: SourceServer, Phase: "initramfs", Outcome: OK, Bytes: 3 << 20, Seconds: 0.25},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(state.BootEvent{}, "At")); diff != "" {
		t.Errorf("events of the address's latest boot (-want +got):\n%s", diff)
	}
	for _, b := range []int64{earlier, other} {
		if evs, err := db.BootEvents(ctx, b); err != nil || len(evs) != 1 {
			t.Errorf("boot %d: events %+v, %v; want its script only", b, evs, err)
		}
	}
}
