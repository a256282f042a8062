package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/internal/testneed"
)

// wait is how long a test waits for anything over loopback: generous, as
// the house style asks; a passing run waits milliseconds.
const wait = 10 * time.Second

// recorder is a slog.Handler keeping every record, for tests that check
// what the server logged.
type recorder struct {
	mu   sync.Mutex // guards recs
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler { return &withAttrs{r, as} }
func (r *recorder) WithGroup(string) slog.Handler         { return r }

// withAttrs keeps the attributes of Logger.With on each record.
type withAttrs struct {
	r  *recorder
	as []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(w.as...)
	return w.r.Handle(ctx, rec)
}
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.r, append(append([]slog.Attr{}, w.as...), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }

// find returns the attributes of the first record with message msg.
func (r *recorder) find(msg string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Message == msg {
			m := map[string]string{"level": rec.Level.String()}
			rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
			return m, true
		}
	}
	return nil, false
}

// waitLog waits for a record with message msg and returns its attributes.
func (r *recorder) waitLog(t *testing.T, msg string) map[string]string {
	t.Helper()
	var m map[string]string
	eventually(t, "log "+msg, func() bool { var ok bool; m, ok = r.find(msg); return ok })
	return m
}

// eventually polls cond until it holds or wait has passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(wait); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after %v: still no %s", wait, what)
		}
	}
}

type testServer struct {
	*Server
	addr string
	log  *recorder
	stop func() error // cancels Serve's context and returns what Serve returned
}

// startServer runs s on 127.0.0.1 until the test ends.
func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	rec := &recorder{}
	s.Log = slog.New(rec)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-done:
			case <-time.After(wait):
				serr = errors.New("Serve did not return")
			}
		})
		return serr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
	return &testServer{Server: s, addr: conn.LocalAddr().String(), log: rec, stop: stop}
}

// writeRoot makes a served directory holding files.
func writeRoot(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func get(t *testing.T, c *Client, addr, name string) ([]byte, Fetched) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	var buf bytes.Buffer
	f, err := c.Get(ctx, addr, name, &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), f
}

func TestGet(t *testing.T) {
	tests := []struct {
		name   string
		server *Server
		client Client
		size   int
		want   Fetched
	}{
		{name: "default 512, size a multiple of it", size: 3 * 512,
			want: Fetched{TSize: 1536, BlockSize: 512, WindowSize: 1}},
		{name: "empty file", size: 0, want: Fetched{TSize: 0, BlockSize: 512, WindowSize: 1}},
		{name: "one byte", size: 1, want: Fetched{TSize: 1, BlockSize: 512, WindowSize: 1}},
		{name: "blksize 1468 undionly-sized", client: Client{BlockSize: 1468}, size: 74213,
			want: Fetched{TSize: 74213, BlockSize: 1468, WindowSize: 1}},
		{name: "blksize 1456 as PXE ROMs ask", client: Client{BlockSize: 1456}, size: 10000,
			want: Fetched{TSize: 10000, BlockSize: 1456, WindowSize: 1}},
		{name: "blksize 9000 granted 1468", client: Client{BlockSize: 9000}, size: 10000,
			want: Fetched{TSize: 10000, BlockSize: 1468, WindowSize: 1}},
		{name: "blksize 65464 when the server allows it", server: &Server{MaxBlockSize: 65464}, client: Client{BlockSize: 65464}, size: 300000,
			want: Fetched{TSize: 300000, BlockSize: 65464, WindowSize: 1}},
		{name: "blksize 65464 a multiple", server: &Server{MaxBlockSize: 65464}, client: Client{BlockSize: 65464}, size: 2 * 65464,
			want: Fetched{TSize: 2 * 65464, BlockSize: 65464, WindowSize: 1}},
		{name: "windowsize 8", client: Client{BlockSize: 1468, WindowSize: 8}, size: 100000,
			want: Fetched{TSize: 100000, BlockSize: 1468, WindowSize: 8}},
		{name: "windowsize over the cap", client: Client{WindowSize: 64}, size: 100000,
			want: Fetched{TSize: 100000, BlockSize: 512, WindowSize: 16}},
		{name: "windowsize refused", server: &Server{MaxWindowSize: -1}, client: Client{WindowSize: 8}, size: 5000,
			want: Fetched{TSize: 5000, BlockSize: 512, WindowSize: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := randomBytes(tt.size)
			s := tt.server
			if s == nil {
				s = &Server{}
			}
			s.Root = writeRoot(t, map[string][]byte{"dir/file.bin": content})
			ts := startServer(t, s)
			got, f := get(t, &tt.client, ts.addr, "dir/file.bin")
			if !bytes.Equal(got, content) {
				t.Errorf("got %d bytes, want the file's %d", len(got), len(content))
			}
			tt.want.Bytes = int64(tt.size)
			if diff := cmp.Diff(tt.want, f); diff != "" {
				t.Errorf("Fetched (-want +got):\n%s", diff)
			}
			m := ts.log.waitLog(t, "tftp transfer")
			if m["bytes"] != fmt.Sprint(tt.size) || m["file"] != "dir/file.bin" || m["level"] != "INFO" {
				t.Errorf("log line %v: want bytes=%d file=dir/file.bin at INFO", m, tt.size)
			}
		})
	}
}

