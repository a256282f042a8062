package target

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/initagent/initiator"
)

// testLogin logs in to iqn as initiator with the agent's initiator code
// and returns the connection or the login status.
func testLogin(t *testing.T, addr, iname, iqn string, chap CHAP) (net.Conn, uint16) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = initiator.Login(&initiator.TCP{Conn: nc}, initiator.Options{Initiator: iname, Target: iqn, CHAP: chap})
	var le *initiator.LoginError
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
	// No such target: refused as a wrong secret is, at the CHAP
	// response (TestTargetNamesNotDisclosed).
	if c, st := testLogin(t, addr, "iqn.2026-11.test:m3", "iqn.2026-11.org.overboot:nope", chap); st != loginAuthFailure {
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
	if c2, st := testLogin(t, addr, "iqn.2026-11.test:m1", testIQN, CHAP{User: testUser, Secret: testPass}); st != loginAuthFailure {
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

// loginAs logs in with o (its ISID and TSIH) and returns the connection
// and the negotiated session, or the login status.
func loginAs(t *testing.T, addr string, o initiator.Options) (net.Conn, initiator.Negotiated, uint16) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	n, err := initiator.Login(&initiator.TCP{Conn: nc}, o)
	var le *initiator.LoginError
	if errors.As(err, &le) {
		nc.Close()
		return nil, n, le.Status()
	}
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	nc.SetDeadline(time.Time{})
	t.Cleanup(func() { nc.Close() })
	return nc, n, 0
}

// isClosed reports whether the target closed nc within a few seconds.
func isClosed(nc net.Conn) bool {
	nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := nc.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestSessionReinstatement: the same initiator logging in again with its
// ISID replaces its session while the target still thinks the old
// connection alive (a network cut): with the session's TSIH the session
// continues, with TSIH 0 it is reinstated (RFC 7143 6.3.4, 6.3.5). A TSIH
// the target does not know (it restarted) is "session does not exist".
// Another initiator, even with the session's ISID and TSIH, is refused
// and the session lives on.
func TestSessionReinstatement(t *testing.T) {
	addr, _, _ := startTarget(t)
	me := initiator.Options{Initiator: "iqn.2026-11.test:m1", Target: testIQN, CHAP: CHAP{User: testUser, Secret: testPass}, ISID: [6]byte{0x80, 0, 0x23, 0x42, 0, 1}}
	first, n1, st := loginAs(t, addr, me)
	if st != 0 || n1.TSIH == 0 {
		t.Fatalf("first login: status 0x%04x, TSIH %d", st, n1.TSIH)
	}

	other := me
	other.Initiator, other.TSIH = "iqn.2026-11.test:m2", n1.TSIH
	if _, _, st := loginAs(t, addr, other); st != loginAuthzFailure {
		t.Errorf("another initiator with the session's ISID and TSIH: status 0x%04x, want 0x%04x", st, loginAuthzFailure)
	}

	cont := me
	cont.TSIH = n1.TSIH
	second, n2, st := loginAs(t, addr, cont)
	if st != 0 {
		t.Fatalf("continuing the session: status 0x%04x", st)
	}
	if n2.TSIH != n1.TSIH {
		t.Errorf("the continued session has TSIH %d, want %d", n2.TSIH, n1.TSIH)
	}
	if !isClosed(first) {
		t.Errorf("the replaced connection is still open")
	}

	third, n3, st := loginAs(t, addr, me) // TSIH 0: reinstatement
	if st != 0 {
		t.Fatalf("reinstating the session: status 0x%04x", st)
	}
	if n3.TSIH == 0 || n3.TSIH == n1.TSIH {
		t.Errorf("the reinstated session has TSIH %d, want a new one", n3.TSIH)
	}
	if !isClosed(second) {
		t.Errorf("the reinstated session's old connection is still open")
	}

	gone := me
	gone.TSIH = n3.TSIH + 100
	if _, _, st := loginAs(t, addr, gone); st != loginNoSession {
		t.Errorf("an unknown TSIH: status 0x%04x, want 0x%04x (session does not exist)", st, loginNoSession)
	}
	third.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a refused login ended the live session: %v", err)
	}
}

// TestReinstatementAfterRestart: a target that restarted knows no
// session: the initiator's TSIH is refused, TSIH 0 gets in.
func TestReinstatementAfterRestart(t *testing.T) {
	addr, _, _ := startTarget(t)
	o := initiator.Options{Initiator: "iqn.2026-11.test:m1", Target: testIQN, CHAP: CHAP{User: testUser, Secret: testPass}, ISID: [6]byte{0x80, 0, 0x23, 0x42, 0, 1}, TSIH: 7}
	if _, _, st := loginAs(t, addr, o); st != loginNoSession {
		t.Fatalf("an old TSIH after a restart: status 0x%04x, want 0x%04x", st, loginNoSession)
	}
	o.TSIH = 0
	if _, _, st := loginAs(t, addr, o); st != 0 {
		t.Fatalf("TSIH 0 after a restart: status 0x%04x", st)
	}
}

// TestSharedTargetReinstatement: a shared target keeps an initiator's
// sessions with other ISIDs; TSIH 0 with a live session's ISID replaces
// that one only.
func TestSharedTargetReinstatement(t *testing.T) {
	addr, _, _ := startTarget(t)
	a := initiator.Options{Initiator: "iqn.2026-11.test:m1", Target: testIQN + "-other", CHAP: CHAP{User: "machine2", Secret: "another-secret-16"}, ISID: [6]byte{0x80, 0, 0, 0, 0, 1}}
	b := a
	b.ISID[5] = 2
	ca, _, st := loginAs(t, addr, a)
	if st != 0 {
		t.Fatalf("ISID a: 0x%04x", st)
	}
	cb, _, st := loginAs(t, addr, b)
	if st != 0 {
		t.Fatalf("ISID b: 0x%04x", st)
	}
	if _, _, st := loginAs(t, addr, a); st != 0 {
		t.Fatalf("ISID a again: 0x%04x", st)
	}
	if !isClosed(ca) {
		t.Errorf("ISID a's old session is still open")
	}
	cb.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := cb.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ISID b's session ended: %v", err)
	}
}

