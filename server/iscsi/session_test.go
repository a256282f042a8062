package iscsi

import (
	"errors"
	"net"
	"testing"
	"time"

	initiatorpkg "github.com/overboot/overboot/initagent/iscsi"
)

// testLogin logs in to iqn as initiator with the agent's initiator code
// and returns the connection or the login status.
func testLogin(t *testing.T, addr, initiator, iqn string, chap CHAP) (net.Conn, uint16) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = initiatorpkg.Login(&initiatorpkg.TCP{Conn: nc}, initiatorpkg.Options{Initiator: initiator, Target: iqn, CHAP: chap})
	var le *initiatorpkg.LoginError
	if errors.As(err, &le) {
		nc.Close()
		return nil, uint16(le.Class)<<8 | uint16(le.Detail)
	}
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	nc.SetDeadline(time.Time{})
	return nc, 0
}

func TestOneSessionPerTarget(t *testing.T) {
	addr, _, _ := startTarget(t)
	chap := CHAP{User: testUser, Secret: testPass}
	first, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	if st != 0 {
		t.Fatalf("first login: status 0x%04x", st)
	}
	defer first.Close()
	// Another initiator, even with the right secret, is refused while
	// the session lives.
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m2", testIQN, chap); st != loginAuthzFailure {
		if c != nil {
			c.Close()
		}
		t.Fatalf("second initiator: status 0x%04x, want 0x%04x", st, loginAuthzFailure)
	}
	// The same machine logging in again (it rebooted) ends the old session.
	second, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	if st != 0 {
		t.Fatalf("re-login: status 0x%04x", st)
	}
	defer second.Close()
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Errorf("the old session is still open")
	}
	// Wrong secret: authentication failure.
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m3", testIQN+"-other", CHAP{User: "machine2", Secret: "wrong-secret-123"}); st != loginAuthFailure {
		if c != nil {
			c.Close()
		}
		t.Errorf("wrong secret: status 0x%04x", st)
	}
	// No such target.
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m3", "iqn.2026-11.org.overboot:nope", chap); st != loginNotFound {
		if c != nil {
			c.Close()
		}
		t.Errorf("unknown target: status 0x%04x", st)
	}
}

func TestEndSessionsOnRemove(t *testing.T) {
	s, addr, _, _ := startTargetServer(t, nil)
	c, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{User: testUser, Secret: testPass})
	if st != 0 {
		t.Fatalf("login: 0x%04x", st)
	}
	defer c.Close()
	if got := s.Sessions(); len(got) != 1 || got[0].Target != testIQN || got[0].Initiator != "iqn.2026-11.test:m1" {
		t.Fatalf("sessions: %+v", got)
	}
	s.RemoveTarget(testIQN)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("the session outlived its target")
	}
	if c2, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{User: testUser, Secret: testPass}); st != loginNotFound {
		if c2 != nil {
			c2.Close()
		}
		t.Errorf("login to a removed target: 0x%04x", st)
	}
}

func TestSharedTargetAllowsSessions(t *testing.T) {
	addr, _, _ := startTarget(t)
	chap := CHAP{User: "machine2", Secret: "another-secret-16"}
	a, st := testLogin(t, addr, "iqn.2026-11.test:a", testIQN+"-other", chap)
	if st != 0 {
		t.Fatalf("first: 0x%04x", st)
	}
	defer a.Close()
	b, st := testLogin(t, addr, "iqn.2026-11.test:b", testIQN+"-other", chap)
	if st != 0 {
		t.Fatalf("a second initiator on a shared (not Exclusive) target: 0x%04x", st)
	}
	defer b.Close()
}
