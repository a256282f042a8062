package tftp

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Client fetches files over TFTP: the other end of the server's codec,
// for tests, the bench and checking a server by hand. Zero fields mean
// the defaults of each.
type Client struct {
	// BlockSize is the blksize asked (RFC 2348); 0 asks none (512).
	BlockSize int
	// WindowSize is the windowsize asked (RFC 7440); 0 or 1 asks none
	// (lock-step).
	WindowSize int
	Timeout    time.Duration // wait before sending again; 0 means 1s
	Retries    int           // sends of one packet again before giving up; 0 means 5
}

// Fetched is what a Get received and negotiated.
type Fetched struct {
	Bytes      int64
	TSize      int64 // the size the server announced (RFC 2349); -1 if none
	BlockSize  int
	WindowSize int
}

// Get fetches name from the TFTP server at address server (host:port)
// into w, in octet mode, asking tsize and the Client's options. An ERROR
// from the server is returned as an *Error.
func (c *Client) Get(ctx context.Context, server, name string, w io.Writer) (Fetched, error) {
	f := Fetched{TSize: -1, BlockSize: defaultBlkSize, WindowSize: 1}
	fail := func(err error) (Fetched, error) {
		return f, fmt.Errorf("tftp get %s from %s: %w", name, server, err)
	}
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return fail(err)
	}
	// Bind to loopback when the server is there: a test's client then
	// listens on no other address.
	var laddr *net.UDPAddr
	if raddr.IP.IsLoopback() {
		laddr = &net.UDPAddr{IP: raddr.IP}
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(longAgo) })
	defer stop()

	asked := map[string]int{"tsize": 0}
	opts := []Option{{Name: "tsize", Value: "0"}}
	if c.BlockSize > 0 {
		asked["blksize"] = c.BlockSize
		opts = append(opts, Option{Name: "blksize", Value: strconv.Itoa(c.BlockSize)})
	}
	if c.WindowSize > 1 {
		asked["windowsize"] = c.WindowSize
		opts = append(opts, Option{Name: "windowsize", Value: strconv.Itoa(c.WindowSize)})
	}
	timeout, retries := cmp.Or(c.Timeout, DefaultTimeout), cmp.Or(c.Retries, DefaultRetries)

	out := Request{Op: RRQ, Filename: name, Mode: "octet", Options: opts}.Marshal()
	dest := raddr // the server's port 69 until it answers from its TID
	var peer *net.UDPAddr
	var (
		got      int64 // blocks received in order
		sinceAck int
		started  bool // OACK or DATA 1 received: the options are settled
		tries    int
	)
	buf := make([]byte, 1<<16)
	send := true
	for {
		if send {
			if _, err := conn.WriteToUDP(out, dest); err != nil {
				return fail(err)
			}
			send = false
		}
		conn.SetReadDeadline(time.Now().Add(timeout))
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		n, from, err := conn.ReadFromUDP(buf)
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if timedOut(err) {
			if tries++; tries > retries {
				return fail(fmt.Errorf("no answer after %d sends", tries))
			}
			if started {
				// RFC 7440: on a timeout, acknowledge what arrived in
				// order so the server goes on from there.
				out, sinceAck = marshalACK(uint16(got)), 0
			}
			send = true
			continue
		}
		if err != nil {
			return fail(err)
		}
		if peer == nil {
			if !from.IP.Equal(raddr.IP) {
				continue
			}
			peer, dest = from, from
		} else if !from.IP.Equal(peer.IP) || from.Port != peer.Port {
			// RFC 1350: a packet from another TID gets ERROR 5 and
			// changes nothing.
			conn.WriteToUDP((&Error{Code: ErrUnknownTID, Message: "unknown transfer ID"}).marshal(), from)
			continue
		}
		p, err := parsePacket(buf[:n])
		if err != nil {
			conn.WriteToUDP((&Error{Code: ErrIllegal, Message: err.Error()}).marshal(), peer)
			return fail(err)
		}
		switch p.op {
		case opERROR:
			return fail(p.err)
		case opOACK:
			if started {
				// Our ACK 0 was lost and the server sent the OACK again.
				send = got == 0
				continue
			}
			if err := f.accept(p.opts, asked); err != nil {
				conn.WriteToUDP((&Error{Code: ErrOptionDenied, Message: err.Error()}).marshal(), peer)
				return fail(err)
			}
			started, tries = true, 0
			out, send = marshalACK(0), true
		case opDATA:
			if p.block != uint16(got+1) {
				// A duplicate, or a block after one lost: acknowledge
				// what arrived in order (the server never resends on a
				// duplicate ACK, so this cannot snowball).
				if started {
					conn.WriteToUDP(marshalACK(uint16(got)), peer)
				}
				continue
			}
			if len(p.data) > f.BlockSize {
				err := fmt.Errorf("block %d has %d bytes, blksize is %d", got+1, len(p.data), f.BlockSize)
				conn.WriteToUDP((&Error{Code: ErrIllegal, Message: err.Error()}).marshal(), peer)
				return fail(err)
			}
			if _, err := w.Write(p.data); err != nil {
				conn.WriteToUDP((&Error{Code: ErrDiskFull, Message: "write failed"}).marshal(), peer)
				return fail(err)
			}
			started, tries = true, 0
			got++
			f.Bytes += int64(len(p.data))
			sinceAck++
			final := len(p.data) < f.BlockSize
			if !final && sinceAck < f.WindowSize {
				continue
			}
			out, sinceAck = marshalACK(uint16(got)), 0
			if final {
				// No dally for a retransmission of the last block: the
				// final ACK goes out once, as most clients do.
				conn.WriteToUDP(out, peer)
				if f.TSize >= 0 && f.Bytes != f.TSize {
					return fail(fmt.Errorf("got %d bytes, tsize said %d", f.Bytes, f.TSize))
				}
				return f, nil
			}
			send = true
		default:
			err := fmt.Errorf("unexpected opcode %d", p.op)
			conn.WriteToUDP((&Error{Code: ErrIllegal, Message: err.Error()}).marshal(), peer)
			return fail(err)
		}
	}
}

// accept applies an OACK's options. RFC 2347: the client refuses (ERROR
// 8) an option it did not ask or a value it cannot take.
func (f *Fetched) accept(opts []Option, asked map[string]int) error {
	for _, o := range opts {
		want, ok := asked[o.Name]
		if !ok {
			return fmt.Errorf("OACK has option %q, not asked", o.Name)
		}
		v, ok := decimal(o.Value)
		if !ok {
			return fmt.Errorf("OACK option %s=%q is not a number", o.Name, o.Value)
		}
		switch o.Name {
		case "tsize":
			f.TSize = int64(v)
		case "blksize":
			if v < minBlockSize || v > want {
				return fmt.Errorf("OACK blksize %d, asked %d", v, want)
			}
			f.BlockSize = v
		case "windowsize":
			if v < 1 || v > want {
				return fmt.Errorf("OACK windowsize %d, asked %d", v, want)
			}
			f.WindowSize = v
		}
	}
	return nil
}
