package iscsi

import (
	"bufio"
	"net"
	"strconv"
	"testing"
	"time"
)

// testLogin logs in to iqn as initiator with CHAP, the way an initiator
// does (security stage straight to full feature), and returns the
// connection or the login status.
func testLogin(t *testing.T, addr, initiator, iqn string, chap CHAP) (net.Conn, uint16) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(nc)
	exchange := func(transit bool, nsg int, kvs []KV) (*PDU, []KV) {
		p := &PDU{Data: MarshalText(kvs)}
		p.BHS[0] = OpLogin | 0x40
		if transit {
			p.BHS[1] = 0x80 | byte(nsg)
		}
		p.BHS[8] = 0x80 // ISID type
		p.SetITT(1)
		w, _ := p.Marshal(Digests{})
		if _, err := nc.Write(w); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := ReadPDU(r, Digests{}, 1<<16)
		if err != nil {
			t.Fatalf("login response: %v", err)
		}
		out, _ := ParseText(resp.Data)
		return resp, out
	}
	status := func(p *PDU) uint16 { return uint16(p.BHS[36])<<8 | uint16(p.BHS[37]) }
	resp, _ := exchange(false, 0, []KV{{"InitiatorName", initiator}, {"SessionType", "Normal"}, {"TargetName", iqn}, {"AuthMethod", "CHAP,None"}})
	if st := status(resp); st != 0 {
		nc.Close()
		return nil, st
	}
	resp, kvs := exchange(false, 0, []KV{{"CHAP_A", "5"}})
	if st := status(resp); st != 0 {
		nc.Close()
		return nil, st
	}
	id, _ := lookup(kvs, "CHAP_I")
	ch, _ := lookup(kvs, "CHAP_C")
	n, _ := strconv.Atoi(id)
	challenge, _ := decodeBinary(ch)
	resp, _ = exchange(true, 3, []KV{{"CHAP_N", chap.User}, {"CHAP_R", encodeBinary(chapResponse(byte(n), chap.Secret, challenge))}})
	if st := status(resp); st != 0 {
		nc.Close()
		return nil, st
	}
	nc.SetReadDeadline(time.Time{})
	return nc, 0
}

func TestOneSessionPerTarget(t *testing.T) {
	addr, _, _ := startTarget(t)
	chap := CHAP{testUser, testPass}
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
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m3", testIQN+"-other", CHAP{"machine2", "wrong-secret-123"}); st != loginAuthFailure {
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
	s, addr, _, _ := startTargetServer(t)
	c, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{testUser, testPass})
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
	if c2, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{testUser, testPass}); st != loginNotFound {
		if c2 != nil {
			c2.Close()
		}
		t.Errorf("login to a removed target: 0x%04x", st)
	}
}
