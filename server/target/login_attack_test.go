package target

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/internal/iscsiwire"
	"github.com/overboot/overboot/internal/testneed"
)

// rawLogin drives a login PDU by PDU, as an attacker or a picky test
// would: any flags, any keys.
type rawLogin struct {
	t    *testing.T
	nc   net.Conn
	tr   *initiator.TCP
	itt  uint32
	isid [6]byte
	tsih uint16
}

func newRawLogin(t *testing.T, addr string) *rawLogin {
	t.Helper()
	nc := dialIdle(t, addr)
	nc.SetDeadline(time.Now().Add(patience))
	return &rawLogin{t: t, nc: nc, tr: &initiator.TCP{Conn: nc}, isid: [6]byte{0x80, 0, 0, 0, 0, 9}}
}

// loginFlags are a login request's byte 1: T and C bits, CSG, NSG.
func loginFlags(csg, nsg int, transit, cont bool) byte {
	b := byte(csg<<2) | byte(nsg)
	if transit {
		b |= 0x80
	}
	if cont {
		b |= 0x40
	}
	return b
}

// send sends one login request with data as its text.
func (r *rawLogin) send(flags byte, data []byte) error {
	p := &iscsiwire.PDU{Data: data}
	p.BHS[0] = OpLogin | 0x40
	p.BHS[1] = flags
	copy(p.BHS[8:14], r.isid[:])
	p.PutUint16At(14, r.tsih)
	p.SetITT(r.itt)
	r.itt++
	return r.tr.Send(p)
}

// loginAnswer is a login response: its status and keys.
type loginAnswer struct {
	status  uint16
	flags   byte
	kvs     []KV
	pdu     *PDU
	textErr error
}

func (r *rawLogin) recv() (loginAnswer, error) {
	p, err := r.tr.Recv()
	if err != nil {
		return loginAnswer{}, err
	}
	if p.Opcode() != OpLoginResp {
		r.t.Fatalf("opcode 0x%02x in answer to a login request", p.Opcode())
	}
	kvs, err := ParseText(p.Data)
	return loginAnswer{status: p.Uint16At(36), flags: p.BHS[1], kvs: kvs, pdu: p, textErr: err}, nil
}

// step sends one login request with kvs and returns the answer; an
// error is the connection's end.
func (r *rawLogin) step(csg, nsg int, transit bool, kvs ...KV) (loginAnswer, error) {
	if err := r.send(loginFlags(csg, nsg, transit, false), MarshalText(kvs)); err != nil {
		return loginAnswer{}, err
	}
	return r.recv()
}

func kv(k, v string) KV { return KV{Key: k, Value: v} }

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLoginTextBounded: text continued with the C bit is held only up
// to the text limit, and a connection sends only so many login PDUs:
// past either, the login is refused (status class 2, initiator error)
// and the connection closed. It held every byte until a PDU without the
// C bit came (197 MiB in 3.5s from one connection) and took PDUs without
// end until LoginTimeout.
func TestLoginTextBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int    // PDUs the attacker sends at most
		data int    // bytes of text in each
		cont bool   // with the C bit
		text string // the text, repeated; NULs (empty pairs) by default
	}{
		{"continued 8 KiB PDUs", 2000, loginMaxData, true, ""},
		{"continued empty PDUs", 5000, 0, true, ""},
		{"security PDUs that go nowhere", 5000, 0, false, "X-junk=1\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, _, _ := startTargetServer(t, func(s *Target) { s.SetLimits(Limits{LoginTimeout: time.Minute}) })
			r := newRawLogin(t, addr)
			r.nc.SetDeadline(time.Now().Add(time.Minute))
			first := MarshalText([]KV{kv("InitiatorName", "iqn.2026-11.test:flood"), kv("SessionType", "Normal"), kv("TargetName", testIQN), kv("AuthMethod", "CHAP")})
			if tc.cont {
				first = nil
			}
			data := make([]byte, tc.data)
			if tc.text != "" {
				data = []byte(tc.text)
			}
			// In step: each request waits for its answer, so that the
			// server's close after a refusal finds nothing unread (which
			// would reset the connection and lose the refusal).
			before := heapInUse()
			var (
				answers int
				status  uint16
				end     error
				grown   int64
			)
			for i := 0; i <= tc.n; i++ {
				text := data
				if i == 0 {
					text = first
				}
				if i == tc.n/2 {
					grown = int64(heapInUse()) - int64(before)
				}
				if err := r.send(loginFlags(0, 0, false, tc.cont), text); err != nil {
					end = err
					break
				}
				a, err := r.recv()
				if err != nil {
					end = err
					break
				}
				answers++
				if a.status != 0 {
					status = a.status
					_, end = r.recv() // the server closes
					break
				}
			}
			if g := int64(heapInUse()) - int64(before); g > grown {
				grown = g
			}
			t.Logf("%d answers, heap grew %d KiB, status 0x%04x, end %v", answers, grown>>10, status, end)
			if grown > 4<<20 {
				t.Errorf("the heap grew by %d MiB from one connection that never authenticated", grown>>20)
			}
			if status != loginInitiatorError {
				t.Errorf("the login ended with status 0x%04x, want 0x%04x (initiator error)", status, loginInitiatorError)
			}
			var ne net.Error
			if end == nil || errors.As(end, &ne) && ne.Timeout() {
				t.Errorf("the connection was not closed: %v", end)
			}
			if answers > 100 {
				t.Errorf("%d login PDUs answered: no limit", answers)
			}
		})
	}
}

