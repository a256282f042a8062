package tftp

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rrq builds a request packet from its NUL-separated fields.
func rrq(op byte, fields ...string) []byte {
	b := []byte{0, op}
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return b
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Request
		wantErr string
	}{
		{name: "rrq octet", in: rrq(1, "undionly.kpxe", "octet"),
			want: Request{Op: RRQ, Filename: "undionly.kpxe", Mode: "octet"}},
		{name: "mode and option names any case", in: rrq(1, "a/b", "OcTeT", "BLKSIZE", "1468", "TSize", "0"),
			want: Request{Op: RRQ, Filename: "a/b", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}}}},
		{name: "option values kept as sent", in: rrq(1, "f", "octet", "blksize", "ABC", "x-unknown", ""),
			want: Request{Op: RRQ, Filename: "f", Mode: "octet", Options: []Option{{"blksize", "ABC"}, {"x-unknown", ""}}}},
		{name: "wrq", in: rrq(2, "up", "octet"), want: Request{Op: WRQ, Filename: "up", Mode: "octet"}},
		{name: "netascii parses", in: rrq(1, "f", "netascii"), want: Request{Op: RRQ, Filename: "f", Mode: "netascii"}},
		{name: "nul padding ignored", in: append(rrq(1, "f", "octet", "tsize", "0"), 0, 0, 0),
			want: Request{Op: RRQ, Filename: "f", Mode: "octet", Options: []Option{{"tsize", "0"}}}},
		{name: "path kept as sent", in: rrq(1, "../etc/passwd", "octet"),
			want: Request{Op: RRQ, Filename: "../etc/passwd", Mode: "octet"}},

		{name: "empty", in: nil, wantErr: "packet of 0 bytes has no opcode"},
		{name: "one byte", in: []byte{0}, wantErr: "packet of 1 bytes has no opcode"},
		{name: "data opcode", in: []byte{0, 3, 0, 1, 'x'}, wantErr: "opcode 3 is not a request (RRQ 1 or WRQ 2)"},
		{name: "opcode 0x0166", in: rrq(1, "f", "octet")[1:], wantErr: "opcode 358 is not a request (RRQ 1 or WRQ 2)"},
		{name: "no filename nul", in: []byte("\x00\x01undionly"), wantErr: "filename not terminated by NUL (truncated packet?)"},
		{name: "empty filename", in: rrq(1, "", "octet"), wantErr: "empty filename"},
		{name: "no mode", in: rrq(1, "f"), wantErr: "mode not terminated by NUL (truncated packet?)"},
		{name: "truncated mode", in: []byte("\x00\x01f\x00oct"), wantErr: "mode not terminated by NUL (truncated packet?)"},
		{name: "unknown mode", in: rrq(1, "f", "binary"), wantErr: `unknown mode "binary" (octet, netascii or mail)`},
		{name: "option without value", in: rrq(1, "f", "octet", "blksize"), wantErr: `value of option "blksize" not terminated by NUL (truncated packet?)`},
		{name: "truncated value", in: append(rrq(1, "f", "octet", "blksize"), '1', '4'), wantErr: `value of option "blksize" not terminated by NUL (truncated packet?)`},
		{name: "empty option name", in: rrq(1, "f", "octet", "", "1", "x", "y"), wantErr: "empty option name"},
		{name: "duplicate option", in: rrq(1, "f", "octet", "blksize", "512", "BlkSize", "1468"), wantErr: `option "blksize" given twice`},
		{name: "oversized", in: rrq(1, strings.Repeat("a", 600), "octet"), wantErr: "request of 609 bytes is over the 512 of RFC 2347"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseRequest(%q) = %+v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRequestMarshal(t *testing.T) {
	r := Request{Op: RRQ, Filename: "ipxe.efi", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}}}
	want := "\x00\x01ipxe.efi\x00octet\x00blksize\x001468\x00tsize\x000\x00"
	if got := string(r.Marshal()); got != want {
		t.Errorf("Marshal() = %q, want %q", got, want)
	}
}

