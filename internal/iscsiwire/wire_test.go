package iscsiwire

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPDURoundTrip(t *testing.T) {
	for _, d := range []Digests{{}, {Header: true}, {Data: true}, {true, true}} {
		for _, n := range []int{0, 1, 3, 4, 5, 8192} {
			p := &PDU{Data: bytes.Repeat([]byte{0xab}, n)}
			p.BHS[0] = OpSCSICommand | 0x40
			p.BHS[1] = 0x80
			p.SetITT(0x01020304)
			p.SetLUN(1 << 48)
			wire, err := p.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			bufs, err := p.Buffers(d)
			if err != nil || !bytes.Equal(bytes.Join(bufs, nil), wire) {
				t.Fatalf("%+v %d: Buffers differ from Marshal: %v", d, n, err)
			}
			if len(wire)%4 != 0 {
				t.Errorf("%+v %d: wire length %d not a multiple of 4", d, n, len(wire))
			}
			q, err := ReadPDU(bytes.NewReader(wire), d, 1<<20)
			if err != nil {
				t.Fatalf("%+v %d: %v", d, n, err)
			}
			if q.Opcode() != OpSCSICommand || !q.Immediate() || !q.Final() || q.ITT() != 0x01020304 || q.LUN() != 1<<48 || !bytes.Equal(q.Data, p.Data) {
				t.Errorf("%+v %d: round trip changed the PDU", d, n)
			}
			if d.Header || (d.Data && n > 0) {
				bad := append([]byte(nil), wire...)
				if d.Data && n > 0 {
					bad[len(bad)-1] ^= 1 // the data digest
				} else {
					bad[BHSLen] ^= 1 // the header digest
				}
				if _, err := ReadPDU(bytes.NewReader(bad), d, 1<<20); !errors.Is(err, ErrProtocol) {
					t.Errorf("%+v %d: corrupted digest accepted: %v", d, n, err)
				}
			}
		}
	}
}

func TestReadPDULimits(t *testing.T) {
	p := &PDU{Data: make([]byte, 100)}
	wire, _ := p.Marshal(Digests{})
	if _, err := ReadPDU(bytes.NewReader(wire), Digests{}, 99); !errors.Is(err, ErrProtocol) {
		t.Errorf("over-long data segment: %v", err)
	}
	if _, err := ReadPDU(bytes.NewReader(wire[:60]), Digests{}, 1000); err == nil {
		t.Errorf("truncated PDU accepted")
	}
}

func TestText(t *testing.T) {
	kvs, err := ParseText([]byte("InitiatorName=iqn.2026-11.test:a\x00SessionType=Normal\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]KV{{"InitiatorName", "iqn.2026-11.test:a"}, {"SessionType", "Normal"}}, kvs); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got := string(MarshalText(kvs)); got != "InitiatorName=iqn.2026-11.test:a\x00SessionType=Normal\x00" {
		t.Errorf("marshal: %q", got)
	}
	for _, bad := range []string{"a=1\x00a=2\x00", "noequals\x00", "=v\x00", strings.Repeat("k", 64) + "=v\x00", "k=" + strings.Repeat("v", 8193), "k\xff=v", "bad key=v"} {
		if _, err := ParseText([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: %v", Trunc(bad), err)
		}
	}
}

func TestCHAP(t *testing.T) {
	// RFC 1994: MD5 over identifier, secret, challenge.
	secret := Secret("twelve-bytes-secret")
	ch := []byte{1, 2, 3, 4}
	want := md5.Sum(append(append([]byte{7}, secret...), ch...))
	if got := ChapResponse(7, secret, ch); !bytes.Equal(got, want[:]) {
		t.Fatalf("response %x, want %x", got, want)
	}
	c := CHAP{User: "m1", Secret: secret}
	if err := VerifyCHAP(c, 7, ch, "m1", EncodeBinary(want[:])); err != nil {
		t.Errorf("good response refused: %v", err)
	}
	if err := VerifyCHAP(c, 7, ch, "m2", EncodeBinary(want[:])); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong name accepted")
	}
	if err := VerifyCHAP(c, 8, ch, "m1", EncodeBinary(want[:])); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong id accepted")
	}
	if b, err := DecodeBinary("0b" + "AQID"); err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Errorf("base64: %x %v", b, err)
	}
	if s := fmt.Sprintf("%v %s %+v", secret, secret, c); strings.Contains(s, "twelve") {
		t.Errorf("secret printed: %s", s)
	}
	if err := (CHAP{User: "u", Secret: "short"}).Validate(); err == nil {
		t.Errorf("short secret accepted")
	}
}

func FuzzReadPDU(f *testing.F) {
	p := &PDU{Data: []byte("InitiatorName=x\x00")}
	p.BHS[0] = OpLogin
	w, _ := p.Marshal(Digests{})
	f.Add(w, false, false)
	w2, _ := p.Marshal(Digests{true, true})
	f.Add(w2, true, true)
	f.Fuzz(func(t *testing.T, b []byte, hd, dd bool) {
		d := Digests{hd, dd}
		q, err := ReadPDU(bytes.NewReader(b), d, 1<<16)
		if err != nil {
			return
		}
		w, err := q.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		q2, err := ReadPDU(bytes.NewReader(w), d, 1<<16)
		if err != nil || q2.BHS != q.BHS || !bytes.Equal(q2.Data, q.Data) {
			t.Fatalf("re-read differs: %v", err)
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("a=b\x00c=d\x00"))
	f.Add([]byte("CHAP_R=0x00ff\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		again, err := ParseText(MarshalText(kvs))
		if err != nil || !cmp.Equal(kvs, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
