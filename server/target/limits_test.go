package target

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/internal/iscsiwire"
	"github.com/overboot/overboot/internal/testneed"
)

// patience bounds every wait in these tests. It is far above the limits
// under test: this machine is shared and slow at times, so the tests
// assert that things happen, never how fast.
const patience = 10 * time.Second

// dialFrom opens a TCP connection to addr from the local IP from (""
// for any) and closes it when the test ends.
func dialFrom(t *testing.T, addr, from string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: patience}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	return nc, nil
}

func dialIdle(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := dialFrom(t, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// closedByServer reports whether the server closes nc within patience:
// a read ends in EOF or a reset rather than our deadline.
func closedByServer(t *testing.T, nc net.Conn) bool {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(patience))
	_, err := nc.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// waitStats waits until the server's Stats are want.
func waitStats(t *testing.T, s *Target, want Stats) {
	t.Helper()
	end := time.Now().Add(patience)
	for {
		got := s.Stats()
		if got == want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("stats %+v, want %+v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustLogin logs in to the shared (not Exclusive) test target.
func mustLogin(t *testing.T, addr, iname string) net.Conn {
	t.Helper()
	nc, st := testLogin(t, addr, iname, testIQN+"-other", CHAP{User: "machine2", Secret: "another-secret-16"})
	if st != 0 {
		t.Fatalf("login as %s: status 0x%04x", iname, st)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

var errStalled = errors.New("initiator stalled on purpose")

// stallTransport passes n login PDUs, then sends nothing more: a peer
// that starts a login and never finishes it.
type stallTransport struct {
	initiator.Transport
	n int
}

func (s *stallTransport) Send(p *iscsiwire.PDU) error {
	if s.n == 0 {
		return errStalled
	}
	s.n--
	return s.Transport.Send(p)
}

// logBuffer collects a server's log for inspection.
type logBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLimitsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out Limits
	}{
		{"zero", Limits{}, Limits{LoginTimeout: 5 * time.Second, PerAddress: 8, Total: 1024}},
		{"negative", Limits{LoginTimeout: -1, PerAddress: -1, Total: -1}, Limits{LoginTimeout: 5 * time.Second, PerAddress: 8, Total: 1024}},
		{"set", Limits{LoginTimeout: time.Second, PerAddress: 2, Total: 3}, Limits{LoginTimeout: time.Second, PerAddress: 2, Total: 3}},
		{"partly set", Limits{PerAddress: 4}, Limits{LoginTimeout: 5 * time.Second, PerAddress: 4, Total: 1024}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			s := New(nil)
			s.SetLimits(in)
			if got := s.limits.orDefaults(); got != tc.out {
				t.Errorf("effective limits %+v, want %+v", got, tc.out)
			}
			if in != tc.in || s.limits != tc.in {
				t.Errorf("defaults were written back: caller's %+v, stored %+v, set %+v", in, s.limits, tc.in)
			}
		})
	}
}

func TestRemoteHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr net.Addr
		want string
	}{
		{"IPv4", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.7:3260")), "192.0.2.7"},
		{"IPv4 via an IPv6 listener", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.7]:3260")), "192.0.2.7"},
		{"IPv6", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:3260")), "2001:db8::1"},
		{"not TCP", &net.UnixAddr{Name: "/run/x", Net: "unix"}, "/run/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := remoteHost(tc.addr); got != tc.want {
				t.Errorf("remoteHost(%v) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

// TestLoginTimeout: connections that do not complete their login are
// closed after LoginTimeout, whatever they did before going quiet.
func TestLoginTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		idle func(t *testing.T, nc net.Conn)
	}{
		{"silent", func(t *testing.T, nc net.Conn) {}},
		{"half a header", func(t *testing.T, nc net.Conn) {
			if _, err := nc.Write(make([]byte, iscsiwire.BHSLen/2)); err != nil {
				t.Fatal(err)
			}
		}},
		{"stalled in CHAP", func(t *testing.T, nc net.Conn) {
			nc.SetDeadline(time.Now().Add(patience))
			tr := &stallTransport{Transport: &initiator.TCP{Conn: nc}, n: 1}
			_, err := initiator.Login(tr, initiator.Options{Initiator: "iqn.2026-11.test:slow", Target: testIQN, CHAP: CHAP{User: testUser, Secret: testPass}})
			if !errors.Is(err, errStalled) {
				t.Fatalf("login: %v, want it stalled after the first PDU", err)
			}
			nc.SetDeadline(time.Time{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr, _, _ := startTargetServer(t, func(s *Target) { s.SetLimits(Limits{LoginTimeout: 200 * time.Millisecond}) })
			nc := dialIdle(t, addr)
			tc.idle(t, nc)
			if !closedByServer(t, nc) {
				t.Fatalf("the connection is open %v after a LoginTimeout of 200ms", patience)
			}
			waitStats(t, s, Stats{})
		})
	}
}

// TestLoggedInOutlivesLoginTimeout: the login deadline ends with the
// login; a session then idles as long as it likes.
func TestLoggedInOutlivesLoginTimeout(t *testing.T) {
	s, addr, _, _ := startTargetServer(t, func(s *Target) { s.SetLimits(Limits{LoginTimeout: 200 * time.Millisecond}) })
	sess := mustLogin(t, addr, "iqn.2026-11.test:a")
	// A connection accepted after the login has a later deadline: once
	// the server closed it, the session's deadline, had it kept one,
	// has passed too. No sleep to guess at.
	if idle := dialIdle(t, addr); !closedByServer(t, idle) {
		t.Fatalf("an idle connection is open %v after a LoginTimeout of 200ms", patience)
	}
	waitStats(t, s, Stats{Connections: 1, LoggedIn: 1})

	// The session still answers a NOP-Out.
	sess.SetDeadline(time.Now().Add(patience))
	tr := &initiator.TCP{Conn: sess}
	nop := &iscsiwire.PDU{}
	nop.BHS[0], nop.BHS[1] = OpNOPOut|0x40, 0x80 // immediate
	nop.SetITT(0x1234)
	nop.PutUint32At(20, 0xffffffff)
	if err := tr.Send(nop); err != nil {
		t.Fatalf("NOP-Out: %v", err)
	}
	r, err := tr.Recv()
	if err != nil {
		t.Fatalf("the session ended: %v", err)
	}
	if r.Opcode() != OpNOPIn || r.ITT() != 0x1234 {
		t.Errorf("answer to a NOP-Out: opcode 0x%02x ITT 0x%x", r.Opcode(), r.ITT())
	}
}

// TestConnectionCaps: a connection over a cap is closed at once (well
// before its LoginTimeout), while a real machine still logs in in the
// last free slot, which its login leaves to the next, and again once an
// idle connection goes.
func TestConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lim   Limits
		cap   int    // the cap in effect
		limit string // in the log
		// otherAddress: a connection from another address is let in
		otherAddress bool
	}{
		{"per address", Limits{PerAddress: 3, LoginTimeout: time.Minute}, 3, `limit="per address" max=3`, true},
		{"default per address", Limits{LoginTimeout: time.Minute}, 8, `limit="per address" max=8`, true},
		{"total", Limits{Total: 3, LoginTimeout: time.Minute}, 3, `limit=total max=3`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log logBuffer
			s, addr, _, _ := startTargetServer(t, func(s *Target) {
				s.SetLimits(tc.lim)
				s.log = slog.New(slog.NewTextHandler(&log, nil))
			})
			var idle []net.Conn
			for range tc.cap - 1 {
				idle = append(idle, dialIdle(t, addr))
			}
			waitStats(t, s, Stats{Connections: tc.cap - 1})
			// The idle connections leave the last slot to a machine;
			// logged in, it leaves the slot to the next.
			mustLogin(t, addr, "iqn.2026-11.test:a")
			waitStats(t, s, Stats{Connections: tc.cap, LoggedIn: 1})
			idle = append(idle, dialIdle(t, addr))
			waitStats(t, s, Stats{Connections: tc.cap + 1, LoggedIn: 1})

			if !closedByServer(t, dialIdle(t, addr)) {
				t.Fatalf("a connection over the cap is open %v later (LoginTimeout %v)", patience, tc.lim.LoginTimeout)
			}
			if out := log.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, tc.limit) {
				t.Errorf("no warning with %s in the log:\n%s", tc.limit, out)
			}
			waitStats(t, s, Stats{Connections: tc.cap + 1, LoggedIn: 1})

			// An idle connection going frees its slot.
			idle[0].Close()
			waitStats(t, s, Stats{Connections: tc.cap, LoggedIn: 1})
			mustLogin(t, addr, "iqn.2026-11.test:b")
			waitStats(t, s, Stats{Connections: tc.cap + 1, LoggedIn: 2})

			// The last slot, from another address; then one more.
			if _, err := dialFrom(t, addr, "127.0.0.2"); err != nil {
				testneed.Missing(t, "needs connections from 127.0.0.2, a second loopback address (Linux routes all of 127.0.0.0/8 to lo): %v", err)
			}
			waitStats(t, s, Stats{Connections: tc.cap + 2, LoggedIn: 2})
			other, err := dialFrom(t, addr, "127.0.0.2")
			if err != nil {
				t.Fatal(err)
			}
			if tc.otherAddress {
				waitStats(t, s, Stats{Connections: tc.cap + 3, LoggedIn: 2})
			} else if !closedByServer(t, other) {
				t.Errorf("a connection from another address is open over the total cap")
			}
		})
	}
}

// TestSessionsTakeNoSlot: the caps count the connections that have not
// logged in: with as many sessions as the caps allow connections, a
// connection that has not logged in is still let in up to each cap, and
// a machine logs in yet again.
func TestSessionsTakeNoSlot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lim   Limits
		limit string // in the log
	}{
		{"total", Limits{Total: 4, PerAddress: 100, LoginTimeout: time.Minute}, `limit=total max=4`},
		{"per address", Limits{PerAddress: 4, LoginTimeout: time.Minute}, `limit="per address" max=4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4
			var log logBuffer
			s, addr, _, _ := startTargetServer(t, func(s *Target) {
				s.SetLimits(tc.lim)
				s.log = slog.New(slog.NewTextHandler(&log, nil))
			})
			for i := range n {
				mustLogin(t, addr, fmt.Sprintf("iqn.2026-11.test:s%d", i))
			}
			waitStats(t, s, Stats{Connections: n, LoggedIn: n})
			var idle []net.Conn
			for i := range n {
				idle = append(idle, dialIdle(t, addr))
				waitStats(t, s, Stats{Connections: n + i + 1, LoggedIn: n})
			}
			if !closedByServer(t, dialIdle(t, addr)) {
				t.Fatalf("a connection over the cap of %d not logged in is open %v later", n, patience)
			}
			if out := log.String(); !strings.Contains(out, tc.limit) {
				t.Errorf("no warning with %s in the log:\n%s", tc.limit, out)
			}
			idle[0].Close()
			waitStats(t, s, Stats{Connections: 2*n - 1, LoggedIn: n})
			mustLogin(t, addr, "iqn.2026-11.test:late")
			waitStats(t, s, Stats{Connections: 2 * n, LoggedIn: n + 1})
		})
	}
}

// TestFloodExpiresUnderSessions: with the caps' worth of sessions held,
// as many connections that never log in are let in, expire after
// LoginTimeout, and a machine then logs in.
func TestFloodExpiresUnderSessions(t *testing.T) {
	const n = 4
	var log logBuffer
	s, addr, _, _ := startTargetServer(t, func(s *Target) {
		s.SetLimits(Limits{Total: n, PerAddress: n, LoginTimeout: 300 * time.Millisecond})
		s.log = slog.New(slog.NewTextHandler(&log, nil))
	})
	for i := range n {
		mustLogin(t, addr, fmt.Sprintf("iqn.2026-11.test:s%d", i))
	}
	// The server counts a session as logged in just after its login
	// response: wait for it.
	waitStats(t, s, Stats{Connections: n, LoggedIn: n})
	var idle []net.Conn
	for range n {
		idle = append(idle, dialIdle(t, addr))
	}
	for _, nc := range idle {
		if !closedByServer(t, nc) {
			t.Fatalf("an idle connection is open %v after a LoginTimeout of 300ms", patience)
		}
	}
	waitStats(t, s, Stats{Connections: n, LoggedIn: n})
	// They were let in and timed out, not refused over a cap; the
	// timeouts from one address make one line (rate-limited).
	out := log.String()
	if c := strings.Count(out, "iscsi login timed out"); c != 1 || strings.Contains(out, "over the limit") {
		t.Fatalf("%d lines of logins timed out, want 1, none refused:\n%s", c, out)
	}
	mustLogin(t, addr, "iqn.2026-11.test:late")
	waitStats(t, s, Stats{Connections: n + 1, LoggedIn: n + 1})
}