func TestParsePacket(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    packet
		wantErr string
	}{
		{name: "ack", in: []byte{0, 4, 0xff, 0xfe}, want: packet{op: opACK, block: 65534}},
		{name: "ack with trailing bytes", in: []byte{0, 4, 0, 1, 9, 9}, want: packet{op: opACK, block: 1}},
		{name: "data", in: []byte{0, 3, 0, 0, 'h', 'i'}, want: packet{op: opDATA, block: 0, data: []byte("hi")}},
		{name: "empty data", in: []byte{0, 3, 0, 7}, want: packet{op: opDATA, block: 7, data: []byte{}}},
		{name: "error", in: []byte("\x00\x05\x00\x01nope\x00"), want: packet{op: opERROR, err: &Error{Code: ErrNotFound, Message: "nope"}}},
		{name: "error without nul", in: []byte("\x00\x05\x00\x08abort"), want: packet{op: opERROR, err: &Error{Code: ErrOptionDenied, Message: "abort"}}},
		{name: "oack", in: []byte("\x00\x06BLKSIZE\x001468\x00tsize\x0074213\x00"), want: packet{op: opOACK, opts: []Option{{"blksize", "1468"}, {"tsize", "74213"}}}},

		{name: "empty", in: nil, wantErr: "packet of 0 bytes has no opcode"},
		{name: "short ack", in: []byte{0, 4, 1}, wantErr: "opcode 4 packet of 3 bytes has no block number"},
		{name: "short error", in: []byte{0, 5, 0}, wantErr: "ERROR packet of 3 bytes has no code"},
		{name: "bad oack", in: []byte("\x00\x06blksize\x00"), wantErr: `OACK: value of option "blksize" not terminated by NUL (truncated packet?)`},
		{name: "rrq", in: rrq(1, "f", "octet"), wantErr: "opcode 1 is not DATA, ACK, ERROR or OACK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePacket(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parsePacket(%q) = %+v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePacket(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(packet{})); diff != "" {
				t.Errorf("parsePacket(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestErrorMarshal(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name string
		in   Error
		want string
	}{
		{"plain", Error{ErrAccess, "read-only"}, "\x00\x05\x00\x02read-only\x00"},
		{"nul removed", Error{ErrIllegal, "a\x00b"}, "\x00\x05\x00\x04ab\x00"},
		{"long cut", Error{ErrUndefined, long}, "\x00\x05\x00\x00" + long[:maxErrorMessage] + "\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.in.marshal()); got != tt.want {
				t.Errorf("marshal() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	def := limits{maxBlockSize: DefaultMaxBlockSize, maxWindowSize: DefaultMaxWindowSize, timeout: time.Second}
	lock := params{blockSize: 512, windowSize: 1, timeout: time.Second}
	tests := []struct {
		name     string
		opts     []Option
		lim      limits
		size     int64
		want     params
		wantOACK []Option
	}{
		{name: "none", lim: def, size: 10, want: lock},
		{name: "pxe rom", opts: []Option{{"tsize", "0"}, {"blksize", "1456"}}, lim: def, size: 74213,
			want:     params{blockSize: 1456, windowSize: 1, timeout: time.Second},
			wantOACK: []Option{{"tsize", "74213"}, {"blksize", "1456"}}},
		{name: "blksize capped", opts: []Option{{"blksize", "9000"}}, lim: def,
			want: params{blockSize: 1468, windowSize: 1, timeout: time.Second}, wantOACK: []Option{{"blksize", "1468"}}},
		{name: "blksize 65464 allowed", opts: []Option{{"blksize", "65464"}}, lim: limits{maxBlockSize: 65464, maxWindowSize: 1, timeout: time.Second},
			want: params{blockSize: 65464, windowSize: 1, timeout: time.Second}, wantOACK: []Option{{"blksize", "65464"}}},
		{name: "blksize over the rfc", opts: []Option{{"blksize", "70000"}}, lim: limits{maxBlockSize: 65464, maxWindowSize: 1, timeout: time.Second},
			want: params{blockSize: 65464, windowSize: 1, timeout: time.Second}, wantOACK: []Option{{"blksize", "65464"}}},
		{name: "blksize 8", opts: []Option{{"blksize", "8"}}, lim: def,
			want: params{blockSize: 8, windowSize: 1, timeout: time.Second}, wantOACK: []Option{{"blksize", "8"}}},
		{name: "blksize under 8 ignored", opts: []Option{{"blksize", "7"}}, lim: def, want: lock},
		{name: "blksize not a number ignored", opts: []Option{{"blksize", "+1468"}}, lim: def, want: lock},
		{name: "blksize too many digits ignored", opts: []Option{{"blksize", "0000000001468"}}, lim: def, want: lock},
		{name: "tsize unknown size ignored", opts: []Option{{"tsize", "0"}}, lim: def, size: -1, want: lock},
		{name: "tsize of empty file", opts: []Option{{"tsize", "0"}}, lim: def, size: 0, want: lock, wantOACK: []Option{{"tsize", "0"}}},
		{name: "timeout", opts: []Option{{"timeout", "3"}}, lim: def,
			want: params{blockSize: 512, windowSize: 1, timeout: 3 * time.Second}, wantOACK: []Option{{"timeout", "3"}}},
		{name: "timeout 0 ignored", opts: []Option{{"timeout", "0"}}, lim: def, want: lock},
		{name: "timeout 255 ignored", opts: []Option{{"timeout", "255"}}, lim: def, want: lock},
		{name: "windowsize", opts: []Option{{"windowsize", "8"}}, lim: def,
			want: params{blockSize: 512, windowSize: 8, timeout: time.Second}, wantOACK: []Option{{"windowsize", "8"}}},
		{name: "windowsize capped", opts: []Option{{"windowsize", "64"}}, lim: def,
			want: params{blockSize: 512, windowSize: 16, timeout: time.Second}, wantOACK: []Option{{"windowsize", "16"}}},
		{name: "windowsize refused", opts: []Option{{"windowsize", "8"}}, lim: limits{maxBlockSize: 1468, maxWindowSize: -1, timeout: time.Second}, want: lock},
		{name: "windowsize 0 ignored", opts: []Option{{"windowsize", "0"}}, lim: def, want: lock},
		{name: "unknown not echoed", opts: []Option{{"multicast", ""}, {"blksize", "1468"}, {"rollover", "0"}}, lim: def,
			want: params{blockSize: 1468, windowSize: 1, timeout: time.Second}, wantOACK: []Option{{"blksize", "1468"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, oack := negotiate(tt.opts, tt.lim, tt.size)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(params{})); diff != "" {
				t.Errorf("params (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOACK, oack); diff != "" {
				t.Errorf("OACK (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(rrq(1, "undionly.kpxe", "octet"))
	f.Add(rrq(1, "ipxe.efi", "octet", "tsize", "0", "blksize", "1468"))
	f.Add(rrq(1, "snponly.efi", "OCTET", "windowsize", "16", "timeout", "3"))
	f.Add(rrq(2, "up", "netascii"))
	f.Add(append(rrq(1, "f", "octet"), 0, 0))
	f.Add([]byte{0, 1, 'f'})
	lim := limits{maxBlockSize: 65464, maxWindowSize: 65535, timeout: time.Second}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.Filename == "" || strings.Contains(r.Filename, "\x00") || (r.Op != RRQ && r.Op != WRQ) {
			t.Fatalf("ParseRequest(%q) = %+v: invalid request accepted", b, r)
		}
		// What was parsed encodes to a request that parses the same.
		m := r.Marshal()
		if len(m) > len(b) {
			t.Fatalf("Marshal() of %+v is %d bytes, more than the %d parsed", r, len(m), len(b))
		}
		r2, err := ParseRequest(m)
		if err != nil {
			t.Fatalf("ParseRequest(Marshal(%+v)): %v", r, err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		// Whatever the options, the negotiated values stay in bounds.
		p, oack := negotiate(r.Options, lim, 1<<20)
		if p.blockSize < minBlockSize || p.blockSize > maxBlockSize || p.windowSize < 1 || p.windowSize > maxWindowSize ||
			p.timeout < time.Second || p.timeout > maxClientTimeout*time.Second {
			t.Fatalf("negotiate(%+v) = %+v: out of bounds", r.Options, p)
		}
		if len(oack) > len(r.Options) {
			t.Fatalf("OACK %+v has more options than asked %+v", oack, r.Options)
		}
	})
}

func FuzzParsePacket(f *testing.F) {
	f.Add([]byte{0, 4, 0, 1})
	f.Add([]byte{0, 3, 0, 1, 'x'})
	f.Add([]byte("\x00\x05\x00\x01not found\x00"))
	f.Add([]byte("\x00\x06blksize\x001468\x00tsize\x0074213\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePacket(b)
		if err != nil {
			return
		}
		switch p.op {
		case opDATA:
			if !bytes.Equal(p.data, b[4:]) {
				t.Fatalf("parsePacket(%q): data %q", b, p.data)
			}
		case opACK:
		case opERROR:
			if p.err == nil || strings.Contains(p.err.Message, "\x00") {
				t.Fatalf("parsePacket(%q): error %+v", b, p.err)
			}
			// What we would send back parses to the same error.
			q, err := parsePacket(p.err.marshal())
			if err != nil || q.err.Code != p.err.Code || (len(p.err.Message) <= maxErrorMessage && q.err.Message != p.err.Message) {
				t.Fatalf("ERROR round trip of %+v: %+v, %v", p.err, q.err, err)
			}
		case opOACK:
			q, err := parsePacket(marshalOACK(p.opts))
			if err != nil {
				t.Fatalf("OACK round trip of %+v: %v", p.opts, err)
			}
			if diff := cmp.Diff(p.opts, q.opts); diff != "" {
				t.Fatalf("OACK round trip (-first +second):\n%s", diff)
			}
		default:
			t.Fatalf("parsePacket(%q) accepted opcode %d", b, p.op)
		}
	})
}
