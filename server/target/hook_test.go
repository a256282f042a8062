package target

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestLoginHook: the hook sees every normal login's target and initiator
// before the target is looked up, so a target it adds is the one the
// login finds.
func TestLoginHook(t *testing.T) {
	lazy := "iqn.2026-11.org.overboot:lazy"
	chap := CHAP{User: "lazy-user", Secret: "lazy-secret-16ch"}
	b, err := CreateSparse(filepath.Join(t.TempDir(), "lazy.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	var seen []string
	s, addr, _, _ := startTargetServer(t, func(s *Target) {
		s.SetLoginHook(func(iqn, initiator string) {
			mu.Lock()
			seen = append(seen, iqn+" "+initiator)
			mu.Unlock()
			if iqn == lazy && initiator == "iqn.2026-11.test:m1" && !s.HasTarget(lazy, chap, initiator) {
				if err := s.AddTarget(TargetConfig{IQN: lazy, LUNs: []Backing{b}, CHAP: chap, Initiators: []string{initiator}, Exclusive: true}); err != nil {
					t.Error(err)
				}
			}
		})
	})
	// Another initiator: the hook adds nothing, the login fails.
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m2", lazy, chap); st != loginAuthFailure {
		if c != nil {
			c.Close()
		}
		t.Fatalf("login the hook did not export for: status 0x%04x", st)
	}
	c, st := testLogin(t, addr, "iqn.2026-11.test:m1", lazy, chap)
	if st != 0 {
		t.Fatalf("login to the target the hook added: status 0x%04x", st)
	}
	defer c.Close()
	mu.Lock()
	if len(seen) != 2 || seen[0] != lazy+" iqn.2026-11.test:m2" || seen[1] != lazy+" iqn.2026-11.test:m1" {
		t.Errorf("hook saw %q", seen)
	}
	mu.Unlock()
	s.SetLoginHook(nil)
}

// TestRemoveIdle: a target with a session stays, and names the session;
// without one it goes.
func TestRemoveIdle(t *testing.T) {
	s, addr, _, _ := startTargetServer(t, nil)
	c, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{User: testUser, Secret: testPass})
	if st != 0 {
		t.Fatalf("login: 0x%04x", st)
	}
	busy, ok := s.RemoveIdle(testIQN)
	if ok || len(busy) != 1 || busy[0].Initiator != "iqn.2026-11.test:m1" {
		t.Fatalf("remove with a session: %v %+v", ok, busy)
	}
	if ss := s.Sessions(); len(ss) != 1 || ss[0].Target != testIQN {
		t.Fatalf("the busy target's session went: %+v", ss)
	}
	c.Close()
	// The session ends when the target notices the closed connection.
	for i := 0; i < 500 && len(s.Sessions()) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.RemoveIdle(testIQN); !ok {
		t.Fatalf("remove without a session refused: %+v", s.Sessions())
	}
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{User: testUser, Secret: testPass}); st != loginAuthFailure {
		if c != nil {
			c.Close()
		}
		t.Fatalf("login to a removed target: 0x%04x", st)
	}
}