// TestConnectionsBeforeLoginHoldLittle: a connection that has not
// logged in costs little memory, since a flood holds the caps' worth of
// them (1024 by default). Each had a 256 KiB read buffer (256 MiB for
// the default total cap); the buffer grows once the login is done.
func TestConnectionsBeforeLoginHoldLittle(t *testing.T) {
	const n = 64
	s, addr, _, _ := startTargetServer(t, func(s *Target) { s.SetLimits(Limits{PerAddress: n, LoginTimeout: time.Minute}) })
	before := heapInUse()
	for range n {
		dialIdle(t, addr)
	}
	waitStats(t, s, Stats{Connections: n})
	grown := int64(heapInUse()) - int64(before)
	t.Logf("%d connections not logged in: the heap grew %d KiB", n, grown>>10)
	if per := grown / n; per > 32<<10 {
		t.Errorf("a connection not logged in holds %d KiB", per>>10)
	}
}

// challenged is where a login stands once the target has sent its CHAP
// challenge.
type challenged struct {
	first, offer loginAnswer // the answers to the names and to CHAP_A
	alg          string
	id           byte
	challenge    []byte
}

// startCHAP begins a normal login to iqn as initiator, offering the
// CHAP algorithms algs, up to the target's challenge.
func (r *rawLogin) startCHAP(initiator, iqn, algs string) challenged {
	r.t.Helper()
	var ch challenged
	var err error
	ch.first, err = r.step(0, 0, false, kv("InitiatorName", initiator), kv("SessionType", "Normal"), kv("TargetName", iqn), kv("AuthMethod", "CHAP"))
	if err != nil || ch.first.status != 0 {
		r.t.Fatalf("first login request: status 0x%04x, %v", ch.first.status, err)
	}
	ch.offer, err = r.step(0, 0, false, kv("CHAP_A", algs))
	if err != nil || ch.offer.status != 0 {
		r.t.Fatalf("CHAP_A: status 0x%04x, %v", ch.offer.status, err)
	}
	ch.alg, _ = iscsiwire.Lookup(ch.offer.kvs, "CHAP_A")
	idS, _ := iscsiwire.Lookup(ch.offer.kvs, "CHAP_I")
	cS, _ := iscsiwire.Lookup(ch.offer.kvs, "CHAP_C")
	id, err1 := strconv.Atoi(idS)
	c, err2 := iscsiwire.DecodeBinary(cS)
	if err1 != nil || err2 != nil || id < 0 || id > 255 {
		r.t.Fatalf("the target's challenge: CHAP_I=%q CHAP_C=%q", idS, cS)
	}
	ch.id, ch.challenge = byte(id), c
	return ch
}

// respond answers the challenge as chap would, with transit to nsg (1
// or 3), and returns the answer; an error is the connection's end.
func (r *rawLogin) respond(ch challenged, chap CHAP, nsg int, more ...KV) (loginAnswer, error) {
	r.t.Helper()
	alg := ch.alg
	if alg == "" {
		alg = iscsiwire.ChapMD5
	}
	resp, err := iscsiwire.ChapResponseAlg(alg, ch.id, chap.Secret, ch.challenge)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.step(0, nsg, true, append([]KV{kv("CHAP_N", chap.User), kv("CHAP_R", iscsiwire.EncodeBinary(resp))}, more...)...)
}

