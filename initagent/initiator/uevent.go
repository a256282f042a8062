package initiator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

// The kernel's iSCSI netlink interface (NETLINK_ISCSI), as
// include/scsi/iscsi_if.h defines it: every message, request, reply or
// event, is one struct iscsi_uevent, sometimes followed by data (a
// parameter's value, a PDU).
const (
	netlinkISCSI = 8 // NETLINK_ISCSI, include/uapi/linux/netlink.h
	// grpISCSID is the multicast group iscsid listens on
	// (ISCSI_NL_GRP_ISCSID): connection errors, login responses
	// (RECV_PDU) and session events go to its members.
	grpISCSID = 1

	// Requests (enum iscsi_uevent_e, UEVENT_BASE 10).
	evStopConn = 18 // ISCSI_UEVENT_STOP_CONN
	evBindConn = 15 // ISCSI_UEVENT_BIND_CONN
	evSetParam = 16 // ISCSI_UEVENT_SET_PARAM
	evStart    = 17 // ISCSI_UEVENT_START_CONN
	evSendPDU  = 19 // ISCSI_UEVENT_SEND_PDU

	// Events from the kernel (KEVENT_BASE 100).
	kevRecvPDU        = 101 // ISCSI_KEVENT_RECV_PDU: a login response
	kevConnError      = 102 // ISCSI_KEVENT_CONN_ERROR
	kevIfError        = 103 // ISCSI_KEVENT_IF_ERROR: a request failed
	kevDestroySession = 104 // ISCSI_KEVENT_DESTROY_SESSION
	kevConnLoginState = 109 // ISCSI_KEVENT_CONN_LOGIN_STATE (offload drivers)

	// stopConnRecover is STOP_CONN_RECOVER: stop the connection but keep
	// the session, blocked, its I/O queued for the recovery timeout.
	stopConnRecover = 3

	// ueventSize is sizeof(struct iscsi_uevent): type, iferror,
	// transport_handle, a 24-byte union of requests and a 16-byte union
	// of replies and events.
	ueventSize = 56
	uOff       = 16 // offset of the request union
	rOff       = 40 // offset of the reply union
)

// Param is an iSCSI parameter of the kernel's initiator (enum iscsi_param).
type Param uint32

// The parameters the agent sets.
const (
	ParamMaxRecvDLength   Param = 0
	ParamMaxXmitDLength   Param = 1
	ParamHdrDgstEn        Param = 2
	ParamDataDgstEn       Param = 3
	ParamInitialR2TEn     Param = 4
	ParamImmDataEn        Param = 6
	ParamFirstBurst       Param = 7
	ParamMaxBurst         Param = 8
	ParamPDUInorderEn     Param = 9
	ParamDataSeqInorderEn Param = 10
	ParamExpStatSN        Param = 14
	ParamTargetName       Param = 15
	ParamSessRecoveryTmo  Param = 19
	ParamPingTmo          Param = 30
	ParamRecvTmo          Param = 31
	ParamInitiatorName    Param = 34
)

var paramNames = map[Param]string{
	ParamMaxRecvDLength: "MaxRecvDLength", ParamMaxXmitDLength: "MaxXmitDLength",
	ParamHdrDgstEn: "HeaderDigest", ParamDataDgstEn: "DataDigest",
	ParamInitialR2TEn: "InitialR2T", ParamImmDataEn: "ImmediateData",
	ParamFirstBurst: "FirstBurstLength", ParamMaxBurst: "MaxBurstLength",
	ParamPDUInorderEn: "DataPDUInOrder", ParamDataSeqInorderEn: "DataSequenceInOrder",
	ParamExpStatSN: "ExpStatSN", ParamTargetName: "TargetName",
	ParamSessRecoveryTmo: "recovery timeout", ParamPingTmo: "ping timeout",
	ParamRecvTmo: "receive timeout", ParamInitiatorName: "InitiatorName",
}

func (p Param) String() string {
	if s, ok := paramNames[p]; ok {
		return s
	}
	return "param " + strconv.Itoa(int(p))
}

// ConnErr is the reason the kernel gives for a failed connection (enum
// iscsi_err).
type ConnErr uint32

var connErrNames = map[ConnErr]string{
	1001: "bad DataSN", 1002: "bad data offset", 1003: "bad MaxCmdSN", 1004: "bad ExpCmdSN",
	1005: "bad opcode", 1006: "bad data length", 1007: "bad AHS length", 1008: "protocol error",
	1009: "bad LUN", 1010: "bad ITT", 1011: "connection failed", 1012: "bad R2TSN",
	1013: "session failed", 1014: "header digest error", 1015: "data digest error",
	1016: "parameter not found", 1017: "no SCSI command", 1018: "invalid host",
	1019: "send failed", 1020: "the target closed the connection",
	1021: "SCSI error handling reset the session", 1022: "no answer to a ping (NOP timed out)",
}

func (e ConnErr) String() string {
	if s, ok := connErrNames[e]; ok {
		return fmt.Sprintf("%s (%d)", s, uint32(e))
	}
	return "error " + strconv.Itoa(int(e))
}

