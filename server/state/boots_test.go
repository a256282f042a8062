package state

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bootAt starts a boot at the clock's now, its first event the server's
// script, then adds events, each one a second after the one before: the
// clock ends at the last event.
func bootAt(t *testing.T, d *DB, now *time.Time, b Boot, events ...BootEvent) Boot {
	t.Helper()
	ctx := context.Background()
	b, err := d.StartBoot(ctx, b, BootEvent{Source: "server", Phase: "script", Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		*now = now.Add(time.Second)
		if _, err := d.AddBootEvent(ctx, b.ID, e); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func agent(phase, outcome string) BootEvent {
	return BootEvent{Source: "agent", Phase: phase, Outcome: outcome}
}

// TestRootTimes: the boots started since that reached the agent's
// switch_root, newest first, with their first switch_root event's time;
// boots that stopped before, started before since, or whose switch_root
// came from the server only, are left out.
func TestRootTimes(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		t0 := time.Unix(1_800_000_000, 0).UTC()
		now := t0
		d.SetClock(func() time.Time { return now })
		const m1, m2 = "52:54:00:00:00:01", "52:54:00:00:00:02"

		bootAt(t, d, &now, Boot{MAC: m1, Profile: "lab", Address: "192.0.2.1", Image: "sha256:old"},
			agent("early", "running"), agent("switch_root", "running")) // before since
		since := now.Add(time.Minute)
		now = since
		a := bootAt(t, d, &now, Boot{MAC: m1, Profile: "lab", Address: "192.0.2.1", Image: "sha256:aa"},
			agent("early", "running"), agent("early", "ok"), agent("switch_root", "running"), agent("switch_root", "failed"))
		aRoot := since.Add(3 * time.Second)
		now = now.Add(time.Minute)
		bootAt(t, d, &now, Boot{MAC: m2, Profile: "lab", Address: "192.0.2.2", Image: "sha256:aa"},
			agent("early", "running"), agent("lower", "failed")) // never reached its root
		now = now.Add(time.Minute)
		bootAt(t, d, &now, Boot{MAC: m2, Profile: "lab", Address: "192.0.2.2", Image: "sha256:aa"},
			BootEvent{Source: "server", Phase: "switch_root", Outcome: "ok"}) // not the agent's
		now = now.Add(time.Minute)
		bStart := now
		b := bootAt(t, d, &now, Boot{MAC: m2, Profile: "kiosk", Address: "192.0.2.2", Image: "sha256:bb"},
			agent("early", "running"), agent("network", "running"), agent("document", "running"), agent("switch_root", "running"))
		bRoot := now

		got, err := d.RootTimes(ctx, since, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []RootTime{
			{BootID: b.ID, MAC: m2, Profile: "kiosk", Image: "sha256:bb", Started: bStart, Root: bRoot},
			{BootID: a.ID, MAC: m1, Profile: "lab", Image: "sha256:aa", Started: since, Root: aRoot},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("RootTimes (-want +got):\n%s", diff)
		}
		got, err = d.RootTimes(ctx, since, 1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want[:1], got); diff != "" {
			t.Errorf("RootTimes limit 1 (-want +got):\n%s", diff)
		}
		if got, err := d.RootTimes(ctx, now.Add(time.Second), 10); err != nil || len(got) != 0 {
			t.Errorf("RootTimes since after every boot: %+v, %v", got, err)
		}
		if _, err := d.RootTimes(ctx, since, 0); err == nil {
			t.Error("RootTimes limit 0: no error")
		}
	})
}

// TestMachineBootEvents: the events of a machine's latest boots, each
// boot's in order, and no other machine's.
func TestMachineBootEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0).UTC()
		d.SetClock(func() time.Time { return now })
		const m1, m2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
		var ids []int64
		for i := range 4 {
			b := bootAt(t, d, &now, Boot{MAC: m1, Profile: "lab", Address: "192.0.2.1"}, agent("early", "running"))
			ids = append(ids, b.ID)
			// Another machine's boot between: its events interleave.
			bootAt(t, d, &now, Boot{MAC: m2, Profile: "lab", Address: "192.0.2.2"}, agent("early", "running"))
			for range i {
				now = now.Add(time.Second)
				if _, err := d.AddBootEvent(ctx, b.ID, BootEvent{Source: "server", Phase: "kernel", Outcome: "ok", Seconds: 0.5, Bytes: int64(i) << 20}); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, err := d.MachineBootEvents(ctx, m1, 3)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64][]BootEvent{}
		for _, id := range ids[1:] {
			evs, err := d.BootEvents(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			want[id] = evs
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("MachineBootEvents (-want +got):\n%s", diff)
		}
		// The latest boot: script, early, then its three kernel events.
		var phases []string
		for _, e := range got[ids[3]] {
			phases = append(phases, e.Phase)
		}
		if diff := cmp.Diff([]string{"script", "early", "kernel", "kernel", "kernel"}, phases); diff != "" {
			t.Errorf("latest boot's phases (-want +got):\n%s", diff)
		}
		if got, err := d.MachineBootEvents(ctx, "52:54:00:00:00:09", 3); err != nil || len(got) != 0 {
			t.Errorf("a machine without boots: %v, %v", got, err)
		}
		if _, err := d.MachineBootEvents(ctx, m1, 0); err == nil {
			t.Error("limit 0: no error")
		}
	})
}
