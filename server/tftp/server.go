package tftp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of the Server's zero fields.
const (
	DefaultMaxTransfers = 64
	// DefaultMaxPerClient: a PXE ROM or iPXE fetches one file at a time;
	// a few more leave room for a client that restarted its request.
	DefaultMaxPerClient = 8
	// DefaultMaxBlockSize fills one Ethernet frame: 1468 + 4 (TFTP) + 8
	// (UDP) + 20 (IPv4) = 1500. A larger block is an IP fragment train
	// on a real LAN, lost whole with any one fragment; PXE ROMs ask 1456
	// or 1468 anyway.
	DefaultMaxBlockSize  = 1468
	DefaultMaxWindowSize = 16
	DefaultTimeout       = time.Second
	DefaultRetries       = 5
)

// Server serves the files under Root over TFTP, read-only. Set the fields
// before Serve; zero values mean the defaults above and are not written
// back.
type Server struct {
	Root string       // directory served; request names are relative to it
	Log  *slog.Logger // nil discards

	MaxTransfers int // transfers in flight at once
	MaxPerClient int // transfers in flight at once from one IP address
	// MaxBlockSize is the largest blksize granted (RFC 2348), at most
	// 65464.
	MaxBlockSize int
	// MaxWindowSize is the largest windowsize granted (RFC 7440); -1
	// refuses the option (lock-step only).
	MaxWindowSize int
	// Timeout is the wait for an ACK before a retransmission when the
	// client asks for no timeout option (RFC 2349).
	Timeout time.Duration
	// Retries is how many times one packet is sent again before the
	// transfer is given up; -1 means never.
	Retries int
	// DialTransfer opens a transfer's connected socket (nil: net.DialUDP).
	// A server listening in another network namespace than the one its
	// goroutines run in (vmtest's LANs) opens them there.
	DialTransfer func(laddr, raddr *net.UDPAddr) (*net.UDPConn, error)
	// Files, when set, is asked first for each name (as the client sent
	// it) and its client's address: the content of a file the caller
	// makes (the server's GRUB configs, its blobs by digest), or an
	// *Error to send, or ErrNotMine to serve the name from Root.
	Files func(ctx context.Context, name string, client netip.Addr) (File, int64, error)

	mu sync.Mutex // guards active, perIP, dropLogged and dropped
	// active holds the transfers in flight by client address and port
	// (the client's TID): a retransmitted RRQ is recognised, not served
	// twice.
	active map[netip.AddrPort]struct{}
	perIP  map[netip.Addr]int
	// dropLogged is when a request over a cap was last logged: one line
	// a second is enough to see a flood without writing it down.
	dropLogged time.Time
	dropped    int
}

// Transfers is the number of transfers in flight.
func (s *Server) Transfers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) limits() limits {
	return limits{
		maxBlockSize:  cmp.Or(s.MaxBlockSize, DefaultMaxBlockSize),
		maxWindowSize: cmp.Or(s.MaxWindowSize, DefaultMaxWindowSize),
		timeout:       cmp.Or(s.Timeout, DefaultTimeout),
	}
}

func (s *Server) check() error {
	switch {
	case s.MaxBlockSize != 0 && (s.MaxBlockSize < minBlockSize || s.MaxBlockSize > maxBlockSize):
		return fmt.Errorf("tftp: MaxBlockSize %d is outside %d..%d (RFC 2348)", s.MaxBlockSize, minBlockSize, maxBlockSize)
	case s.MaxWindowSize < -1 || s.MaxWindowSize > maxWindowSize:
		return fmt.Errorf("tftp: MaxWindowSize %d is outside -1..%d (RFC 7440)", s.MaxWindowSize, maxWindowSize)
	case s.MaxTransfers < 0, s.MaxPerClient < 0, s.Retries < -1, s.Timeout < 0:
		return fmt.Errorf("tftp: negative limit (MaxTransfers %d, MaxPerClient %d, Retries %d, Timeout %v)", s.MaxTransfers, s.MaxPerClient, s.Retries, s.Timeout)
	}
	return nil
}

// longAgo is a deadline in the past: setting it unblocks a pending read.
var longAgo = time.Unix(1, 0)

