package initiator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/iscsiwire"
	"github.com/overboot/overboot/server/target"
)

const iqn = "iqn.2026-11.org.overboot:m1"

var (
	machineCHAP = iscsiwire.CHAP{User: "m1", Secret: "machine-secret-1"}
	serverCHAP  = iscsiwire.CHAP{User: "overboot", Secret: "server-secret-16"}
)

func startTarget(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := target.OpenFile(img, true)
	if err != nil {
		t.Fatal(err)
	}
	s := target.New(nil)
	if err := s.AddTarget(target.TargetConfig{IQN: iqn, LUNs: []target.Backing{b}, CHAP: machineCHAP, MutualCHAP: &serverCHAP}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; b.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *TCP {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &TCP{Conn: nc}
}

func TestLoginMutualCHAPAndDigests(t *testing.T) {
	addr := startTarget(t)
	tr := dial(t, addr)
	n, err := Login(tr, Options{Initiator: "iqn.2026-11.test:m1", Target: iqn, CHAP: machineCHAP, TargetCHAP: &serverCHAP, Digest: "CRC32C"})
	if err != nil {
		t.Fatal(err)
	}
	if !n.HeaderDigest || !n.DataDigest || n.TSIH == 0 || n.MaxXmitDataSegmentLength < 8192 {
		t.Fatalf("negotiated %+v", n)
	}
	// Full feature phase with CRC32C on both digests: a NOP ping.
	tr.Digests = iscsiwire.Digests{Header: true, Data: true}
	p := &iscsiwire.PDU{Data: []byte("ping")}
	p.BHS[0], p.BHS[1] = iscsiwire.OpNOPOut|0x40, 0x80
	p.SetITT(77)
	p.PutUint32At(20, 0xffffffff)
	if err := tr.Send(p); err != nil {
		t.Fatal(err)
	}
	r, err := tr.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.Opcode() != iscsiwire.OpNOPIn || r.ITT() != 77 || string(r.Data) != "ping" {
		t.Fatalf("NOP-In: opcode 0x%02x itt %d data %q", r.Opcode(), r.ITT(), r.Data)
	}
}

func TestLoginRefusals(t *testing.T) {
	addr := startTarget(t)
	for _, tc := range []struct {
		name string
		o    Options
		want func(error) bool
	}{
		{"wrong secret", Options{Target: iqn, CHAP: iscsiwire.CHAP{User: "m1", Secret: "not-the-secret!"}}, func(err error) bool {
			var le *LoginError
			return errors.As(err, &le) && le.Class == 2 && le.Detail == 1
		}},
		{"unknown target", Options{Target: iqn + "x", CHAP: machineCHAP}, func(err error) bool {
			// The target answers as for a wrong secret: which targets
			// exist is not told before CHAP succeeds.
			var le *LoginError
			return errors.As(err, &le) && le.Class == 2 && le.Detail == 1
		}},
		{"impostor target", Options{Target: iqn, CHAP: machineCHAP, TargetCHAP: &iscsiwire.CHAP{User: "overboot", Secret: "what-we-expect!!"}}, func(err error) bool {
			return errors.Is(err, ErrTargetAuth)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Initiator = "iqn.2026-11.test:m1"
			_, err := Login(dial(t, addr), tc.o)
			if !tc.want(err) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && (contains(err.Error(), string(machineCHAP.Secret)) || contains(err.Error(), string(serverCHAP.Secret))) {
				t.Errorf("a secret in the error: %v", err)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// hostileTarget answers a login as a target that wants something of the
// initiator: a challenge of its choosing, and then a response made by
// respond from the initiator's own challenge.
type hostileTarget struct {
	challenge []byte
	respond   func(id byte, challenge []byte) (name, resp string)
	step      int
	last      []iscsiwire.KV
}

func (h *hostileTarget) Send(p *iscsiwire.PDU) error {
	kvs, err := iscsiwire.ParseText(p.Data)
	h.last = kvs
	return err
}

func (h *hostileTarget) Recv() (*iscsiwire.PDU, error) {
	h.step++
	var kvs []iscsiwire.KV
	switch h.step {
	case 1:
		kvs = []iscsiwire.KV{{Key: "AuthMethod", Value: "CHAP"}}
	case 2:
		kvs = []iscsiwire.KV{{Key: "CHAP_A", Value: iscsiwire.ChapMD5}, {Key: "CHAP_I", Value: "7"}, {Key: "CHAP_C", Value: iscsiwire.EncodeBinary(h.challenge)}}
	case 3:
		idS, _ := iscsiwire.Lookup(h.last, "CHAP_I")
		chS, _ := iscsiwire.Lookup(h.last, "CHAP_C")
		var id int
		fmt.Sscan(idS, &id)
		c, _ := iscsiwire.DecodeBinary(chS)
		name, resp := h.respond(byte(id), c)
		kvs = []iscsiwire.KV{{Key: "CHAP_N", Value: name}, {Key: "CHAP_R", Value: resp}}
	default:
		return nil, errors.New("the login went on past the security phase")
	}
	r := &iscsiwire.PDU{Data: iscsiwire.MarshalText(kvs)}
	r.BHS[0] = iscsiwire.OpLoginResp
	return r, nil
}

// TestLoginRefusesHostileTarget: the initiator refuses a target whose
// challenge is short, a target secret equal to its own, and a target
// that answers the initiator's challenge with the initiator's own
// response (a reflection).
func TestLoginRefusesHostileTarget(t *testing.T) {
	good := make([]byte, 16)
	for _, tc := range []struct {
		name string
		o    Options
		h    *hostileTarget
		want string
	}{
		{"short challenge", Options{CHAP: machineCHAP, TargetCHAP: &serverCHAP}, &hostileTarget{challenge: make([]byte, 8)}, "challenge has 8 bytes"},
		{"equal secrets", Options{CHAP: machineCHAP, TargetCHAP: &iscsiwire.CHAP{User: "overboot", Secret: machineCHAP.Secret}}, &hostileTarget{challenge: good}, "the target's CHAP secret is the initiator's own"},
		{"reflection", Options{CHAP: machineCHAP, TargetCHAP: &serverCHAP}, &hostileTarget{challenge: good, respond: func(id byte, c []byte) (string, string) {
			return "overboot", iscsiwire.EncodeBinary(iscsiwire.ChapResponse(id, machineCHAP.Secret, c))
		}}, "the initiator's own response"},
		{"no proof", Options{CHAP: machineCHAP, TargetCHAP: &serverCHAP}, &hostileTarget{challenge: good, respond: func(byte, []byte) (string, string) { return "", "" }}, "failed mutual CHAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Initiator, tc.o.Target = "iqn.2026-11.test:m1", iqn
			_, err := Login(tc.h, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
