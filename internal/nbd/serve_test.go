package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pattern is the byte at offset off of the test image: not periodic on any
// power of two, so a read from the wrong offset shows.
func pattern(off int64) byte { return byte(off*31 + off>>9) }

// patternImage is an in-memory Backend of size bytes of pattern.
type patternImage struct{ size int64 }

func (m patternImage) Size() int64 { return m.size }

func (m patternImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= m.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), m.size-off)
	for i := range n {
		p[i] = pattern(off + i)
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func wantPattern(off int64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern(off + int64(i))
	}
	return b
}

// result is what the fake kernel got back for one request.
type result struct {
	reply Reply
	data  []byte
}

// fakeKernel is the client side as drivers/block/nbd.c behaves: it pipelines
// requests on one connection, matches replies by handle, and reads a payload
// only after a successful read reply.
type fakeKernel struct {
	conn net.Conn

	wmu sync.Mutex // one request on the wire at a time

	mu      sync.Mutex // guards pending and err
	pending map[uint64]pendingReq
	err     error // why the reply reader stopped

	handles atomic.Uint64

	// scratch, if set, takes every payload in turn (for benchmarks: the
	// data is then only good until the next reply).
	scratch []byte
}

type pendingReq struct {
	req Request
	ch  chan result
}

func newFakeKernel(conn net.Conn) *fakeKernel { return newFakeKernelScratch(conn, nil) }

func newFakeKernelScratch(conn net.Conn, scratch []byte) *fakeKernel {
	k := &fakeKernel{conn: conn, pending: map[uint64]pendingReq{}, scratch: scratch}
	go k.readReplies()
	return k
}

func (k *fakeKernel) readReplies() {
	var hdr [ReplyHeaderLen]byte
	for {
		if _, err := io.ReadFull(k.conn, hdr[:]); err != nil {
			k.stop(err)
			return
		}
		rep, err := ParseReply(hdr[:])
		if err != nil {
			k.stop(err)
			return
		}
		k.mu.Lock()
		p, ok := k.pending[rep.Handle]
		delete(k.pending, rep.Handle)
		k.mu.Unlock()
		if !ok {
			k.stop(fmt.Errorf("reply for handle %#x, which is not in flight", rep.Handle))
			return
		}
		res := result{reply: rep}
		if p.req.Type == CmdRead && rep.Error == 0 {
			if len(k.scratch) >= int(p.req.Length) {
				res.data = k.scratch[:p.req.Length]
			} else {
				res.data = make([]byte, p.req.Length)
			}
			if _, err := io.ReadFull(k.conn, res.data); err != nil {
				k.stop(fmt.Errorf("read payload for handle %#x: %w", rep.Handle, err))
				return
			}
		}
		p.ch <- res
	}
}

func (k *fakeKernel) stop(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		k.err = err
	}
	for h, p := range k.pending {
		close(p.ch)
		delete(k.pending, h)
	}
}

// send puts a request on the wire with a fresh handle whose both halves are
// non-zero (so a server that truncates the handle is caught) and returns
// where its reply will arrive. NBD_CMD_DISC gets no reply.
func (k *fakeKernel) send(t testing.TB, req Request, payload []byte) <-chan result {
	t.Helper()
	req.Handle = k.handles.Add(1)<<32 | 0x5eed
	ch := make(chan result, 1)
	if req.Type != CmdDisc {
		k.mu.Lock()
		if k.err != nil {
			k.mu.Unlock()
			t.Fatalf("send %v: reply reader stopped: %v", req.Type, k.err)
		}
		k.pending[req.Handle] = pendingReq{req: req, ch: ch}
		k.mu.Unlock()
	}
	b, _ := req.MarshalBinary()
	k.wmu.Lock()
	defer k.wmu.Unlock()
	if _, err := k.conn.Write(append(b, payload...)); err != nil {
		t.Errorf("send %v: %v", req.Type, err)
	}
	return ch
}

// do sends a request and waits for its reply, checking the handle.
func (k *fakeKernel) do(t testing.TB, req Request, payload []byte) result {
	t.Helper()
	ch := k.send(t, req, payload)
	select {
	case res, ok := <-ch:
		if !ok {
			k.mu.Lock()
			defer k.mu.Unlock()
			t.Fatalf("%v: no reply: %v", req.Type, k.err)
		}
		return res
	case <-time.After(30 * time.Second):
		t.Fatalf("%v: no reply after 30s", req.Type)
	}
	return result{}
}