// Serve answers the requests that arrive on conn until ctx is done, then
// stops the transfers in flight (each client gets an ERROR saying so) and
// returns nil once they have ended. conn stays the caller's: Serve does
// not close it, but leaves its read deadline in the past. Transfers run
// from sockets of their own on conn's address (RFC 1350: each transfer
// has its own TID). Another error means conn failed.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if err := s.check(); err != nil {
		return err
	}
	root, err := os.OpenRoot(s.Root)
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	defer root.Close()
	var wg sync.WaitGroup
	defer wg.Wait() // before root.Close: transfers open files through it

	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(longAgo) })
	defer stop()
	var local net.IP
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsUnspecified() {
		local = a.IP
	}
	// Big enough for any UDP datagram, so an oversized request is seen
	// whole and refused rather than silently truncated to look valid.
	buf := make([]byte, 1<<16)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tftp: read request on %s: %w", conn.LocalAddr(), err)
		}
		client, ok := udpAddr(addr)
		if !ok {
			continue
		}
		s.request(ctx, conn, root, &wg, local, client, buf[:n])
	}
}

func udpAddr(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// request answers one packet that arrived on the server's port. Nothing
// it refuses changes any state.
func (s *Server) request(ctx context.Context, conn net.PacketConn, root *os.Root, wg *sync.WaitGroup, local net.IP, client netip.AddrPort, b []byte) {
	log := s.log()
	// Never answer an ERROR: two servers would bounce errors forever.
	if len(b) >= 2 && b[0] == 0 && uint16(b[1]) == opERROR {
		return
	}
	refuse := func(code ErrorCode, msg string) {
		conn.WriteTo((&Error{Code: code, Message: msg}).marshal(), net.UDPAddrFromAddrPort(client))
	}
	req, err := ParseRequest(b)
	if err != nil {
		// Debug: anyone can send garbage at line rate.
		log.Debug("tftp bad request", "client", client, "err", err)
		refuse(ErrIllegal, err.Error())
		return
	}
	switch {
	case req.Op == WRQ:
		log.Info("tftp request refused", "client", client, "file", req.Filename, "op", req.Op, "reason", "read-only")
		refuse(ErrAccess, "read-only server: WRQ refused")
		return
	case req.Mode != "octet":
		// The files served are binaries: converting them to netascii
		// (RFC 1350: CR LF line ends, CR NUL) would corrupt them, and
		// serving them raw to a client that decodes netascii would too.
		// PXE ROMs and iPXE ask octet.
		log.Info("tftp request refused", "client", client, "file", req.Filename, "mode", req.Mode, "reason", "mode")
		refuse(ErrUndefined, fmt.Sprintf("mode %s not served: only octet (binary)", req.Mode))
		return
	}
	if !s.admit(client) {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer s.release(client)
		s.serveRRQ(ctx, root, local, client, req)
	}()
}

// admit takes a transfer slot for client. A request over a cap gets no
// answer, on purpose: PXE ROMs retransmit an unanswered RRQ, so a client
// turned away by a boot storm gets in a second or two later, while an
// ERROR would end its boot. A retransmitted RRQ of a transfer in flight
// is dropped too: that transfer's own retransmissions answer it.
func (s *Server) admit(client netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		s.active = make(map[netip.AddrPort]struct{})
		s.perIP = make(map[netip.Addr]int)
	}
	if _, dup := s.active[client]; dup {
		return false
	}
	maxAll, maxIP := cmp.Or(s.MaxTransfers, DefaultMaxTransfers), cmp.Or(s.MaxPerClient, DefaultMaxPerClient)
	if len(s.active) >= maxAll || s.perIP[client.Addr()] >= maxIP {
		s.dropped++
		if now := time.Now(); now.Sub(s.dropLogged) >= time.Second {
			s.log().Warn("tftp requests dropped: over the transfer caps", "client", client,
				"dropped", s.dropped, "transfers", len(s.active), "max_transfers", maxAll,
				"from_client", s.perIP[client.Addr()], "max_per_client", maxIP)
			s.dropLogged, s.dropped = now, 0
		}
		return false
	}
	s.active[client] = struct{}{}
	s.perIP[client.Addr()]++
	return true
}

func (s *Server) release(client netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, client)
	if s.perIP[client.Addr()]--; s.perIP[client.Addr()] <= 0 {
		delete(s.perIP, client.Addr())
	}
}

