package initiator

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
)

// TestUeventLayout checks requests against struct iscsi_uevent's layout
// (include/scsi/iscsi_if.h): 56 bytes, the request union at 16, the
// reply union at 40.
func TestUeventLayout(t *testing.T) {
	le := binary.LittleEndian
	b := stopConnRequest(0xabc, 3, 1).marshal()
	if len(b) != 56 || le.Uint32(b[0:]) != 18 || le.Uint64(b[8:]) != 0xabc ||
		le.Uint32(b[16:]) != 3 || le.Uint32(b[20:]) != 1 || le.Uint32(b[32:]) != 3 /* STOP_CONN_RECOVER after conn_handle */ {
		t.Errorf("stop_conn: % x", b)
	}
	b = bindConnRequest(1, 3, 1, 9).marshal()
	if le.Uint32(b[0:]) != 15 || le.Uint64(b[24:]) != 9 || le.Uint32(b[32:]) != 1 {
		t.Errorf("bind_conn: % x", b)
	}
	b = setParamRequest(1, 3, 1, ParamExpStatSN, 5).marshal()
	if le.Uint32(b[0:]) != 16 || le.Uint32(b[24:]) != 14 || le.Uint32(b[28:]) != 5 {
		t.Errorf("set_param: % x", b)
	}
	b = sendPDURequest(1, 3, 1, 48, 100).marshal()
	if le.Uint32(b[0:]) != 19 || le.Uint32(b[24:]) != 48 || le.Uint32(b[28:]) != 100 {
		t.Errorf("send_pdu: % x", b)
	}
	if b := startConnRequest(1, 3, 1).marshal(); le.Uint32(b[0:]) != 17 || le.Uint32(b[16:]) != 3 {
		t.Errorf("start_conn: % x", b)
	}
}

func kernelMessage(typ uint32, r ...uint32) []byte {
	b := make([]byte, 56)
	binary.LittleEndian.PutUint32(b, typ)
	for i, v := range r {
		binary.LittleEndian.PutUint32(b[40+4*i:], v)
	}
	return b
}

func TestKernelEvents(t *testing.T) {
	e, _ := parseUevent(kernelMessage(kevConnError, 4, 0, 1020))
	if ev, ok := kernelEvent(e); !ok || ev != (Event{Kind: ConnFailed, SID: 4, CID: 0, Err: 1020}) || isReply(e) {
		t.Errorf("conn error: %+v %v", ev, ok)
	}
	if ev := (Event{Err: 1020}); ev.Err.String() != "the target closed the connection (1020)" {
		t.Errorf("error name %q", ev.Err)
	}
	e, _ = parseUevent(kernelMessage(kevDestroySession, 7 /* host */, 4))
	if ev, ok := kernelEvent(e); !ok || ev.Kind != SessionGone || ev.SID != 4 {
		t.Errorf("destroy session: %+v %v", ev, ok)
	}
	e, _ = parseUevent(kernelMessage(kevConnLoginState, 4, 0, 3))
	if _, ok := kernelEvent(e); ok {
		t.Errorf("a login state event starts something")
	}
	msg := append(kernelMessage(kevRecvPDU, 4, 1), 0x23, 0x80)
	if sid, cid, pdu, err := recvPDU(msg); err != nil || sid != 4 || cid != 1 || len(pdu) != 2 || pdu[0] != 0x23 {
		t.Errorf("recv pdu: %d %d % x %v", sid, cid, pdu, err)
	}
	if _, err := parseUevent(make([]byte, 20)); err == nil {
		t.Errorf("a short message parsed")
	}
}

func TestReplyErr(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"ok", kernelMessage(evStart, 0), nil},
		{"retcode", kernelMessage(evBindConn, uint32(0xffffffff-syscall.ENOTCONN+1)), syscall.ENOTCONN},
		{"if error", func() []byte {
			b := kernelMessage(kevIfError)
			binary.LittleEndian.PutUint32(b[4:], uint32(0xffffffff-syscall.EINVAL+1))
			return b
		}(), syscall.EINVAL},
	} {
		e, err := parseUevent(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if !isReply(e) {
			t.Errorf("%s: not a reply", tc.name)
		}
		if got := replyErr(e); !errors.Is(got, tc.want) && got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzKernelMessage: whatever the socket delivers, reading it never
// panics, and a RECV_PDU's PDU is what follows the uevent.
func FuzzKernelMessage(f *testing.F) {
	f.Add(kernelMessage(kevConnError, 1, 0, 1020))
	f.Add(kernelMessage(kevDestroySession, 0, 1))
	f.Add(append(kernelMessage(kevRecvPDU, 1, 0), make([]byte, 48)...))
	f.Add(kernelMessage(kevIfError))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseUevent(b)
		if err != nil {
			return
		}
		_ = replyErr(e)
		_, _ = kernelEvent(e)
		if _, _, pdu, err := recvPDU(b); err == nil && len(pdu) != len(b)-ueventSize {
			t.Errorf("a %d-byte message gave a %d-byte PDU", len(b), len(pdu))
		}
	})
}