// operational ends a login from stage 1 into full feature phase.
func (r *rawLogin) operational() (loginAnswer, error) {
	return r.step(1, 3, true, kv("HeaderDigest", "None"), kv("DataDigest", "None"), kv("MaxRecvDataSegmentLength", "262144"))
}

// refused: a login step that did not get in, by a status or by the end
// of the connection.
func refused(a loginAnswer, err error) bool { return err != nil || a.status != 0 }

// exported returns the node exported as iqn.
func exported(s *Target, iqn string) *node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[iqn]
}

// TestRevokedSecretInFlight: a login checks CHAP against the target it
// named when it began. Replacing the target (a new CHAP secret for the
// same disk) or removing it ends such logins: the old secret no longer
// gets in, not even by a login that began before the change, and the
// new secret does (on an Exclusive target the old login kept the new
// machine out).
func TestRevokedSecretInFlight(t *testing.T) {
	oldCHAP := CHAP{User: testUser, Secret: testPass}
	newCHAP := CHAP{User: testUser, Secret: "a-new-secret-of-16"}
	replace := func(t *testing.T, s *Target) {
		old := exported(s, testIQN)
		if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: old.cfg.LUNs, CHAP: newCHAP, Exclusive: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, s *Target)
		// afterCHAP: the change comes between CHAP and the
		// operational stage, else between the challenge and CHAP_R.
		afterCHAP bool
		newLogsIn bool
	}{
		{"replaced during CHAP", replace, false, true},
		{"replaced after CHAP", replace, true, true},
		{"removed during CHAP", func(t *testing.T, s *Target) { s.RemoveTarget(testIQN) }, false, false},
		{"removed after CHAP", func(t *testing.T, s *Target) { s.RemoveTarget(testIQN) }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr, _, _ := startTargetServer(t, nil)
			r := newRawLogin(t, addr)
			ch := r.startCHAP("iqn.2026-11.test:holder-of-the-old-secret", testIQN, iscsiwire.ChapMD5)
			var a loginAnswer
			var err error
			if tc.afterCHAP {
				a, err = r.respond(ch, oldCHAP, 1)
				if err != nil || a.status != 0 {
					t.Fatalf("CHAP with the secret of the day: status 0x%04x, %v", a.status, err)
				}
				tc.change(t, s)
				a, err = r.operational()
			} else {
				tc.change(t, s)
				a, err = r.respond(ch, oldCHAP, 3)
			}
			if !refused(a, err) {
				t.Errorf("a login with the revoked secret got in (status 0x%04x)", a.status)
			}
			if !tc.newLogsIn {
				return
			}
			nc, st := testLogin(t, addr, "iqn.2026-11.test:new-machine", testIQN, newCHAP)
			if st != 0 {
				t.Fatalf("the new secret: status 0x%04x", st)
			}
			nc.Close()
			if _, st := testLogin(t, addr, "iqn.2026-11.test:holder-of-the-old-secret", testIQN, oldCHAP); st != loginAuthFailure {
				t.Errorf("a new login with the old secret: status 0x%04x, want 0x%04x", st, loginAuthFailure)
			}
		})
	}
}

// TestClaimChecksTargetCurrent: a login whose target was replaced after
// it began is refused at claim as "service unavailable" (to be retried
// against the target as it is now), should AddTarget's end of the login
// race it.
func TestClaimChecksTargetCurrent(t *testing.T) {
	s, _, _, _ := startTargetServer(t, nil)
	old := exported(s, testIQN)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(s, a)
	c.initiator, c.tgt = "iqn.2026-11.test:m1", old // as the login's first request bound it
	if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: old.cfg.LUNs, CHAP: CHAP{User: testUser, Secret: "a-new-secret-of-16"}, Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	_, err := s.claim(c)
	var le *loginError
	if !errors.As(err, &le) || le.status != loginUnavailable {
		t.Fatalf("claim of a replaced target: %v, want status 0x%04x", err, loginUnavailable)
	}
}

