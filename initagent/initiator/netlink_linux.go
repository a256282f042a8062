package initiator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// Netlink is the kernel's iSCSI netlink interface as recovery needs it
// (Kernel): one socket in iscsid's multicast group that sends requests
// and receives replies, login responses and events, the way iscsid's
// does.
//
// Attach keeps using u-root's iscsinl, which logs in well, but it cannot
// serve here: its socket joins the same group, yet each request waits
// for its reply by reading and dropping whatever else comes (another
// session's events and login responses), turns any connection error into
// the failure of the request in flight, and has no way to wait for
// events; it always stops with STOP_CONN_RECOVER, which is right here but
// not for Attach's clean-up. So this file speaks the protocol itself
// (uevent.go has the layout), with one reader that sorts what the kernel
// sends: replies to the request in flight (one at a time: a reply carries
// no sequence number), login responses to the connection logging in,
// events to Events.
type Netlink struct {
	f      *os.File
	rc     syscall.RawConn
	handle uint64 // the iscsi_tcp transport's (sysfs)
	// sys is /sys as it was opened: the keeper lives on after
	// switch_root, in the old root, where /sys is an empty directory
	// once the agent has moved the mount into the new one.
	sys *os.Root

	reqMu   sync.Mutex // one request at a time
	nlSeq   uint32     // guarded by reqMu
	replies chan reply

	mu      sync.Mutex // guards seq and waiters
	seq     uint64     // messages read so far: Event.Seq
	waiters map[connKey]*waiter

	events    chan Event
	done      chan struct{}
	closeOnce sync.Once
}

type connKey struct{ sid, cid uint32 }

type reply struct {
	ev  uevent
	seq uint64
}

// waiter receives the login responses of one connection, and its failure.
type waiter struct {
	pdus chan []byte
	fail chan ConnErr
}

// requestTimeout bounds a request: the kernel answers at once (it handles
// a request while we send it), unless something is badly wrong.
const requestTimeout = 30 * time.Second

// OpenNetlink opens the socket (root, module iscsi_tcp loaded) and starts
// reading it. Close it when done.
func OpenNetlink() (*Netlink, error) {
	b, err := os.ReadFile("/sys/class/iscsi_transport/tcp/handle")
	if err != nil {
		return nil, fmt.Errorf("iscsi netlink: the tcp transport's handle (is iscsi_tcp loaded?): %w", err)
	}
	handle, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("iscsi netlink: the tcp transport's handle: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, netlinkISCSI)
	if err != nil {
		return nil, os.NewSyscallError("iscsi netlink socket", err)
	}
	// Room for bursts of events (every session failing at once): the
	// kernel drops what does not fit, and EventsLost then makes the
	// Watcher check every session.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (grpISCSID - 1)}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("iscsi netlink bind", err)
	}
	sys, err := os.OpenRoot("/sys")
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "iscsi-netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		sys.Close()
		return nil, err
	}
	n := &Netlink{f: f, rc: rc, handle: handle, sys: sys, replies: make(chan reply, 1), waiters: map[connKey]*waiter{}, events: make(chan Event, 256), done: make(chan struct{})}
	go n.read()
	return n, nil
}

// Close closes the socket; Events then ends.
func (n *Netlink) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		err = n.f.Close()
		n.sys.Close()
	})
	return err
}

// Events implements Kernel.
func (n *Netlink) Events() <-chan Event { return n.events }

