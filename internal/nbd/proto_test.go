package nbd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A read request as the kernel sends it, byte for byte (proto.md "Request
// message"): magic, flags 0, type 0, handle, offset 0x1000, length 0x20000.
const readRequestHex = "25609513" + "0000" + "0000" + "0102030405060708" + "0000000000001000" + "00020000"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRequestWire(t *testing.T) {
	got, err := ParseRequest(mustHex(t, readRequestHex))
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Type: CmdRead, Handle: 0x0102030405060708, Offset: 0x1000, Length: 0x20000}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseRequest (-want +got):\n%s", diff)
	}
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(b); h != readRequestHex {
		t.Errorf("MarshalBinary = %s, want %s", h, readRequestHex)
	}
}

func TestReplyWire(t *testing.T) {
	const want = "67446698" + "00000001" + "1122334455667788"
	b, err := Reply{Error: EPERM, Handle: 0x1122334455667788}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(b); h != want {
		t.Errorf("AppendBinary = %s, want %s", h, want)
	}
	var arr [ReplyHeaderLen]byte
	Reply{Error: EPERM, Handle: 0x1122334455667788}.put(&arr)
	if !bytes.Equal(arr[:], b) {
		t.Errorf("put = %x, want %x", arr, b)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{},
		{Type: CmdRead, Handle: 1, Offset: 1 << 40, Length: MaxLength},
		{Type: CmdWrite, Flags: CmdFlagFUA, Handle: ^uint64(0), Offset: ^uint64(0), Length: 512},
		{Type: CmdDisc},
		{Type: CmdFlush, Handle: 7},
		{Type: CmdTrim, Offset: 4096, Length: ^uint32(0)}, // no payload: no limit
		{Type: Command(0xffff), Flags: 0xffff},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != RequestHeaderLen {
			t.Fatalf("%+v: %d bytes, want %d", r, len(b), RequestHeaderLen)
		}
		got, err := ReadRequest(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []Reply{{}, {Error: EIO, Handle: 42}, {Error: ESHUTDOWN, Handle: ^uint64(0)}} {
		b, _ := r.AppendBinary(nil)
		got, err := ParseReply(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != r {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
}

func TestParseRequestRefuses(t *testing.T) {
	good := mustHex(t, readRequestHex)
	with := func(off int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "request header of 0 bytes, want 28"},
		{"short header", good[:27], "request header of 27 bytes, want 28"},
		{"bad magic", with(0, 0x12, 0x56, 0x09, 0x53), "request magic 0x12560953, want 0x25609513"},
		{"reply magic", with(0, 0x67, 0x44, 0x66, 0x98), "request magic 0x67446698"},
		{"oversized read", with(24, 0x02, 0x00, 0x00, 0x01), "NBD_CMD_READ of 33554433 bytes at offset 4096 (handle 0x102030405060708): over the 33554432-byte limit"},
		{"oversized write", with(6, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), "NBD_CMD_WRITE of 4294967295 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRequest(tc.in)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want ErrProtocol", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseReplyRefuses(t *testing.T) {
	if _, err := ParseReply(make([]byte, 15)); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "reply header of 15 bytes, want 16") {
		t.Errorf("short: %v", err)
	}
	structured := mustHex(t, "668e33ef"+"00000000"+"0000000000000001")
	if _, err := ParseReply(structured); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "reply magic 0x668e33ef, want 0x67446698") {
		t.Errorf("structured magic: %v", err)
	}
}

func TestReadRequestEOF(t *testing.T) {
	if _, err := ReadRequest(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	if _, err := ReadRequest(bytes.NewReader(mustHex(t, readRequestHex)[:10])); err != io.ErrUnexpectedEOF {
		t.Errorf("cut header: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{CmdRead.String(), "NBD_CMD_READ"},
		{CmdWriteZeroes.String(), "NBD_CMD_WRITE_ZEROES"},
		{Command(9).String(), "NBD_CMD_9"},
		{EPERM.String(), "EPERM"},
		{Errno(0).String(), "OK"},
		{Errno(99).String(), "errno 99"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzParseRequest: no input panics; whatever parses re-encodes to the same
// 28 bytes and respects the length limit.
func FuzzParseRequest(f *testing.F) {
	f.Add(mustHex(f, readRequestHex))
	f.Add(mustHex(f, "25609513"+"0000"+"0002"+"0000000000000000"+"0000000000000000"+"00000000"))
	f.Add(mustHex(f, "25609513"+"0001"+"0001"+"00000000000000ff"+"0000000000000200"+"00000200"+"deadbeef"))
	f.Add([]byte{0x25, 0x60, 0x95})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error not ErrProtocol: %v", err)
			}
			return
		}
		if (r.Type == CmdRead || r.Type == CmdWrite) && r.Length > MaxLength {
			t.Fatalf("accepted %v of %d bytes", r.Type, r.Length)
		}
		out, _ := r.MarshalBinary()
		if !bytes.Equal(out, b[:RequestHeaderLen]) {
			t.Fatalf("re-encoded %x, want %x", out, b[:RequestHeaderLen])
		}
	})
}