// serveRRQ runs one read transfer from a socket of its own.
func (s *Server) serveRRQ(ctx context.Context, root *os.Root, local net.IP, client netip.AddrPort, req Request) {
	t0 := time.Now()
	log := s.log().With("file", req.Filename, "client", client)
	// A connected socket: the kernel drops packets from any other
	// address or port, so a stray or forged packet cannot disturb the
	// transfer (RFC 1350 would answer them with ERROR 5; dropping them
	// is quieter and as safe), and an ICMP port unreachable ends the
	// transfer at once instead of after every retry.
	dial := s.DialTransfer
	if dial == nil {
		dial = func(l, r *net.UDPAddr) (*net.UDPConn, error) { return net.DialUDP("udp", l, r) }
	}
	conn, err := dial(&net.UDPAddr{IP: local}, net.UDPAddrFromAddrPort(client))
	if err != nil {
		log.Warn("tftp transfer socket", "err", err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(longAgo) })
	defer stop()

	f, size, rerr := s.openFile(ctx, root, req.Filename, client.Addr())
	if rerr != nil {
		conn.Write(rerr.marshal())
		log.Info("tftp request refused", "code", uint16(rerr.Code), "reason", rerr.Message)
		return
	}
	defer f.Close()
	p, oack := negotiate(req.Options, s.limits(), size)
	t := &transfer{ctx: ctx, conn: conn, file: f, p: p, retries: cmp.Or(s.Retries, DefaultRetries)}
	if s.Retries < 0 {
		t.retries = 0
	}
	n, err := t.run(oack)
	d := time.Since(t0)
	var cerr *clientError
	switch {
	case err == nil:
		log.Info("tftp transfer", "bytes", n, "duration", d, "blksize", p.blockSize, "windowsize", p.windowSize)
	case errors.As(err, &cerr):
		// Normal for PXE ROMs: many ask tsize, read the OACK and abort
		// with an ERROR before asking again for the file itself.
		log.Info("tftp transfer ended by the client", "bytes", n, "duration", d, "code", uint16(cerr.e.Code), "message", cerr.e.Message)
	case ctx.Err() != nil:
		conn.Write((&Error{Code: ErrUndefined, Message: "server shutting down"}).marshal())
		log.Info("tftp transfer stopped: server shutting down", "bytes", n, "duration", d)
	default:
		if errors.Is(err, errGaveUp) {
			// The client may be alive with only its ACKs lost: tell it
			// to stop waiting.
			conn.Write((&Error{Code: ErrUndefined, Message: "no ACK: transfer timed out"}).marshal())
		}
		log.Warn("tftp transfer failed", "bytes", n, "duration", d, "err", err)
	}
}

// File is what Server.Files answers: the content, its size, and a
// Close run when the transfer ends.
type File interface {
	io.ReaderAt
	io.Closer
}

// ErrNotMine is Files' answer for a name it does not make: Root serves
// it.
var ErrNotMine = errors.New("tftp: not a made file")

// openFile asks Files, then Root.
func (s *Server) openFile(ctx context.Context, root *os.Root, name string, client netip.Addr) (File, int64, *Error) {
	if s.Files != nil {
		f, size, err := s.Files(ctx, name, client)
		var terr *Error
		switch {
		case err == nil:
			return f, size, nil
		case errors.As(err, &terr):
			return nil, 0, terr
		case !errors.Is(err, ErrNotMine):
			return nil, 0, &Error{Code: ErrNotFound, Message: fmt.Sprintf("%s: %v", name, err)}
		}
	}
	f, size, rerr := open(root, name)
	if rerr != nil {
		return nil, 0, rerr
	}
	return f, size, nil
}

// open opens name under root for reading, or says in an ERROR packet why
// not. Only regular files are served: a device or FIFO would never end.
func open(root *os.Root, name string) (*os.File, int64, *Error) {
	// os.Root refuses "..", absolute paths and symlinks leading out of
	// the root; checking IsLocal first gives the plain case a plain
	// answer. One leading "/" names the root, as tftp-hpa --secure and
	// dnsmasq read it: GRUB asks "/grub/grub.cfg" for its prefix /grub.
	// "/etc/passwd" is then root/etc/passwd, never the host's file.
	name = strings.TrimPrefix(name, "/")
	if !filepath.IsLocal(name) {
		return nil, 0, &Error{Code: ErrAccess, Message: fmt.Sprintf("%q is not a path inside the served directory", name)}
	}
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer, holding the slot; it changes nothing for a regular file.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, &Error{Code: ErrNotFound, Message: fmt.Sprintf("%s: file not found", name)}
		}
		// A symlink out of the root, a permission error, an I/O error:
		// the client learns only that it may not have the file.
		return nil, 0, &Error{Code: ErrAccess, Message: fmt.Sprintf("%s: cannot be read", name)}
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, &Error{Code: ErrAccess, Message: fmt.Sprintf("%s: not a regular file", name)}
	}
	return f, fi.Size(), nil
}