// TestIPXEBinaries serves the files PXE firmware fetches, as Debian's
// ipxe package ships them, copied (ipxe.efi is a symlink out of
// /usr/lib/ipxe).
func TestIPXEBinaries(t *testing.T) {
	files := map[string][]byte{}
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"} {
		p := filepath.Join("/usr/lib/ipxe", name)
		testneed.File(t, p, "ipxe")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	ts := startServer(t, &Server{Root: writeRoot(t, files)})
	for name, want := range files {
		for _, bs := range []int{0, 1456, 1468} {
			t.Run(fmt.Sprintf("%s/blksize=%d", name, bs), func(t *testing.T) {
				got, f := get(t, &Client{BlockSize: bs}, ts.addr, name)
				if !bytes.Equal(got, want) || f.TSize != int64(len(want)) {
					t.Errorf("got %d bytes, tsize %d; want %d", len(got), f.TSize, len(want))
				}
			})
		}
	}
}

// TestRollover sends files of more than 65535 blocks: the block number
// goes 65535, 0, 1, ... A server that went on with 1 (or stopped) would
// stall the client, which expects the low 16 bits of its count.
func TestRollover(t *testing.T) {
	const blocks = 65536 + 100
	content := randomBytes(8*blocks + 3)
	tests := []struct {
		name   string
		client Client
	}{
		{"lock-step blksize 8", Client{BlockSize: 8}},
		{"windowsize 16 blksize 8", Client{BlockSize: 8, WindowSize: 16}},
	}
	ts := startServer(t, &Server{Root: writeRoot(t, map[string][]byte{"big": content})})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, f := get(t, &tt.client, ts.addr, "big")
			if !bytes.Equal(got, content) {
				t.Errorf("got %d bytes, want %d", len(got), len(content))
			}
			if f.BlockSize != 8 {
				t.Errorf("blksize %d, want 8", f.BlockSize)
			}
		})
	}
}

// TestRefused asks for names outside the root or not servable: each is
// refused with the right code and a message, and the server stays up.
func TestRefused(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeRoot(t, map[string][]byte{"ok": []byte("ok"), "sub/file": []byte("in sub")})
	for _, l := range []struct{ target, name string }{
		{secret, "escape"}, // absolute symlink out
		{"../" + filepath.Base(outside) + "/secret", "escape-rel"}, // relative symlink out
		{"/nonexistent/x", "dangling-out"},
		{"sub/file", "inside"}, // a symlink within the root is fine
	} {
		if err := os.Symlink(l.target, filepath.Join(root, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	// The relative link above climbs to the temp dirs' common parent.
	if filepath.Dir(outside) != filepath.Dir(root) {
		t.Fatalf("temp dirs %s and %s do not share a parent", outside, root)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &Server{Root: root})
	tests := []struct {
		name    string
		code    ErrorCode
		message string
	}{
		{"../etc/passwd", ErrAccess, `"../etc/passwd" is not a path inside the served directory`},
		{"/etc/passwd", ErrNotFound, "etc/passwd: file not found"}, // the root's, which has none
		{"//etc/passwd", ErrAccess, `"/etc/passwd" is not a path inside the served directory`},
		{"/../etc/passwd", ErrAccess, `"../etc/passwd" is not a path inside the served directory`},
		{"sub/../../etc/passwd", ErrAccess, `"sub/../../etc/passwd" is not a path inside the served directory`},
		{"escape", ErrAccess, "escape: cannot be read"},
		{"escape-rel", ErrAccess, "escape-rel: cannot be read"},
		{"dangling-out", ErrAccess, "dangling-out: cannot be read"},
		{"missing", ErrNotFound, "missing: file not found"},
		{"sub", ErrAccess, "sub: not a regular file"},
		{"fifo", ErrAccess, "fifo: not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&Client{}).Get(context.Background(), ts.addr, tt.name, new(bytes.Buffer))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Get %s: %v, want a TFTP ERROR", tt.name, err)
			}
			if diff := cmp.Diff(&Error{Code: tt.code, Message: tt.message}, e); diff != "" {
				t.Errorf("ERROR (-want +got):\n%s", diff)
			}
		})
	}
	for _, name := range []string{"inside", "sub/file", "sub/../ok", "/sub/file", "/ok"} { // "/x" is the root's x, as GRUB asks
		if got, _ := get(t, &Client{}, ts.addr, name); len(got) == 0 {
			t.Errorf("%s: empty", name)
		}
	}
	eventually(t, "transfers ended", func() bool { return ts.Transfers() == 0 })
}

