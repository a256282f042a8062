package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// transfer sends one file to one client, from a socket connected to the
// client's TID.
type transfer struct {
	ctx     context.Context
	conn    *net.UDPConn
	file    io.ReaderAt
	p       params
	retries int
	out     []byte // the DATA packet being (re)sent: header and one block
	in      []byte // packets from the client
}

// clientError is the client's ERROR packet ending the transfer.
type clientError struct{ e *Error }

func (c *clientError) Error() string { return "client sent " + c.e.Error() }

var errGaveUp = errors.New("no answer")

// run sends the OACK, if any options were accepted, then the file. It
// returns the bytes the client acknowledged.
func (t *transfer) run(oack []Option) (int64, error) {
	// ACKs and ERRORs are small; a larger packet is cut, which only
	// matters for the text of an ERROR.
	t.in = make([]byte, 1024)
	if len(oack) > 0 {
		if err := t.sendOACK(marshalOACK(oack)); err != nil {
			return 0, err
		}
	}
	t.out = make([]byte, 4+t.p.blockSize)
	return t.sendFile()
}

// read waits until deadline for the client's next packet.
func (t *transfer) read(deadline time.Time) (packet, error) {
	t.conn.SetReadDeadline(deadline)
	// Checked after setting the deadline: a cancellation from here on
	// moves the deadline to the past (Serve's AfterFunc), one before it
	// is seen here.
	if err := t.ctx.Err(); err != nil {
		return packet{}, err
	}
	n, err := t.conn.Read(t.in)
	if err != nil {
		if t.ctx.Err() != nil {
			return packet{}, t.ctx.Err()
		}
		return packet{}, err
	}
	p, err := parsePacket(t.in[:n])
	if err != nil {
		t.conn.Write((&Error{Code: ErrIllegal, Message: err.Error()}).marshal())
		return packet{}, fmt.Errorf("bad packet from client: %w", err)
	}
	switch p.op {
	case opACK:
		return p, nil
	case opERROR:
		return packet{}, &clientError{p.err}
	}
	// RFC 1350: a packet that makes no sense in the transfer ends it.
	t.conn.Write((&Error{Code: ErrIllegal, Message: fmt.Sprintf("expected ACK, got opcode %d", p.op)}).marshal())
	return packet{}, fmt.Errorf("client sent opcode %d, expected ACK", p.op)
}

func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// sendOACK sends the accepted options (RFC 2347) until the client
// acknowledges them with ACK 0.
func (t *transfer) sendOACK(pkt []byte) error {
	for try := 0; ; try++ {
		if _, err := t.conn.Write(pkt); err != nil {
			return fmt.Errorf("send OACK: %w", err)
		}
		deadline := time.Now().Add(t.p.timeout)
		for {
			p, err := t.read(deadline)
			if timedOut(err) {
				break
			}
			if err != nil {
				return err
			}
			if p.block == 0 {
				return nil
			}
			// Any other ACK is stray: wait on.
		}
		if try >= t.retries {
			return fmt.Errorf("OACK sent %d times: %w", try+1, errGaveUp)
		}
	}
}

// sendFile sends the file's blocks, windowSize of them before waiting for
// an ACK (RFC 7440; 1 is RFC 1350's lock-step).
//
// Blocks are counted from 1 in an int64; on the wire the number is its
// low 16 bits, so block 65536 goes out as 0, then 1, ...: the rollover
// tftp-hpa and iPXE use for files over 65535 blocks (no RFC defines it).
func (t *transfer) sendFile() (int64, error) {
	bs := int64(t.p.blockSize)
	win := int64(t.p.windowSize)
	var (
		acked   int64      // highest block the client acknowledged
		next    int64 = 1  // next block to send
		last    int64 = -1 // the final block (shorter than blockSize), once read
		lastLen int64
		tries   int
	)
	sent := func() int64 { // bytes the client acknowledged
		if acked == last {
			return (last-1)*bs + lastLen
		}
		return acked * bs
	}
	for {
		for next <= acked+win && (last < 0 || next <= last) {
			n, err := t.file.ReadAt(t.out[4:], (next-1)*bs)
			if err != nil && err != io.EOF {
				t.conn.Write((&Error{Code: ErrUndefined, Message: "read error"}).marshal())
				return sent(), fmt.Errorf("read block %d: %w", next, err)
			}
			if int64(n) < bs {
				last, lastLen = next, int64(n)
			}
			putDataHeader(t.out, uint16(next))
			if _, err := t.conn.Write(t.out[:4+n]); err != nil {
				return sent(), fmt.Errorf("send block %d: %w", next, err)
			}
			next++
		}
		// The deadline runs from the last send, not from each packet
		// received: duplicate ACKs arriving must not put off the
		// retransmission that the lost packet needs.
		deadline := time.Now().Add(t.p.timeout)
	wait:
		for {
			p, err := t.read(deadline)
			if timedOut(err) {
				if tries >= t.retries {
					return sent(), fmt.Errorf("block %d sent %d times: %w", acked+1, tries+1, errGaveUp)
				}
				tries++
				next = acked + 1 // send the window again
				break
			}
			if err != nil {
				return sent(), err
			}
			// How far this ACK moves us, modulo 2^16 like the block
			// numbers. 0 is a duplicate; more than was sent is stray.
			// Neither triggers a send: answering a duplicate ACK with
			// DATA is the Sorcerer's Apprentice bug (RFC 1123 section
			// 4.2.3.1), every block then going out twice.
			d := int64(p.block - uint16(acked))
			if d == 0 || d > next-1-acked {
				continue
			}
			acked += d
			tries = 0
			if acked == last {
				return sent(), nil
			}
			// An ACK short of the window's end means the client missed
			// the block after it: go on from there (RFC 7440 section 4).
			next = acked + 1
			break wait
		}
	}
}
