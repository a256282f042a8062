package initiator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u-root/iscsinl"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// kernelPDU adapts a login PDU to iscsinl's netlink SEND_PDU: header then
// unpadded data, no digests (login PDUs never carry them).
type kernelPDU struct{ p *iscsiwire.PDU }

func (k kernelPDU) HeaderLen() uint32 { return iscsiwire.BHSLen }
func (k kernelPDU) DataLen() uint32   { return uint32(len(k.p.Data)) }
func (k kernelPDU) Serialize() []byte {
	wire, _ := k.p.Marshal(iscsiwire.Digests{})
	return wire[:iscsiwire.BHSLen+len(k.p.Data)]
}

// netlinkTransport sends and receives login PDUs through the kernel's
// iscsi_tcp connection, which owns the socket.
type netlinkTransport struct {
	nl       *iscsinl.IscsiIpcConn
	sid, cid uint32
}

// Send passes a login PDU to the kernel. The kernel hands us a login
// response over netlink before it retires the login task that carried
// the request (libiscsi.c: iscsi_recv_pdu, then iscsi_complete_task), so
// a quick next request can be refused with -EPERM ("Login/Text in
// progress"); the PDU was not sent then, and is tried again briefly.
func (t *netlinkTransport) Send(p *iscsiwire.PDU) error {
	var err error
	for range 100 {
		err = t.nl.SendPDU(t.sid, t.cid, kernelPDU{p})
		if err == nil || !strings.HasSuffix(err.Error(), "error code -1") {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("iscsi: the kernel kept refusing a login PDU: %w", err)
}

func (t *netlinkTransport) Recv() (*iscsiwire.PDU, error) {
	raw, err := t.nl.RecvPDU(t.sid, t.cid)
	if err != nil {
		return nil, err
	}
	return iscsiwire.ReadPDU(bytes.NewReader(raw), iscsiwire.Digests{}, iscsiwire.MaxDataSegment)
}

// Attach logs in to the target at s.Portal through the kernel's
// iscsi_tcp initiator (module iscsi_tcp loaded) with s.Login (its ISID is
// set here, from the kernel's session number), sets the session's
// recovery timeout, and returns s with the session, the login's outcome
// and the block device of LUN s.LUN. The kernel keeps the session after
// this process is gone: it survives switch_root; a Watcher given the
// returned Session logs it in again when its connection fails.
func Attach(ctx context.Context, s Session, scanTimeout time.Duration) (Session, error) {
	nl, err := iscsinl.ConnectNetlink()
	if err != nil {
		return s, fmt.Errorf("iscsi netlink (is iscsi_tcp loaded?): %w", err)
	}
	// The socket is in iscsid's multicast group: closed, it does not
	// collect every later event unread (nor pass to init across exec).
	defer nl.Conn.Close()
	sid, hostID, err := nl.CreateSession(128, 32)
	if err != nil {
		return s, fmt.Errorf("iscsi: create session: %w", err)
	}
	cid, err := nl.CreateConnection(sid)
	if err != nil {
		nl.DestroySession(sid)
		return s, fmt.Errorf("iscsi: create connection: %w", err)
	}
	fail := func(err error) (Session, error) {
		nl.StopConnection(sid, cid)
		nl.DestroyConnection(sid, cid)
		nl.DestroySession(sid)
		return s, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Portal)
	if err != nil {
		return fail(fmt.Errorf("iscsi: connect to %s: %w: is the server's iSCSI portal reachable?", s.Portal, err))
	}
	f, err := conn.(*net.TCPConn).File()
	conn.Close() // the kernel holds its own reference through the fd
	if err != nil {
		return fail(err)
	}
	err = nl.BindConnection(sid, cid, int(f.Fd()))
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("iscsi: bind connection: %w", err))
	}
	o := s.Login
	o.ISID = [6]byte{0x80, 0x00, 0x23, 0x42, byte(sid >> 8), byte(sid)}
	o.TSIH = 0
	n, err := Login(&netlinkTransport{nl: nl, sid: sid, cid: cid}, o)
	if err != nil {
		return fail(fmt.Errorf("%s at %s: %w", o.Target, s.Portal, err))
	}
	params := sessionParams(o, n)
	if s.Recovery > 0 {
		params = append(params, recoveryParam(s.Recovery))
	}
	for _, p := range params {
		if err := nl.SetParam(sid, cid, iscsinl.IscsiParam(p.p), p.v); err != nil {
			return fail(fmt.Errorf("iscsi: set %v: %w", p.p, err))
		}
	}
	if err := nl.StartConnection(sid, cid); err != nil {
		return fail(fmt.Errorf("iscsi: start connection: %w", err))
	}
	s.Login, s.SID, s.CID, s.Negotiated = o, sid, cid, n
	dev, err := scan(hostID, sid, s.LUN, scanTimeout)
	if err != nil {
		return s, err
	}
	// Current kernels have no "noop" scheduler: "none" (blk-mq).
	os.WriteFile(filepath.Join("/sys/block", filepath.Base(dev), "queue/scheduler"), []byte("none"), 0)
	s.Device = dev
	// Its identity as first attached: a recovery must find the same.
	df, err := os.Open(dev)
	if err != nil {
		return s, fmt.Errorf("iscsi: %w", err)
	}
	defer df.Close()
	if s.DeviceID, err = DeviceIdentity(df); err != nil {
		return s, fmt.Errorf("iscsi: the identity of %s: %w", dev, err)
	}
	return s, nil
}

// scan asks the SCSI host for the target's LUNs and waits for LUN lun's
// block device.
func scan(hostID, sid uint32, lun int, timeout time.Duration) (string, error) {
	if err := os.WriteFile(fmt.Sprintf("/sys/class/scsi_host/host%d/scan", hostID), []byte("- - -"), 0); err != nil {
		return "", fmt.Errorf("iscsi: scan host%d: %w", hostID, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		// .../session<sid>/target<h>:<c>:<t>/<h>:<c>:<t>:<lun>/block/<dev>
		matches, _ := filepath.Glob(fmt.Sprintf("/sys/class/iscsi_session/session%d/device/target*/*:%d/block/*", sid, lun))
		for _, m := range matches {
			// The node can exist before the disk is live: sd registers
			// it, then reads capacity and attaches; opening it meanwhile
			// fails with ENXIO (seen: "open /run/overboot/upper.dev: no
			// such device or address" 40 ms before "Attached SCSI
			// disk"). Ready means it opens.
			dev := "/dev/" + filepath.Base(m)
			f, err := os.Open(dev)
			if err == nil {
				f.Close()
				return dev, nil
			}
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENXIO) {
				return "", fmt.Errorf("iscsi: LUN %d: %w", lun, err)
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("iscsi: no block device for LUN " + strconv.Itoa(lun) + " after " + timeout.String() + ": is sd_mod loaded, and does the target have that LUN?")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