// rawClient speaks TFTP packet by packet, for the tests of how the server
// treats a misbehaving or unusual client.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr // port 69's stand-in
	tid    *net.UDPAddr // the transfer's, once DATA or OACK came
}

func newRaw(t *testing.T, server string) *rawClient {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	a, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, conn: conn, server: a}
}

func (r *rawClient) toServer(b []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDP(b, r.server); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawClient) toTID(b []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDP(b, r.tid); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next packet and who sent it.
func (r *rawClient) recv() (packet, *net.UDPAddr) {
	r.t.Helper()
	buf := make([]byte, 1<<16)
	r.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("waiting for a packet: %v", err)
	}
	p, err := parsePacket(buf[:n])
	if err != nil {
		r.t.Fatalf("packet %q: %v", buf[:n], err)
	}
	return p, from
}

// data expects DATA block with want bytes of content.
func (r *rawClient) data(block uint16, want int) {
	r.t.Helper()
	p, from := r.recv()
	if p.op != opDATA || p.block != block || len(p.data) != want {
		r.t.Fatalf("got opcode %d block %d (%d bytes) %v, want DATA %d of %d bytes", p.op, p.block, len(p.data), p.err, block, want)
	}
	if from.Port == r.server.Port {
		r.t.Fatalf("DATA from the server's port %d, want a port of its own", from.Port)
	}
	if r.tid == nil {
		r.tid = from
	} else if from.Port != r.tid.Port {
		r.t.Fatalf("DATA from port %d, want the transfer's %d", from.Port, r.tid.Port)
	}
}

// error expects an ERROR with code and message.
func (r *rawClient) error(code ErrorCode, message string) {
	r.t.Helper()
	p, _ := r.recv()
	if p.op != opERROR {
		r.t.Fatalf("got opcode %d block %d, want ERROR %d %q", p.op, p.block, code, message)
	}
	if diff := cmp.Diff(&Error{Code: code, Message: message}, p.err); diff != "" {
		r.t.Fatalf("ERROR (-want +got):\n%s", diff)
	}
}

func ack(block uint16) []byte { return marshalACK(block) }