func (k *fakeKernel) read(t testing.TB, off int64, n int) result {
	t.Helper()
	return k.do(t, Request{Type: CmdRead, Offset: uint64(off), Length: uint32(n)}, nil)
}

// startServer runs s.Serve on one end of a net.Pipe and returns a fake
// kernel on the other, and where Serve's result arrives.
func startServer(t *testing.T, s *Server) (*fakeKernel, <-chan error) {
	t.Helper()
	kc, sc := net.Pipe()
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- s.Serve(context.Background(), sc)
		close(finished)
	}()
	t.Cleanup(func() {
		kc.Close()
		sc.Close()
		<-finished
	})
	return newFakeKernel(kc), done
}

func waitServe(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after 30s")
	}
	return nil
}

func TestServeConcurrentReads(t *testing.T) {
	const size = 8 << 20
	var inFlight, most atomic.Int32
	img := &countingImage{Backend: patternImage{size}, in: &inFlight, most: &most, delay: time.Millisecond}
	k, _ := startServer(t, &Server{Backend: img, Workers: 8})

	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 8 {
				off := int64((g*8+i)*37*4096) % (size - 256<<10)
				n := 512 << ((g + i) % 10) // 512 B to 256 KiB
				res := k.read(t, off, n)
				if res.reply.Error != 0 {
					t.Errorf("read %d at %d: %v", n, off, res.reply.Error)
					return
				}
				if !bytes.Equal(res.data, wantPattern(off, n)) {
					t.Errorf("read %d at %d: wrong data", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m < 2 || m > 8 {
		t.Errorf("at most %d reads at once, want 2..8 (Workers: 8)", m)
	}
}

// countingImage records how many ReadAt calls run at once.
type countingImage struct {
	Backend
	in, most *atomic.Int32
	delay    time.Duration
}

func (c *countingImage) ReadAt(p []byte, off int64) (int, error) {
	n := c.in.Add(1)
	defer c.in.Add(-1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(c.delay)
	return c.Backend.ReadAt(p, off)
}

// gateImage holds every ReadAt until release is closed, so a test can put
// several reads in flight and answer them out of order.
type gateImage struct {
	Backend
	started chan int64
	release chan struct{}
}

func (g *gateImage) ReadAt(p []byte, off int64) (int, error) {
	g.started <- off
	<-g.release
	return g.Backend.ReadAt(p, off)
}

func TestServeRepliesOutOfOrder(t *testing.T) {
	gate := &gateImage{Backend: patternImage{1 << 20}, started: make(chan int64, 4), release: make(chan struct{})}
	k, _ := startServer(t, &Server{Backend: gate})
	slow := k.send(t, Request{Type: CmdRead, Offset: 4096, Length: 4096}, nil)
	<-gate.started // the slow read is in the backend
	// While it waits, a write, a flush and a read past the end are answered.
	if res := k.do(t, Request{Type: CmdFlush}, nil); res.reply.Error != 0 {
		t.Errorf("flush: %v", res.reply.Error)
	}
	if res := k.read(t, 1<<20, 1); res.reply.Error != EINVAL {
		t.Errorf("read past end: %v, want EINVAL", res.reply.Error)
	}
	close(gate.release)
	res := <-slow
	if res.reply.Error != 0 || !bytes.Equal(res.data, wantPattern(4096, 4096)) {
		t.Errorf("slow read: %v, data ok %v", res.reply.Error, bytes.Equal(res.data, wantPattern(4096, 4096)))
	}
}

func TestServeAnswers(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name    string
		req     Request
		payload []byte
		want    Errno
		data    []byte
	}{
		{"read", Request{Type: CmdRead, Offset: 512, Length: 1024}, nil, 0, wantPattern(512, 1024)},
		{"read the last byte", Request{Type: CmdRead, Offset: size - 1, Length: 1}, nil, 0, wantPattern(size-1, 1)},
		{"read nothing", Request{Type: CmdRead, Offset: size, Length: 0}, nil, 0, []byte{}},
		{"read across the end", Request{Type: CmdRead, Offset: size - 512, Length: 1024}, nil, EINVAL, nil},
		{"read past the end", Request{Type: CmdRead, Offset: size + 4096, Length: 512}, nil, EINVAL, nil},
		{"read at offset 2^64-1", Request{Type: CmdRead, Offset: ^uint64(0), Length: 2}, nil, EINVAL, nil},
		{"read with FUA", Request{Type: CmdRead, Flags: CmdFlagFUA, Length: 16}, nil, 0, wantPattern(0, 16)},
		{"read with an unknown flag", Request{Type: CmdRead, Flags: 1 << 2, Length: 16}, nil, EINVAL, nil},
		{"write", Request{Type: CmdWrite, Offset: 0, Length: 4096}, bytes.Repeat([]byte{0xee}, 4096), EPERM, nil},
		{"write past the end", Request{Type: CmdWrite, Offset: size, Length: 8}, make([]byte, 8), EPERM, nil},
		{"trim", Request{Type: CmdTrim, Offset: 0, Length: 1 << 30}, nil, EPERM, nil},
		{"write zeroes", Request{Type: CmdWriteZeroes, Length: 4096}, nil, EPERM, nil},
		{"flush", Request{Type: CmdFlush}, nil, 0, nil},
		{"unknown command", Request{Type: 5}, nil, EINVAL, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := startServer(t, &Server{Backend: patternImage{size}})
			res := k.do(t, tc.req, tc.payload)
			if res.reply.Error != tc.want {
				t.Errorf("error %v, want %v", res.reply.Error, tc.want)
			}
			if !bytes.Equal(res.data, tc.data) {
				t.Errorf("data of %d bytes, want %d", len(res.data), len(tc.data))
			}
			// The stream is still in step: a read after it works.
			if res := k.read(t, 8192, 100); res.reply.Error != 0 || !bytes.Equal(res.data, wantPattern(8192, 100)) {
				t.Errorf("read after it: %v", res.reply.Error)
			}
		})
	}
}

// failingImage fails reads that touch [badFrom, badTo).
type failingImage struct {
	Backend
	badFrom, badTo int64
	err            error
}

func (f failingImage) ReadAt(p []byte, off int64) (int, error) {
	if off < f.badTo && off+int64(len(p)) > f.badFrom {
		return 0, f.err
	}
	return f.Backend.ReadAt(p, off)
}

// shortImage returns fewer bytes than asked and no error, against the
// io.ReaderAt contract.
type shortImage struct{ Backend }

func (s shortImage) ReadAt(p []byte, off int64) (int, error) {
	n, _ := s.Backend.ReadAt(p[:len(p)/2], off)
	return n, nil
}

func TestServeBackendError(t *testing.T) {
	errRange := errors.New("range request: 503 Service Unavailable")
	var mu sync.Mutex
	var logged []error
	s := &Server{
		Backend: failingImage{Backend: patternImage{1 << 20}, badFrom: 65536, badTo: 65537, err: errRange},
		OnError: func(err error) { mu.Lock(); logged = append(logged, err); mu.Unlock() },
	}
	k, _ := startServer(t, s)
	if res := k.read(t, 61440, 8192); res.reply.Error != EIO || res.data != nil {
		t.Errorf("failing read: %v with %d bytes, want EIO and no data", res.reply.Error, len(res.data))
	}
	if res := k.read(t, 0, 4096); res.reply.Error != 0 {
		t.Errorf("read after the failure: %v", res.reply.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 {
		t.Fatalf("OnError called %d times, want 1: %v", len(logged), logged)
	}
	if !errors.Is(logged[0], errRange) || !strings.Contains(logged[0].Error(), "read 8192 bytes at offset 61440") {
		t.Errorf("OnError got %q, want it to wrap the backend error and name the read", logged[0])
	}
}

func TestServeShortBackendRead(t *testing.T) {
	got := make(chan error, 1)
	k, _ := startServer(t, &Server{Backend: shortImage{patternImage{1 << 20}}, OnError: func(err error) { got <- err }})
	if res := k.read(t, 0, 4096); res.reply.Error != EIO {
		t.Errorf("short read: %v, want EIO", res.reply.Error)
	}
	if err := <-got; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("OnError got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestServeEOFAtTheEnd(t *testing.T) {
	// A ReaderAt may return io.EOF together with a full read of the last
	// bytes: that is success.
	img := patternImage{4096}
	k, _ := startServer(t, &Server{Backend: eofImage{img}})
	if res := k.read(t, 0, 4096); res.reply.Error != 0 || !bytes.Equal(res.data, wantPattern(0, 4096)) {
		t.Errorf("read to the end: %v", res.reply.Error)
	}
}

type eofImage struct{ Backend }

func (e eofImage) ReadAt(p []byte, off int64) (int, error) {
	n, err := e.Backend.ReadAt(p, off)
	if err == nil && off+int64(n) == e.Size() {
		err = io.EOF
	}
	return n, err
}

func TestServeDisconnect(t *testing.T) {
	gate := &gateImage{Backend: patternImage{1 << 20}, started: make(chan int64, 4), release: make(chan struct{})}
	k, done := startServer(t, &Server{Backend: gate})
	inFlight := k.send(t, Request{Type: CmdRead, Offset: 0, Length: 512}, nil)
	<-gate.started
	k.send(t, Request{Type: CmdDisc}, nil)
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a read in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate.release)
	// The read in flight is answered before Serve returns.
	if res := <-inFlight; res.reply.Error != 0 || !bytes.Equal(res.data, wantPattern(0, 512)) {
		t.Errorf("read in flight at NBD_CMD_DISC: %v", res.reply.Error)
	}
	if err := waitServe(t, done); err != nil {
		t.Errorf("Serve after NBD_CMD_DISC: %v, want nil", err)
	}
}

func TestServeRefusesBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"bad magic", func() []byte {
			b, _ := Request{Type: CmdRead, Length: 512}.MarshalBinary()
			b[3] ^= 0xff
			return b
		}(), "request magic 0x256095ec"},
		{"oversized read", func() []byte {
			b, _ := Request{Type: CmdRead, Length: MaxLength + 1}.MarshalBinary()
			return b
		}(), "NBD_CMD_READ of 33554433 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, sc := net.Pipe()
			defer kc.Close()
			done := make(chan error, 1)
			go func() { done <- Serve(context.Background(), sc, patternImage{1 << 20}) }()
			go kc.Write(tc.frame)
			err := waitServe(t, done)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Serve = %v, want ErrProtocol naming %q", err, tc.want)
			}
		})
	}
}

