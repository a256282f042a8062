package state

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestServerRegistry(t *testing.T) { eachStore(t, testServerRegistry) }

func testServerRegistry(t *testing.T, d *DB) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000).UTC()
	d.SetClock(func() time.Time { return now })

	a := ServerInfo{Name: "a", Instance: "run1", URLs: []string{"http://192.0.2.1:8080", "http://[2001:db8::1]:8080"}, Portal: "192.0.2.1:3260", Version: "v1"}
	if err := d.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Another process under the same name while the first beats: refused,
	// and the row is still the first's.
	if err := d.Register(ctx, ServerInfo{Name: "a", Instance: "run2"}); !errors.Is(err, ErrServerRunning) {
		t.Fatalf("second instance under a live name: %v, want ErrServerRunning", err)
	}
	// Runs on one data directory (DIR.RUN): the new one takes over at
	// once; another directory's is refused.
	if err := d.Register(ctx, ServerInfo{Name: "c", Instance: "dir1.r1"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(ctx, ServerInfo{Name: "c", Instance: "dir1.r2"}); err != nil {
		t.Fatalf("a restart on the same data directory: %v", err)
	}
	if err := d.Register(ctx, ServerInfo{Name: "c", Instance: "dir2.r1"}); !errors.Is(err, ErrServerRunning) {
		t.Fatalf("another data directory under a live name: %v", err)
	}
	if err := d.Beat(ctx, "c", "dir1.r1"); !errors.Is(err, ErrServerTaken) {
		t.Fatalf("the killed run's beat: %v", err)
	}
	if err := d.ForgetServer(ctx, "c"); err == nil {
		t.Fatal("forgot a running server")
	}
	got, err := d.Server(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Instance != "run1" || !slices.Equal(got.URLs, a.URLs) || got.Portal != a.Portal || !got.Up(now) {
		t.Fatalf("registered %+v, want %+v up", got, a)
	}
	now = now.Add(Heartbeat)
	if err := d.Beat(ctx, "a", "run1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Server(ctx, "a"); !got.Heartbeat.Equal(now) {
		t.Fatalf("heartbeat %v, want %v", got.Heartbeat, now)
	}
	// Silent for StaleAfter: down, and another instance may take the name;
	// the old one's beats then fail.
	now = now.Add(StaleAfter)
	if got, _ := d.Server(ctx, "a"); got.Up(now) {
		t.Fatal("a server silent for StaleAfter is up")
	}
	if err := d.ForgetServer(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("forget an unknown server: %v", err)
	}
	if err := d.Register(ctx, ServerInfo{Name: "a", Instance: "run2", URLs: []string{"http://192.0.2.9"}}); err != nil {
		t.Fatalf("take over a silent name: %v", err)
	}
	if err := d.Beat(ctx, "a", "run1"); !errors.Is(err, ErrServerTaken) {
		t.Fatalf("old instance's beat: %v, want ErrServerTaken", err)
	}
	// The old instance's stop leaves the new one's row alone.
	if err := d.Unregister(ctx, "a", "run1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Server(ctx, "a"); !got.Up(now) || got.Instance != "run2" {
		t.Fatalf("after the old instance stopped: %+v", got)
	}
	if err := d.ForgetServer(ctx, "a"); err == nil {
		t.Fatal("forgot a running server")
	}
	// A clean stop: down at once, and the name is free.
	if err := d.Unregister(ctx, "a", "run2"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Server(ctx, "a"); got.Up(now) || got.Stopped.IsZero() {
		t.Fatalf("stopped server: %+v", got)
	}
	if err := d.Beat(ctx, "a", "run2"); !errors.Is(err, ErrServerTaken) {
		t.Fatalf("beat after stop: %v", err)
	}
	if err := d.Register(ctx, ServerInfo{Name: "b", Instance: "x"}); err != nil {
		t.Fatal(err)
	}
	all, err := d.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Name != "a" || all[1].Name != "b" || all[2].Name != "c" {
		t.Fatalf("servers %+v", all)
	}
	if err := d.ForgetServer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Server(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("forgotten server: %v", err)
	}
	for _, bad := range []ServerInfo{{Name: "", Instance: "x"}, {Name: "c"}, {Name: "c", Instance: "x", URLs: []string{"http://a b"}}} {
		if err := d.Register(ctx, bad); err == nil {
			t.Errorf("registered %+v", bad)
		}
	}
}