// gateBacking is a writable LUN whose writes wait for the test.
type gateBacking struct {
	*FileBacking
	entered chan struct{} // a write has started
	release chan struct{} // closed: writes go on
	written atomic.Bool   // a write has returned
}

func (g *gateBacking) WriteAt(p []byte, off int64) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	n, err := g.FileBacking.WriteAt(p, off)
	g.written.Store(true)
	return n, err
}

// writeCommand is a WRITE(10) of one block at LBA 0 with its data
// immediate.
func writeCommand(cmdSN, expStatSN uint32) *PDU {
	p := &PDU{Data: make([]byte, BlockSize)}
	p.BHS[0] = OpSCSICommand
	p.BHS[1] = 0x80 | 0x20 | 0x01 // final, write, simple
	p.SetITT(1)
	p.PutUint32At(20, BlockSize)
	p.PutUint32At(24, cmdSN)
	p.PutUint32At(28, expStatSN)
	p.BHS[32], p.BHS[40] = 0x2a, 1 // WRITE(10), 1 block
	return p
}

// TestReinstatementWaitsForCommands: a login that replaces a session
// answers only once the old connection's write has landed (a write still
// running must not land over the initiator's retry), and gives up with
// "service unavailable" when it does not finish in time.
func TestReinstatementWaitsForCommands(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release time.Duration // when the old write goes on
		want    uint16
	}{
		{"write finishes", 500 * time.Millisecond, 0},
		{"write hangs", reinstateWait + 2*time.Second, loginUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb, err := CreateSparse(filepath.Join(t.TempDir(), "rw.img"), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			g := &gateBacking{FileBacking: fb, entered: make(chan struct{}, 1), release: make(chan struct{})}
			s := New(nil)
			chap := CHAP{User: testUser, Secret: testPass}
			if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: []Backing{g}, CHAP: chap, Exclusive: true}); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Serve(ctx, ln); close(done) }()
			released := false
			t.Cleanup(func() {
				if !released {
					close(g.release)
				}
				cancel()
				<-done
				fb.Close()
			})
			o := initiator.Options{Initiator: "iqn.2026-11.test:m1", Target: testIQN, CHAP: chap, ISID: [6]byte{0x80, 0, 0, 0, 0, 1}}
			old, n, st := loginAs(t, ln.Addr().String(), o)
			if st != 0 {
				t.Fatalf("login: 0x%04x", st)
			}
			b, err := writeCommand(0, n.ExpStatSN).Marshal(Digests{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Write(b); err != nil {
				t.Fatal(err)
			}
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the write never reached the LUN")
			}
			time.AfterFunc(tc.release, func() { close(g.release) })
			released = true
			_, _, st = loginAs(t, ln.Addr().String(), o)
			if st != tc.want {
				t.Fatalf("the replacing login: status 0x%04x, want 0x%04x", st, tc.want)
			}
			if st == 0 && !g.written.Load() {
				t.Errorf("the new session got in while the old one's write was still running")
			}
		})
	}
}