// uevent is struct iscsi_uevent.
type uevent struct {
	typ     uint32
	ifError int32
	handle  uint64
	u       [24]byte
	r       [16]byte
}

func (e *uevent) putU32(off int, v uint32) { binary.LittleEndian.PutUint32(e.u[off:], v) }
func (e *uevent) putU64(off int, v uint64) { binary.LittleEndian.PutUint64(e.u[off:], v) }
func (e uevent) rU32(off int) uint32       { return binary.LittleEndian.Uint32(e.r[off:]) }

// retcode is the reply union's int retcode: 0 or a negative errno.
func (e uevent) retcode() int32 { return int32(e.rU32(0)) }

func (e uevent) marshal() []byte {
	b := make([]byte, ueventSize)
	binary.LittleEndian.PutUint32(b[0:], e.typ)
	binary.LittleEndian.PutUint32(b[4:], uint32(e.ifError))
	binary.LittleEndian.PutUint64(b[8:], e.handle)
	copy(b[uOff:], e.u[:])
	copy(b[rOff:], e.r[:])
	return b
}

func parseUevent(b []byte) (uevent, error) {
	if len(b) < ueventSize {
		return uevent{}, fmt.Errorf("iscsi netlink: %d-byte message, want at least %d", len(b), ueventSize)
	}
	var e uevent
	e.typ = binary.LittleEndian.Uint32(b[0:])
	e.ifError = int32(binary.LittleEndian.Uint32(b[4:]))
	e.handle = binary.LittleEndian.Uint64(b[8:])
	copy(e.u[:], b[uOff:rOff])
	copy(e.r[:], b[rOff:ueventSize])
	return e, nil
}

// The requests recovery sends; sid and cid first in each (struct
// msg_stop_conn, msg_bind_conn, ...).

func stopConnRequest(h uint64, sid, cid uint32) uevent {
	e := uevent{typ: evStopConn, handle: h}
	e.putU32(0, sid)
	e.putU32(4, cid)
	// conn_handle (8..15) is unused by the kernel.
	e.putU32(16, stopConnRecover)
	return e
}

func bindConnRequest(h uint64, sid, cid uint32, fd int) uevent {
	e := uevent{typ: evBindConn, handle: h}
	e.putU32(0, sid)
	e.putU32(4, cid)
	e.putU64(8, uint64(fd)) // transport_eph: our descriptor of the socket
	e.putU32(16, 1)         // is_leading
	return e
}

func setParamRequest(h uint64, sid, cid uint32, p Param, valueLen int) uevent {
	e := uevent{typ: evSetParam, handle: h}
	e.putU32(0, sid)
	e.putU32(4, cid)
	e.putU32(8, uint32(p))
	e.putU32(12, uint32(valueLen))
	return e
}

func startConnRequest(h uint64, sid, cid uint32) uevent {
	e := uevent{typ: evStart, handle: h}
	e.putU32(0, sid)
	e.putU32(4, cid)
	return e
}

func sendPDURequest(h uint64, sid, cid uint32, hdrLen, dataLen int) uevent {
	e := uevent{typ: evSendPDU, handle: h}
	e.putU32(0, sid)
	e.putU32(4, cid)
	e.putU32(8, uint32(hdrLen))
	e.putU32(12, uint32(dataLen))
	return e
}

// replyErr is the error a reply carries: the kernel's failure to handle
// the request (iferror, as an IF_ERROR event) or the operation's own
// (retcode), both negative errnos.
func replyErr(e uevent) error {
	if e.typ == kevIfError || e.ifError != 0 {
		return syscall.Errno(-e.ifError)
	}
	if rc := e.retcode(); rc < 0 {
		return syscall.Errno(-rc)
	}
	return nil
}

// isReply tells a reply to our request (the request's type echoed, or
// IF_ERROR) from an event the kernel multicasts (KEVENT types).
func isReply(e uevent) bool { return e.typ < 100 || e.typ == kevIfError }

// kernelEvent reads what recovery needs from a kernel event: the session
// and connection it is about, and for a connection error its reason.
// ok is false for events recovery does not follow.
func kernelEvent(e uevent) (ev Event, ok bool) {
	switch e.typ {
	case kevConnError: // struct msg_conn_error {sid, cid, error}
		return Event{Kind: ConnFailed, SID: e.rU32(0), CID: e.rU32(4), Err: ConnErr(e.rU32(8))}, true
	case kevDestroySession: // struct msg_session_destroyed {host_no, sid}
		return Event{Kind: SessionGone, SID: e.rU32(4)}, true
	}
	return Event{}, false
}

// recvPDU reads a RECV_PDU event: the connection (struct msg_recv_req
// {sid, cid, recv_handle}) and the PDU after the uevent.
func recvPDU(data []byte) (sid, cid uint32, pdu []byte, err error) {
	e, err := parseUevent(data)
	if err != nil {
		return 0, 0, nil, err
	}
	if e.typ != kevRecvPDU {
		return 0, 0, nil, errors.New("iscsi netlink: not a RECV_PDU event")
	}
	return e.rU32(0), e.rU32(4), data[ueventSize:], nil
}
