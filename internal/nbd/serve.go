package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"time"
)

// Backend is what the device reads from: a read-only image of Size bytes.
// ReadAt is called from several goroutines at once.
type Backend interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// DefaultWorkers is how many requests a Server answers at once when
// Server.Workers is zero. The kernel pipelines requests on one socket (up to
// its queue depth, 128 by default), and a remote backend gains from reading
// several ranges at once.
const DefaultWorkers = 16

// Server answers the kernel's requests for one device from Backend.
type Server struct {
	Backend Backend
	// Workers bounds the reads in progress at once; 0 means DefaultWorkers.
	// When all are busy the server stops reading requests, so the socket
	// buffer, then the kernel's queue, holds the rest.
	Workers int
	// OnError, if set, is called with each backend error, which the kernel
	// gets as EIO (and logs as "Other side returned error (5)"); the caller
	// logs it where a person will see it. It may be called from several
	// goroutines at once.
	OnError func(error)
}

// Serve answers requests on conn from b until the kernel sends NBD_CMD_DISC
// (then it returns nil), the connection fails, or ctx is done; see
// Server.Serve.
func Serve(ctx context.Context, conn io.ReadWriter, b Backend) error {
	s := &Server{Backend: b}
	return s.Serve(ctx, conn)
}

// Serve answers requests on conn until the kernel sends NBD_CMD_DISC (it
// returns nil once every request before it is answered), the connection
// fails or breaks the protocol (an error; ErrProtocol for a bad frame; one
// wrapping io.EOF when the peer hung up without NBD_CMD_DISC), or ctx is
// done (ctx.Err()). It always waits for the reads in progress to finish, so
// a Backend that blocks holds it up. ctx interrupts a wait for the next
// request only when conn has SetReadDeadline (a net.Conn).
//
// Reads are answered concurrently and possibly out of order, as the protocol
// allows; each reply goes out whole, never interleaved with another. A read
// past the end gets EINVAL, a write, trim or write-zeroes EPERM (the device is
// read-only), an unknown command or command flag EINVAL, a flush success
// (nothing is ever written), and a backend error EIO. Serve neither closes
// conn nor answers after it returns.
func (s *Server) Serve(ctx context.Context, conn io.ReadWriter) error {
	if s.Backend == nil {
		return errors.New("nbd: serve: no backend")
	}
	size := s.Backend.Size()
	if size < 0 {
		return fmt.Errorf("nbd: serve: backend size %d", size)
	}
	workers := s.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d, ok := conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}

	out := &replier{w: conn}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	// Every return waits for the reads in progress: their replies must not
	// be written after Serve returns.
	defer wg.Wait()

	// Requests are 28 bytes: a buffered reader takes many per system call
	// when the kernel pipelines.
	in := bufio.NewReaderSize(conn, 64<<10)
	for {
		req, err := ReadRequest(in)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return fmt.Errorf("nbd: connection closed without NBD_CMD_DISC: %w", err)
			}
			return fmt.Errorf("nbd: read request: %w", err)
		}
		if err := out.failed(); err != nil {
			return err
		}
		switch {
		case req.Type == CmdDisc:
			// proto.md: the server MUST handle all outstanding requests;
			// there is no reply to NBD_CMD_DISC.
			wg.Wait()
			return out.failed()
		case req.Type == CmdWrite:
			// The payload follows the header: consume it to stay in step
			// (its length was checked against MaxLength, and io.Discard
			// needs no buffer of that size).
			if _, err := io.CopyN(io.Discard, in, int64(req.Length)); err != nil {
				return fmt.Errorf("nbd: read %v payload of %d bytes: %w", req.Type, req.Length, err)
			}
			out.reply(Reply{Error: EPERM, Handle: req.Handle}, nil)
		case req.Type == CmdTrim || req.Type == CmdWriteZeroes:
			out.reply(Reply{Error: EPERM, Handle: req.Handle}, nil)
		case req.Flags&^CmdFlagFUA != 0:
			out.reply(Reply{Error: EINVAL, Handle: req.Handle}, nil)
		case req.Type == CmdFlush:
			out.reply(Reply{Handle: req.Handle}, nil)
		case req.Type == CmdRead:
			if req.Offset > uint64(size) || uint64(req.Length) > uint64(size)-req.Offset {
				out.reply(Reply{Error: EINVAL, Handle: req.Handle}, nil)
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.read(req, out)
				<-sem
			}()
		default:
			out.reply(Reply{Error: EINVAL, Handle: req.Handle}, nil)
		}
	}
}

// read answers one read request that lies within the device.
func (s *Server) read(req Request, out *replier) {
	if req.Length == 0 {
		out.reply(Reply{Handle: req.Handle}, nil)
		return
	}
	buf := getBuffer(int(req.Length))
	defer putBuffer(buf)
	p := (*buf)[:req.Length]
	n, err := s.Backend.ReadAt(p, int64(req.Offset))
	switch {
	case n == len(p):
		// io.ReaderAt may return io.EOF with a full read at the end.
		err = nil
	case err == nil:
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if s.OnError != nil {
			s.OnError(fmt.Errorf("nbd: read %d bytes at offset %d: got %d: %w", req.Length, req.Offset, n, err))
		}
		out.reply(Reply{Error: EIO, Handle: req.Handle}, nil)
		return
	}
	out.reply(Reply{Handle: req.Handle}, p)
}

// replier writes replies, one whole reply at a time.
type replier struct {
	mu  sync.Mutex // guards w (one reply at a time) and err
	w   io.Writer
	err error // the first write error; later replies are dropped
}

// reply writes the header and data as one frame. On a net.Conn for a Unix
// or TCP socket that is one writev.
func (r *replier) reply(h Reply, data []byte) {
	var hdr [ReplyHeaderLen]byte
	h.put(&hdr)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	var err error
	if len(data) == 0 {
		_, err = r.w.Write(hdr[:])
	} else {
		bufs := net.Buffers{hdr[:], data}
		_, err = bufs.WriteTo(r.w)
	}
	if err != nil {
		r.err = fmt.Errorf("nbd: write reply (handle %#x, %v): %w", h.Handle, h.Error, err)
	}
}

func (r *replier) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Read buffers, pooled by power-of-two size from 4 KiB to MaxLength, so
// that a steady stream of reads allocates nothing.
const (
	minBufferShift = 12
	maxBufferShift = 25 // 1<<maxBufferShift == MaxLength
)

var buffers [maxBufferShift - minBufferShift + 1]sync.Pool

func bufferClass(n int) int {
	c := bits.Len(uint(n-1)) - minBufferShift
	return max(c, 0)
}

// getBuffer returns a buffer of at least n bytes, 0 < n <= MaxLength.
func getBuffer(n int) *[]byte {
	c := bufferClass(n)
	if b, ok := buffers[c].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 1<<(c+minBufferShift))
	return &b
}

func putBuffer(b *[]byte) {
	buffers[bufferClass(len(*b))].Put(b)
}
