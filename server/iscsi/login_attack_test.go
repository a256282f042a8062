package iscsi

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	initiatorpkg "github.com/overboot/overboot/initagent/iscsi"
	"github.com/overboot/overboot/internal/iscsiwire"
)

// rawLogin drives a login PDU by PDU, as an attacker or a picky test
// would: any flags, any keys.
type rawLogin struct {
	t    *testing.T
	nc   net.Conn
	tr   *initiatorpkg.TCP
	itt  uint32
	isid [6]byte
	tsih uint16
}

func newRawLogin(t *testing.T, addr string) *rawLogin {
	t.Helper()
	nc := dialIdle(t, addr)
	nc.SetDeadline(time.Now().Add(patience))
	return &rawLogin{t: t, nc: nc, tr: &initiatorpkg.TCP{Conn: nc}, isid: [6]byte{0x80, 0, 0, 0, 0, 9}}
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