// TestRevokedSecretDiscovery: a discovery login or session that proved
// the CHAP of a target that is then replaced or removed ends too.
func TestRevokedSecretDiscovery(t *testing.T) {
	s, addr, _, _ := startTargetServer(t, nil)
	chap := CHAP{User: testUser, Secret: testPass}
	discover := func() *rawLogin {
		r := newRawLogin(t, addr)
		a, err := r.step(0, 0, false, kv("InitiatorName", "iqn.2026-11.test:m1"), kv("SessionType", "Discovery"), kv("AuthMethod", "CHAP"))
		if err != nil || a.status != 0 {
			t.Fatalf("discovery login: status 0x%04x, %v", a.status, err)
		}
		a, err = r.step(0, 0, false, kv("CHAP_A", iscsiwire.ChapMD5))
		if err != nil || a.status != 0 {
			t.Fatalf("CHAP_A: status 0x%04x, %v", a.status, err)
		}
		idS, _ := iscsiwire.Lookup(a.kvs, "CHAP_I")
		cS, _ := iscsiwire.Lookup(a.kvs, "CHAP_C")
		id, _ := strconv.Atoi(idS)
		c, _ := iscsiwire.DecodeBinary(cS)
		a, err = r.respond(challenged{id: byte(id), challenge: c}, chap, 1)
		if err != nil || a.status != 0 {
			t.Fatalf("CHAP: status 0x%04x, %v", a.status, err)
		}
		return r
	}
	inFlight := discover()
	session := discover()
	if a, err := session.operational(); err != nil || a.status != 0 {
		t.Fatalf("discovery session: status 0x%04x, %v", a.status, err)
	}
	old := exported(s, testIQN)
	if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: old.cfg.LUNs, CHAP: CHAP{User: testUser, Secret: "a-new-secret-of-16"}, Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	if !refused(inFlight.operational()) {
		t.Errorf("a discovery login that proved the replaced secret got in")
	}
	if !closedByServer(t, session.nc) {
		t.Errorf("a discovery session that proved the replaced secret is still open")
	}
}

// TestTargetNamesNotDisclosed: before CHAP succeeds, a login learns
// nothing of which targets exist or whom they admit. A target we do not
// have, a target the initiator may not use and the right one get the
// same answers (status, flags, keys, the challenge's algorithm and
// length) up to the CHAP response, and the same refusal there (0x0201);
// the decoy challenge of the first two is never met, not by an empty
// secret, nor by the target's own.
func TestTargetNamesNotDisclosed(t *testing.T) {
	const (
		owned = testIQN + "-owned"
		owner = "iqn.2026-11.test:owner"
	)
	ownedCHAP := CHAP{User: "owner-user", Secret: "the-owners-secret"}
	_, addr, _, _ := startTargetServer(t, func(s *Target) {
		ro := exported(s, testIQN).cfg.LUNs[0]
		if err := s.AddTarget(TargetConfig{IQN: owned, LUNs: []Backing{ro}, CHAP: ownedCHAP, Initiators: []string{owner}, Exclusive: true}); err != nil {
			t.Fatal(err)
		}
	})
	cases := []struct{ name, initiator, target string }{
		{"right target", owner, owned},
		{"no such target", owner, "iqn.2026-11.org.overboot:u-alice-52-54-00-12-34-56-disk1"},
		{"another initiator", "iqn.2026-11.test:intruder", owned},
	}
	// shape is what an answer shows: status, flags, TSIH, keys and the
	// length of each value (challenges are random).
	shape := func(a loginAnswer) string {
		out := fmt.Sprintf("status 0x%04x flags 0x%02x tsih %d:", a.status, a.flags, a.pdu.Uint16At(14))
		for _, x := range a.kvs {
			switch x.Key {
			case "CHAP_I": // a random byte, in decimal
				n, err := strconv.Atoi(x.Value)
				out += fmt.Sprintf(" CHAP_I=(a byte: %v)", err == nil && n >= 0 && n <= 255)
			case "CHAP_C":
				out += fmt.Sprintf(" CHAP_C=(%d characters)", len(x.Value))
			default:
				out += " " + x.Key + "=" + x.Value
			}
		}
		return out
	}

	for _, offer := range []string{iscsiwire.ChapMD5, "7,5"} {
		for _, resp := range []struct {
			name string
			chap CHAP
		}{
			{"wrong secret", CHAP{User: ownedCHAP.User, Secret: "not-the-secret"}},
			{"empty secret", CHAP{}},
			{"empty secret, the user", CHAP{User: ownedCHAP.User}},
			{"the target's secret", ownedCHAP},
		} {
			var want []string
			for _, tc := range cases {
				if tc.name == "right target" && resp.name == "the target's secret" {
					continue // gets in, as it should
				}
				r := newRawLogin(t, addr)
				ch := r.startCHAP(tc.initiator, tc.target, offer)
				a, err := r.respond(ch, resp.chap, 1)
				if err != nil {
					t.Fatalf("%s, %s: %v", tc.name, resp.name, err)
				}
				got := []string{shape(ch.first), shape(ch.offer), shape(a)}
				if a.status != loginAuthFailure {
					t.Errorf("%s, CHAP_A=%s, %s: status 0x%04x at the response, want 0x%04x", tc.name, offer, resp.name, a.status, loginAuthFailure)
				}
				if want == nil {
					want = got
					continue
				}
				for i := range got {
					if got[i] != want[i] {
						t.Errorf("CHAP_A=%s, %s: answer %d tells the cases apart:\n%s: %s\n%s: %s", offer, resp.name, i+1, cases[0].name, want[i], tc.name, got[i])
					}
				}
			}
		}
	}

	// AuthMethod=None: refused the same way for all three.
	var want string
	for _, tc := range cases {
		r := newRawLogin(t, addr)
		a, err := r.step(0, 1, true, kv("InitiatorName", tc.initiator), kv("SessionType", "Normal"), kv("TargetName", tc.target), kv("AuthMethod", "None"))
		if err != nil {
			t.Fatal(err)
		}
		if got := shape(a); want == "" {
			want = got
		} else if got != want {
			t.Errorf("AuthMethod=None tells %s from %s: %s, %s", tc.name, cases[0].name, got, want)
		}
		if a.status != loginAuthFailure {
			t.Errorf("%s, AuthMethod=None: status 0x%04x", tc.name, a.status)
		}
	}

	// The right target with the right secret gets in.
	r := newRawLogin(t, addr)
	ch := r.startCHAP(owner, owned, iscsiwire.ChapMD5)
	if a, err := r.respond(ch, ownedCHAP, 3); err != nil || a.status != 0 {
		t.Fatalf("the owner: status 0x%04x, %v", a.status, err)
	}
}