// TestBadRequests sends malformed, truncated, oversized and refused
// requests: each gets an ERROR naming what was wrong, no transfer starts,
// and a real fetch still works.
func TestBadRequests(t *testing.T) {
	ts := startServer(t, &Server{Root: writeRoot(t, map[string][]byte{"f": randomBytes(5000)})})
	r := newRaw(t, ts.addr)
	tests := []struct {
		name    string
		in      []byte
		code    ErrorCode
		message string
	}{
		{"empty datagram", []byte{}, ErrIllegal, "packet of 0 bytes has no opcode"},
		{"one byte", []byte{1}, ErrIllegal, "packet of 1 bytes has no opcode"},
		{"data to the server port", []byte{0, 3, 0, 1, 'x'}, ErrIllegal, "opcode 3 is not a request (RRQ 1 or WRQ 2)"},
		{"ack to the server port", ack(1), ErrIllegal, "opcode 4 is not a request (RRQ 1 or WRQ 2)"},
		{"opcode 99", []byte{0, 99}, ErrIllegal, "opcode 99 is not a request (RRQ 1 or WRQ 2)"},
		{"truncated filename", []byte("\x00\x01undionly.kp"), ErrIllegal, "filename not terminated by NUL (truncated packet?)"},
		{"truncated mode", []byte("\x00\x01f\x00oct"), ErrIllegal, "mode not terminated by NUL (truncated packet?)"},
		{"truncated option", append(rrq(1, "f", "octet", "blksize"), '1'), ErrIllegal, `value of option "blksize" not terminated by NUL (truncated packet?)`},
		{"unknown mode", rrq(1, "f", "image"), ErrIllegal, `unknown mode "image" (octet, netascii or mail)`},
		{"oversized 513", rrq(1, strings.Repeat("x", 504), "octet"), ErrIllegal, "request of 513 bytes is over the 512 of RFC 2347"},
		{"oversized 65507", rrq(1, strings.Repeat("x", 65498), "octet"), ErrIllegal, "request of 65507 bytes is over the 512 of RFC 2347"},
		{"wrq", rrq(2, "f", "octet"), ErrAccess, "read-only server: WRQ refused"},
		{"wrq of a new file", rrq(2, "new", "octet", "tsize", "100"), ErrAccess, "read-only server: WRQ refused"},
		{"netascii", rrq(1, "f", "netascii"), ErrUndefined, "mode netascii not served: only octet (binary)"},
		{"mail", rrq(1, "f", "MAIL"), ErrUndefined, "mode mail not served: only octet (binary)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.t = t
			r.toServer(tt.in)
			r.error(tt.code, tt.message)
		})
	}
	r.t = t
	// An ERROR to the server's port is not answered (two servers would
	// bounce errors forever): the next answer is to the packet after it.
	r.toServer((&Error{Code: ErrUnknownTID, Message: "who?"}).marshal())
	r.toServer([]byte{0})
	r.error(ErrIllegal, "packet of 1 bytes has no opcode")

	if n := ts.Transfers(); n != 0 {
		t.Errorf("%d transfers after bad requests, want 0", n)
	}
	if got, _ := get(t, &Client{BlockSize: 1468}, ts.addr, "f"); len(got) != 5000 {
		t.Errorf("got %d bytes after bad requests, want 5000", len(got))
	}
}