// read sorts what the kernel sends, until the socket is closed.
func (n *Netlink) read() {
	defer close(n.events)
	buf := make([]byte, 64<<10)
	for {
		var nr int
		var rerr error
		err := n.rc.Read(func(fd uintptr) bool {
			nr, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		switch {
		case err != nil:
			return // closed
		case rerr == unix.ENOBUFS:
			n.emit(Event{Kind: EventsLost})
			continue
		case rerr == unix.EINTR:
			continue
		case rerr != nil:
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			n.dispatch(m.Data)
		}
	}
}

func (n *Netlink) dispatch(data []byte) {
	e, err := parseUevent(data)
	if err != nil || e.handle != n.handle {
		return
	}
	n.mu.Lock()
	n.seq++
	seq := n.seq
	n.mu.Unlock()
	if isReply(e) {
		select {
		case n.replies <- reply{e, seq}:
		default: // nobody asked: drop
		}
		return
	}
	switch e.typ {
	case kevRecvPDU:
		sid, cid, pdu, err := recvPDU(data)
		if err != nil {
			return
		}
		if w := n.waiter(sid, cid); w != nil {
			select {
			case w.pdus <- append([]byte(nil), pdu...):
			default:
			}
		}
		return
	}
	ev, ok := kernelEvent(e)
	if !ok {
		return
	}
	ev.Seq = seq
	if ev.Kind == ConnFailed {
		if w := n.waiter(ev.SID, ev.CID); w != nil {
			select {
			case w.fail <- ev.Err:
			default:
			}
		}
	}
	n.emit(ev)
}

func (n *Netlink) emit(ev Event) {
	select {
	case n.events <- ev:
	case <-n.done:
	}
}

func (n *Netlink) waiter(sid, cid uint32) *waiter {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waiters[connKey{sid, cid}]
}

// request sends one request and waits for its reply; it returns the
// reply, its position in the stream of messages and the kernel's error.
func (n *Netlink) request(ev uevent, data []byte) (uevent, uint64, error) {
	n.reqMu.Lock()
	defer n.reqMu.Unlock()
	select {
	case <-n.replies: // a late reply to a request that timed out
	default:
	}
	n.nlSeq++
	body := append(ev.marshal(), data...)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.LittleEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.LittleEndian.PutUint16(msg[4:], uint16(ev.typ))
	binary.LittleEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.LittleEndian.PutUint32(msg[8:], n.nlSeq)
	msg = append(msg, body...)
	var serr error
	err := n.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return uevent{}, 0, os.NewSyscallError("iscsi netlink send", err)
	}
	t := time.NewTimer(requestTimeout)
	defer t.Stop()
	select {
	case r := <-n.replies:
		return r.ev, r.seq, replyErr(r.ev)
	case <-t.C:
		return uevent{}, 0, fmt.Errorf("iscsi netlink: no reply to request %d in %v", ev.typ, requestTimeout)
	case <-n.done:
		return uevent{}, 0, net.ErrClosed
	}
}

// Stop implements Kernel.
func (n *Netlink) Stop(sid, cid uint32) error {
	_, _, err := n.request(stopConnRequest(n.handle, sid, cid), nil)
	if errors.Is(err, syscall.EINVAL) {
		if _, serr := n.sys.Stat(sessionDir(sid)); errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("session %d: %w", sid, errSessionGone)
		}
	}
	return err
}

// Bind implements Kernel. The kernel finds the socket through our
// descriptor of it and keeps its own reference.
func (n *Netlink) Bind(sid, cid uint32, c *net.TCPConn) error {
	f, err := c.File()
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, err = n.request(bindConnRequest(n.handle, sid, cid, int(f.Fd())), nil)
	return err
}

// SetParam implements Kernel.
func (n *Netlink) SetParam(sid, cid uint32, p Param, value string) error {
	_, _, err := n.request(setParamRequest(n.handle, sid, cid, p, len(value)+1), append([]byte(value), 0))
	return err
}

// Start implements Kernel.
func (n *Netlink) Start(sid, cid uint32) (uint64, error) {
	_, seq, err := n.request(startConnRequest(n.handle, sid, cid), nil)
	return seq, err
}

// SessionFailed implements Kernel.
func (n *Netlink) SessionFailed(sid uint32) (bool, error) {
	b, err := n.sys.ReadFile(sessionDir(sid) + "/state")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "FAILED", nil
}

// sessionDir is a session's directory in /sys.
func sessionDir(sid uint32) string { return fmt.Sprintf("class/iscsi_session/session%d", sid) }

// Transport implements Kernel. Call it after the connection's Stop: the
// login responses of the socket it had were read before Stop's reply, so
// none reaches this transport.
func (n *Netlink) Transport(sid, cid uint32, timeout time.Duration) Transport {
	w := &waiter{pdus: make(chan []byte, 4), fail: make(chan ConnErr, 1)}
	n.mu.Lock()
	n.waiters[connKey{sid, cid}] = w
	n.mu.Unlock()
	return &nlTransport{n: n, sid: sid, cid: cid, w: w, timeout: timeout}
}

type nlTransport struct {
	n        *Netlink
	sid, cid uint32
	w        *waiter
	timeout  time.Duration
}

// Send passes a login PDU to the kernel, again briefly while the kernel
// refuses it with EPERM: it hands us a login response before it retires
// the login task that carried the request ("Login/Text in progress", see
// netlinkTransport.Send).
func (t *nlTransport) Send(p *iscsiwire.PDU) error {
	k := kernelPDU{p}
	var err error
	for range 100 {
		_, _, err = t.n.request(sendPDURequest(t.n.handle, t.sid, t.cid, int(k.HeaderLen()), int(k.DataLen())), k.Serialize())
		if !errors.Is(err, syscall.EPERM) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("iscsi: the kernel kept refusing a login PDU: %w", err)
}

func (t *nlTransport) Recv() (*iscsiwire.PDU, error) {
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	select {
	case b := <-t.w.pdus:
		return iscsiwire.ReadPDU(bytes.NewReader(b), iscsiwire.Digests{}, iscsiwire.MaxDataSegment)
	case e := <-t.w.fail:
		return nil, fmt.Errorf("the connection failed during login: %v", e)
	case <-timer.C:
		return nil, fmt.Errorf("no login response in %v", t.timeout)
	case <-t.n.done:
		return nil, net.ErrClosed
	}
}