// TestLoginFailureLogRateLimited: failed logins are logged as refused
// connections are: one line per address per 10s (and ten in all), the
// next line counting those that had none. One line per failure let any
// peer flood the log as fast as it could connect.
func TestLoginFailureLogRateLimited(t *testing.T) {
	clock := newFakeClock()
	var log logBuffer
	s, addr, _, _ := startTargetServer(t, func(s *Target) {
		s.log = slog.New(slog.NewTextHandler(&log, nil))
		s.logins.Now = clock.Now
	})
	wrong := CHAP{User: testUser, Secret: "not-the-secret-x"}
	fail := func(from string) {
		t.Helper()
		nc, err := dialFrom(t, addr, from)
		if err != nil {
			testneed.Missing(t, "needs connections from %s (Linux routes all of 127.0.0.0/8 to lo): %v", from, err)
		}
		nc.SetDeadline(time.Now().Add(patience))
		_, err = initiator.Login(&initiator.TCP{Conn: nc}, initiator.Options{Initiator: "iqn.2026-11.test:m1", Target: testIQN, CHAP: wrong})
		var le *initiator.LoginError
		if !errors.As(err, &le) || le.Status() != loginAuthFailure {
			t.Fatalf("login with a wrong secret: %v", err)
		}
		waitStats(t, s, Stats{}) // its line, if any, is written
	}
	lines := func() []string {
		var out []string
		for l := range strings.Lines(log.String()) {
			if strings.Contains(l, "iscsi login refused") {
				out = append(out, l)
			}
		}
		return out
	}
	const n = 20
	for range n {
		fail("127.0.0.1")
	}
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], " refused=1") {
		t.Fatalf("%d failed logins from one address within 10s logged %d lines, want 1:\n%s", n, len(l), strings.Join(l, ""))
	}
	fail("127.0.0.2") // another address has its own line
	if l := lines(); len(l) != 2 || !strings.Contains(l[1], "remote=127.0.0.2:") {
		t.Fatalf("another address: %d lines:\n%s", len(l), strings.Join(l, ""))
	}
	clock.Advance(10 * time.Second)
	fail("127.0.0.1")
	l := lines()
	if len(l) != 3 || !strings.Contains(l[2], fmt.Sprintf(" refused=%d", n)) {
		t.Fatalf("10s later: want a third line standing for the %d failures since the first:\n%s", n, strings.Join(l, ""))
	}
}
