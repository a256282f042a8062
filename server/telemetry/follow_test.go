package telemetry

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/overboot/overboot/server/state"
)

// TestFollowOtherServers: two servers' recorders over one store; a boot
// recorded at A reaches B's status stream through Follow, each change
// once; A's own stream is not told again of what it published itself.
func TestFollowOtherServers(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := NewRecorder(db, nil, nil), NewRecorder(db, nil, nil)
	subA, subB := a.hub.subscribe(), b.hub.subscribe()
	go a.Follow(ctx, db, 10*time.Millisecond)
	go b.Follow(ctx, db, 10*time.Millisecond)

	next := func(c chan []byte, who string) update {
		t.Helper()
		select {
		case m := <-c:
			var u update
			if err := json.Unmarshal(m, &u); err != nil {
				t.Fatal(err)
			}
			return u
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatalf("%s: no update", who)
		}
		return update{}
	}
	id := a.Start(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "p", Address: "192.0.2.5"}, "script")
	if u := next(subA, "A"); u.Boot == nil || u.Boot.ID != id {
		t.Fatalf("A's own update: %+v", u)
	}
	if u := next(subB, "B"); u.Boot == nil || u.Boot.ID != id || u.Boot.Phase != "script" {
		t.Fatalf("B saw %+v, want boot %d at script", u, id)
	}
	if err := a.Event(ctx, id, state.BootEvent{Source: SourceAgent, Phase: "network", Outcome: Running}); err != nil {
		t.Fatal(err)
	}
	next(subA, "A")
	if u := next(subB, "B"); u.Boot == nil || u.Boot.Phase != "network" {
		t.Fatalf("B saw %+v, want phase network", u)
	}
	// Many polls later, neither stream has heard of the boot again.
	time.Sleep(200 * time.Millisecond)
	select {
	case m := <-subA:
		t.Errorf("A told again: %s", m)
	case m := <-subB:
		t.Errorf("B told again: %s", m)
	default:
	}
}