// TestNoOptions: an RRQ without options gets DATA 1 at once, 512-byte
// blocks, and the final block is empty when the size is a multiple of
// 512 (RFC 1350).
func TestNoOptions(t *testing.T) {
	ts := startServer(t, &Server{Root: writeRoot(t, map[string][]byte{"f": randomBytes(1024)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	r.data(1, 512)
	r.toTID(ack(1))
	r.data(2, 512)
	r.toTID(ack(2))
	r.data(3, 0)
	r.toTID(ack(3))
	m := ts.log.waitLog(t, "tftp transfer")
	if m["bytes"] != "1024" || m["blksize"] != "512" {
		t.Errorf("log %v: want bytes=1024 blksize=512", m)
	}
}

// TestDuplicateACK: a duplicate ACK is never answered with DATA (the
// Sorcerer's Apprentice bug), nor is an ACK of a block not yet sent.
func TestDuplicateACK(t *testing.T) {
	// A long timeout: any DATA sent twice here is the ACKs' doing.
	ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(3*512 + 64)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	r.data(1, 512)
	r.toTID(ack(1))
	r.toTID(ack(1))
	r.toTID(ack(1))
	r.toTID(ack(0))
	r.toTID(ack(9)) // not sent yet: stray
	r.data(2, 512)
	r.toTID(ack(2))
	// Had any duplicate been answered, a second DATA 2 would come first.
	r.data(3, 512)
	r.toTID(ack(3))
	r.data(4, 64)
	r.toTID(ack(4))
	ts.log.waitLog(t, "tftp transfer")
}

// TestWindow: RFC 7440. The server sends windowsize blocks before
// waiting; an ACK short of the window's end makes it go on from the
// block after the one acknowledged.
func TestWindow(t *testing.T) {
	ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(12*8 + 4)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet", "blksize", "8", "windowsize", "4", "tsize", "0"))
	p, from := r.recv()
	if diff := cmp.Diff([]Option{{"blksize", "8"}, {"windowsize", "4"}, {"tsize", "100"}}, p.opts); p.op != opOACK || diff != "" {
		t.Fatalf("got opcode %d, want OACK (-want +got):\n%s", p.op, diff)
	}
	r.tid = from
	r.toTID(ack(0))
	for b := uint16(1); b <= 4; b++ {
		r.data(b, 8)
	}
	r.toTID(ack(2)) // "3 was lost"
	for b := uint16(3); b <= 6; b++ {
		r.data(b, 8)
	}
	r.toTID(ack(6))
	for b := uint16(7); b <= 10; b++ {
		r.data(b, 8)
	}
	r.toTID(ack(10))
	r.data(11, 8)
	r.data(12, 8)
	r.data(13, 4) // the final block ends the window early
	r.toTID(ack(13))
	if m := ts.log.waitLog(t, "tftp transfer"); m["bytes"] != "100" || m["windowsize"] != "4" {
		t.Errorf("log %v: want bytes=100 windowsize=4", m)
	}
}

// TestClientStopsAcking: the server sends the block again Retries times,
// then gives up with an ERROR, logs it and frees the slot.
func TestClientStopsAcking(t *testing.T) {
	ts := startServer(t, &Server{Timeout: 50 * time.Millisecond, Retries: 2, MaxTransfers: 1,
		Root: writeRoot(t, map[string][]byte{"f": randomBytes(2000)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	// Never ACKed: whatever the machine's load, the server's packets
	// queue in our socket in order.
	r.data(1, 512)
	r.data(1, 512)
	r.data(1, 512)
	r.error(ErrUndefined, "no ACK: transfer timed out")
	m := ts.log.waitLog(t, "tftp transfer failed")
	if m["level"] != "WARN" || m["bytes"] != "0" || !strings.Contains(m["err"], "block 1 sent 3 times: no answer") {
		t.Errorf("log %v: want WARN, bytes=0, err block 1 sent 3 times", m)
	}
	eventually(t, "slot freed", func() bool { return ts.Transfers() == 0 })
	// MaxTransfers is 1: this works only if the slot was given back.
	if got, _ := get(t, &Client{}, ts.addr, "f"); len(got) != 2000 {
		t.Errorf("got %d bytes, want 2000", len(got))
	}
}

// TestOACKUnanswered: the OACK is retransmitted like DATA, then given up.
func TestOACKUnanswered(t *testing.T) {
	ts := startServer(t, &Server{Timeout: 50 * time.Millisecond, Retries: 1, Root: writeRoot(t, map[string][]byte{"f": []byte("x")})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet", "tsize", "0"))
	for range 2 {
		if p, _ := r.recv(); p.op != opOACK {
			t.Fatalf("got opcode %d, want OACK", p.op)
		}
	}
	r.error(ErrUndefined, "no ACK: transfer timed out")
	if m := ts.log.waitLog(t, "tftp transfer failed"); !strings.Contains(m["err"], "OACK sent 2 times") {
		t.Errorf("log %v: want OACK sent 2 times", m)
	}
	eventually(t, "slot freed", func() bool { return ts.Transfers() == 0 })
}

// TestClientAborts: PXE ROMs ask tsize, read the OACK and abort with an
// ERROR; a client may also abort mid-file. Either ends the transfer at
// once, logged at Info.
func TestClientAborts(t *testing.T) {
	tests := []struct {
		name  string
		steps func(r *rawClient)
	}{
		{"tsize probe", func(r *rawClient) {
			r.toServer(rrq(1, "f", "octet", "tsize", "0"))
			p, from := r.recv()
			if p.op != opOACK || len(p.opts) != 1 || p.opts[0] != (Option{"tsize", "3000"}) {
				r.t.Fatalf("got %+v, want OACK tsize=3000", p)
			}
			r.tid = from
			r.toTID((&Error{Code: ErrOptionDenied, Message: "TFTP Aborted"}).marshal())
		}},
		{"mid-file", func(r *rawClient) {
			r.toServer(rrq(1, "f", "octet"))
			r.data(1, 512)
			r.toTID((&Error{Code: ErrUndefined, Message: "disk full"}).marshal())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(3000)})})
			tt.steps(newRaw(t, ts.addr))
			if m := ts.log.waitLog(t, "tftp transfer ended by the client"); m["level"] != "INFO" {
				t.Errorf("log %v: want INFO", m)
			}
			eventually(t, "slot freed", func() bool { return ts.Transfers() == 0 })
		})
	}
}

// TestBadPacketInTransfer: something other than ACK or ERROR on the
// transfer's port ends it with ERROR 4.
func TestBadPacketInTransfer(t *testing.T) {
	ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(3000)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	r.data(1, 512)
	r.toTID([]byte{0, 3, 0, 1, 'x'})
	r.error(ErrIllegal, "expected ACK, got opcode 3")
	ts.log.waitLog(t, "tftp transfer failed")
	eventually(t, "slot freed", func() bool { return ts.Transfers() == 0 })
}

// sync makes sure the server has handled everything sent to its port
// before: it answers packets in order, so the reply to a bad packet comes
// after.
func (r *rawClient) sync() {
	r.t.Helper()
	r.toServer([]byte{0})
	for {
		p, from := r.recv()
		if from.Port == r.server.Port && p.op == opERROR && p.err.Code == ErrIllegal {
			return
		}
		if p.op != opDATA {
			r.t.Fatalf("got opcode %d while syncing", p.op)
		}
	}
}

// TestDuplicateRRQ: a retransmitted RRQ (same client port) while its
// transfer runs starts no second one.
func TestDuplicateRRQ(t *testing.T) {
	ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(600)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	r.data(1, 512)
	r.toServer(rrq(1, "f", "octet"))
	r.sync()
	if n := ts.Transfers(); n != 1 {
		t.Errorf("%d transfers, want 1", n)
	}
	r.toTID(ack(1))
	r.data(2, 88)
	r.toTID(ack(2))
	ts.log.waitLog(t, "tftp transfer")
}

// TestCaps: a request over MaxTransfers or MaxPerClient is dropped
// unanswered (logged); once a slot is free, the client's retransmitted
// RRQ gets in.
func TestCaps(t *testing.T) {
	tests := []struct {
		name   string
		server *Server
		hold   int // transfers that fill the cap
	}{
		{"MaxTransfers", &Server{MaxTransfers: 2, MaxPerClient: 10}, 2},
		{"MaxPerClient", &Server{MaxTransfers: 10, MaxPerClient: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.server
			s.Timeout = wait
			s.Root = writeRoot(t, map[string][]byte{"f": randomBytes(100)})
			ts := startServer(t, s)
			var holders []*rawClient
			for range tt.hold {
				h := newRaw(t, ts.addr)
				h.toServer(rrq(1, "f", "octet"))
				h.data(1, 100) // not ACKed: the slot stays taken
				holders = append(holders, h)
			}
			late := newRaw(t, ts.addr)
			late.toServer(rrq(1, "f", "octet"))
			late.sync() // dropped: the only answer is to the sync
			if n := ts.Transfers(); n != tt.hold {
				t.Errorf("%d transfers, want %d", n, tt.hold)
			}
			if m, ok := ts.log.find("tftp requests dropped: over the transfer caps"); !ok || m["level"] != "WARN" {
				t.Errorf("log %v, %v: want a WARN line for the drop", m, ok)
			}
			holders[0].toTID((&Error{Code: ErrUndefined, Message: "bye"}).marshal())
			eventually(t, "slot freed", func() bool { return ts.Transfers() == tt.hold-1 })
			late.toServer(rrq(1, "f", "octet")) // the client's retransmission
			late.data(1, 100)
			late.toTID(ack(1))
		})
	}
}

// TestConcurrent fetches 32 files at once.
func TestConcurrent(t *testing.T) {
	const n = 32
	files := map[string][]byte{}
	for i := range n {
		files[fmt.Sprintf("f%d", i)] = randomBytes(50000 + 997*i)
	}
	// All clients share 127.0.0.1: lift the per-address cap.
	ts := startServer(t, &Server{MaxPerClient: n, Root: writeRoot(t, files)})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("f%d", i)
			var buf bytes.Buffer
			c := &Client{BlockSize: 1468}
			if i%2 == 1 {
				c.WindowSize = 4
			}
			if _, err := c.Get(context.Background(), ts.addr, name, &buf); err != nil {
				errs[i] = err
			} else if !bytes.Equal(buf.Bytes(), files[name]) {
				errs[i] = fmt.Errorf("%s: got %d bytes, want %d", name, buf.Len(), len(files[name]))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "transfers ended", func() bool { return ts.Transfers() == 0 })
}

// TestShutdown: when Serve's context ends, a transfer in flight stops,
// its client is told, and Serve returns nil.
func TestShutdown(t *testing.T) {
	ts := startServer(t, &Server{Timeout: wait, Root: writeRoot(t, map[string][]byte{"f": randomBytes(3000)})})
	r := newRaw(t, ts.addr)
	r.toServer(rrq(1, "f", "octet"))
	r.data(1, 512)
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	r.error(ErrUndefined, "server shutting down")
	if n := ts.Transfers(); n != 0 {
		t.Errorf("%d transfers after Serve returned, want 0", n)
	}
	ts.log.waitLog(t, "tftp transfer stopped: server shutting down")
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		s    *Server
		want string
	}{
		{"no root", &Server{Root: filepath.Join(dir, "none")}, "tftp: open " + filepath.Join(dir, "none") + ": no such file or directory"},
		{"blksize over the rfc", &Server{Root: dir, MaxBlockSize: 65465}, "tftp: MaxBlockSize 65465 is outside 8..65464 (RFC 2348)"},
		{"blksize under 8", &Server{Root: dir, MaxBlockSize: 4}, "tftp: MaxBlockSize 4 is outside 8..65464 (RFC 2348)"},
		{"windowsize", &Server{Root: dir, MaxWindowSize: 70000}, "tftp: MaxWindowSize 70000 is outside -1..65535 (RFC 7440)"},
		{"negative", &Server{Root: dir, MaxTransfers: -1}, "tftp: negative limit (MaxTransfers -1, MaxPerClient 0, Retries 0, Timeout 0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			err = tt.s.Serve(context.Background(), conn)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Serve: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestClientChecksOACK: the client refuses (ERROR 8) an OACK with an
// option it did not ask for or a blksize over what it asked (RFC 2347).
func TestClientChecksOACK(t *testing.T) {
	tests := []struct {
		name string
		oack []Option
		want string
	}{
		{"unasked option", []Option{{"windowsize", "4"}}, `OACK has option "windowsize", not asked`},
		{"blksize over asked", []Option{{"blksize", "9000"}}, "OACK blksize 9000, asked 1468"},
		{"not a number", []Option{{"tsize", "x"}}, `OACK option tsize="x" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			got := make(chan packet, 1)
			go func() {
				buf := make([]byte, 1024)
				fake.SetReadDeadline(time.Now().Add(wait))
				_, from, err := fake.ReadFromUDP(buf)
				if err != nil {
					return
				}
				fake.WriteToUDP(marshalOACK(tt.oack), from)
				n, _, err := fake.ReadFromUDP(buf)
				if err != nil {
					return
				}
				p, _ := parsePacket(buf[:n])
				got <- p
			}()
			_, err = (&Client{BlockSize: 1468}).Get(context.Background(), fake.LocalAddr().String(), "f", new(bytes.Buffer))
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("Get: %v, want ...%q", err, tt.want)
			}
			p := <-got
			if p.op != opERROR || p.err.Code != ErrOptionDenied || p.err.Message != tt.want {
				t.Errorf("client sent %+v, want ERROR 8 %q", p, tt.want)
			}
		})
	}
}

type madeFile struct{ *bytes.Reader }

func (madeFile) Close() error { return nil }

// TestFiles: names Files makes are served with the client's address
// known to it; its *Error goes to the client as it is; ErrNotMine falls
// back to Root.
func TestFiles(t *testing.T) {
	root := writeRoot(t, map[string][]byte{"ok": []byte("from root")})
	var seen []string
	ts := startServer(t, &Server{Root: root, Files: func(_ context.Context, name string, client netip.Addr) (File, int64, error) {
		switch name {
		case "/grub?mac=52:54:00:00:00:01":
			seen = append(seen, client.String())
			b := []byte("made for " + client.String())
			return madeFile{bytes.NewReader(b)}, int64(len(b)), nil
		case "/refused":
			return nil, 0, &Error{Code: ErrAccess, Message: "not for you"}
		}
		return nil, 0, ErrNotMine
	}})
	if got, _ := get(t, &Client{}, ts.addr, "/grub?mac=52:54:00:00:00:01"); string(got) != "made for 127.0.0.1" {
		t.Errorf("made file: %q", got)
	}
	if got, _ := get(t, &Client{}, ts.addr, "ok"); string(got) != "from root" {
		t.Errorf("root's file: %q", got)
	}
	_, err := (&Client{}).Get(context.Background(), ts.addr, "/refused", new(bytes.Buffer))
	var e *Error
	if !errors.As(err, &e) || e.Code != ErrAccess || e.Message != "not for you" {
		t.Errorf("refused: %v", err)
	}
	if len(seen) != 1 {
		t.Errorf("Files asked %d times for the made file", len(seen))
	}
}