func TestServeShortHeaderThenEOF(t *testing.T) {
	kc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), sc, patternImage{1 << 20}) }()
	kc.Write([]byte{0x25, 0x60, 0x95})
	kc.Close()
	if err := waitServe(t, done); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Serve = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestServeHangUp(t *testing.T) {
	kc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), sc, patternImage{1 << 20}) }()
	kc.Close()
	err := waitServe(t, done)
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "without NBD_CMD_DISC") {
		t.Errorf("Serve = %v, want io.EOF and a word on NBD_CMD_DISC", err)
	}
}

func TestServeCancel(t *testing.T) {
	kc, sc := net.Pipe()
	defer kc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sc, patternImage{1 << 20}) }()
	k := newFakeKernel(kc)
	if res := k.read(t, 0, 512); res.reply.Error != 0 {
		t.Fatal(res.reply.Error)
	}
	cancel()
	if err := waitServe(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
}

func TestServeNoBackend(t *testing.T) {
	if err := (&Server{}).Serve(context.Background(), &bytes.Buffer{}); err == nil {
		t.Error("Serve without a backend: no error")
	}
}

func TestBufferClasses(t *testing.T) {
	if 1<<maxBufferShift != MaxLength {
		t.Fatalf("maxBufferShift %d does not match MaxLength %d", maxBufferShift, MaxLength)
	}
	for _, tc := range []struct{ n, size int }{
		{1, 4096}, {4096, 4096}, {4097, 8192}, {128 << 10, 128 << 10}, {MaxLength, MaxLength},
	} {
		b := getBuffer(tc.n)
		if len(*b) != tc.size {
			t.Errorf("getBuffer(%d) has %d bytes, want %d", tc.n, len(*b), tc.size)
		}
		putBuffer(b)
	}
}
