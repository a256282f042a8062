package iscsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// writeTask is a WRITE waiting for its Data-Out.
type writeTask struct {
	cmd       *PDU
	lun       *lun
	buf       []byte // what is written: min(expected length, the CDB's length)
	got       int    // bytes received, up to the expected length
	r2tSN     uint32
	ttt       uint32
	solicited int    // end offset of the outstanding R2T
	dataSN    uint32 // next DataSN of the current sequence (RFC 7143 11.7.5)
	unsolSN   uint32 // next DataSN of the unsolicited sequence
}

// fullFeature serves commands until logout or error.
func (c *conn) fullFeature(ctx context.Context) error {
	writes := map[uint32]*writeTask{} // by ITT; only this goroutine touches it
	var nextTTT uint32 = 1
	sem := make(chan struct{}, 32) // concurrent reads
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		p, err := ReadPDU(c.r, c.p.digests, ourMaxRecvData)
		if err != nil {
			return err
		}
		if !p.Immediate() && p.Opcode() != OpDataOut && p.Opcode() != OpSNACK {
			c.smu.Lock()
			// RFC 7143 4.2.2.1: a command outside the window
			// [ExpCmdSN, MaxCmdSN] is silently dropped.
			ahead := p.CmdSN() - c.expCmdSN
			inWindow := ahead < cmdWindow
			if inWindow {
				c.expCmdSN = p.CmdSN() + 1
			}
			c.smu.Unlock()
			if !inWindow {
				continue
			}
		}
		switch p.Opcode() {
		case OpNOPOut:
			if p.ITT() == 0xffffffff {
				continue // a reply to our NOP-In, or a ping wanting no answer
			}
			r := &PDU{Data: p.Data}
			r.BHS[0], r.BHS[1] = OpNOPIn, 0x80
			r.SetLUN(p.LUN())
			r.SetITT(p.ITT())
			r.PutUint32At(20, 0xffffffff)
			if err := c.send(r, true); err != nil {
				return err
			}
		case OpText:
			if err := c.text(p); err != nil {
				return err
			}
		case OpLogout:
			r := &PDU{}
			r.BHS[0], r.BHS[1] = OpLogoutResp, 0x80
			r.SetITT(p.ITT())
			if err := c.send(r, true); err != nil {
				return err
			}
			return nil
		case OpTaskMgmt:
			r := &PDU{}
			r.BHS[0], r.BHS[1] = OpTaskMgmtResp, 0x80
			r.SetITT(p.ITT())
			switch fn := p.BHS[1] & 0x7f; fn {
			case 1, 2, 4, 5, 6, 7: // abort task/task set, clear task set, LU reset, target warm/cold reset
				if fn == 1 {
					if _, ok := writes[p.Uint32At(20)]; ok {
						delete(writes, p.Uint32At(20))
					}
				}
				r.BHS[2] = 0 // function complete
			default:
				r.BHS[2] = 5 // not supported
			}
			if err := c.send(r, true); err != nil {
				return err
			}
		case OpSCSICommand:
			if c.discovery {
				return fmt.Errorf("SCSI command in a discovery session")
			}
			cdb := p.BHS[32:48]
			idx := lunIndex(p.LUN())
			var l *lun
			if idx < len(c.tgt.luns) {
				l = c.tgt.luns[idx]
			}
			switch {
			case cdb[0] == 0xa0: // REPORT LUNS
				c.respond(p, good(c.reportLUNs()))
			case l == nil:
				c.respond(p, errBadLUN)
			case needsDataOut(cdb):
				w, res := c.startWrite(p, l)
				if w == nil {
					c.respond(p, res)
					continue
				}
				if w.got >= len(w.buf) {
					c.finishWrite(w)
					continue
				}
				writes[p.ITT()] = w
				if !c.p.initialR2T && w.got < min(c.p.firstBurst, len(w.buf)) {
					continue // unsolicited Data-Out follows
				}
				w.ttt = nextTTT
				nextTTT++
				if err := c.r2t(w); err != nil {
					return err
				}
			default:
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c.respond(p, l.exec(cdb, nil, 0))
				}()
			}
		case OpDataOut:
			w := writes[p.ITT()]
			if w == nil {
				continue // for an aborted task
			}
			// ErrorRecoveryLevel 0: a gap or a wrong DataSN is a
			// protocol error, which ends the connection.
			off := int(p.Uint32At(40))
			if off != w.got || off+len(p.Data) > int(w.cmd.Uint32At(20)) {
				return fmt.Errorf("Data-Out at offset %d, expected %d", off, w.got)
			}
			sn := &w.dataSN
			if p.Uint32At(20) == 0xffffffff {
				sn = &w.unsolSN
			}
			if got := p.Uint32At(36); got != *sn {
				return fmt.Errorf("Data-Out DataSN %d, expected %d", got, *sn)
			}
			*sn++
			if off < len(w.buf) {
				copy(w.buf[off:], p.Data)
			}
			w.got += len(p.Data)
			if w.got >= len(w.buf) {
				delete(writes, p.ITT())
				c.finishWrite(w)
				continue
			}
			if p.Final() && (w.ttt == 0 && w.got >= min(c.p.firstBurst, len(w.buf)) || w.ttt != 0 && w.got >= w.solicited) {
				if w.ttt == 0 {
					w.ttt = nextTTT
					nextTTT++
				}
				if err := c.r2t(w); err != nil {
					return err
				}
			}
		case OpSNACK:
			// ErrorRecoveryLevel is 0: nothing to resend.
		default:
			if err := c.reject(p, 0x04); err != nil { // protocol error
				return err
			}
		}
	}
}

func lunIndex(l uint64) int {
	b := l >> 48
	if b>>14 == 0 { // peripheral device addressing
		return int(b & 0xff)
	}
	return int(b & 0x3fff) // flat space
}

func (c *conn) reportLUNs() []byte {
	n := len(c.tgt.luns)
	b := make([]byte, 8+8*n)
	binary.BigEndian.PutUint32(b, uint32(8*n))
	for i := range n {
		b[8+8*i+1] = byte(i)
	}
	return b
}

// startWrite sets up a WRITE's buffer with its immediate data.
func (c *conn) startWrite(p *PDU, l *lun) (*writeTask, result) {
	cdb := p.BHS[32:48]
	_, n, _ := rw(cdb)
	if isWrite(cdb[0]) && l.b.ReadOnly() {
		return nil, errWriteProtect
	}
	if protectField(cdb) {
		return nil, errInvalidField
	}
	size := int(n) * BlockSize
	if size > maxWriteTransfer {
		return nil, errInvalidField
	}
	// Only what both the CDB and the iSCSI expected length allow is
	// transferred and written; respond reports the difference as a
	// residual (RFC 7143 11.4.5.1).
	exp := int(p.Uint32At(20))
	w := &writeTask{cmd: p, lun: l, buf: make([]byte, min(size, exp))}
	if len(p.Data) > 0 {
		if !c.p.immediateData || len(p.Data) > exp {
			return nil, errInvalidField
		}
		copy(w.buf, p.Data)
		w.got = len(p.Data)
	}
	return w, result{}
}

func (c *conn) r2t(w *writeTask) error {
	want := min(len(w.buf)-w.got, c.p.maxBurst)
	w.dataSN = 0 // each R2T starts a sequence
	r := &PDU{}
	r.BHS[0], r.BHS[1] = OpR2T, 0x80
	r.SetLUN(w.cmd.LUN())
	r.SetITT(w.cmd.ITT())
	r.PutUint32At(20, w.ttt)
	r.PutUint32At(36, w.r2tSN)
	r.PutUint32At(40, uint32(w.got))
	r.PutUint32At(44, uint32(want))
	w.r2tSN++
	w.solicited = w.got + want
	return c.send(r, false)
}

func (c *conn) finishWrite(w *writeTask) {
	c.respond(w.cmd, w.lun.exec(w.cmd.BHS[32:48], w.buf, 0))
}

// respond sends a command's Data-In and status. Reads with good status
// carry the status in the last Data-In (phase collapse).
func (c *conn) respond(cmd *PDU, res result) {
	cdb := cmd.BHS[32:48]
	expected := int(cmd.Uint32At(20))
	total := len(res.data)
	if res.read != nil {
		total = res.read.n
	}
	if lim := allocationLength(cdb); lim > 0 && total > int(lim) {
		total = int(lim)
	}
	residual, under, over := 0, false, false
	send := total
	if total > expected {
		residual, over, send = total-expected, true, expected
	} else if total < expected && cmd.BHS[1]&0x40 != 0 {
		residual, under = expected-total, true
	}
	// A command with Data-Out: the residual compares the iSCSI expected
	// length with the CDB's, whatever the status.
	writeResidual := false
	if cmd.BHS[1]&0x20 != 0 && needsDataOut(cdb) {
		_, n, _ := rw(cdb)
		want := int(n) * BlockSize
		writeResidual = true
		switch {
		case expected > want:
			residual, under = expected-want, true
		case expected < want:
			residual, over = want-expected, true
		}
	}
	if cmd.BHS[1]&0x40 != 0 && send > 0 && res.status == statusGood {
		var done bool
		if done, res = c.dataIn(cmd, res, send, residual, under, over); done {
			return
		}
	}
	r := &PDU{}
	if res.sense != nil {
		r.Data = append(binary.BigEndian.AppendUint16(nil, uint16(len(res.sense))), res.sense...)
	}
	r.BHS[0] = OpSCSIResponse
	flags := byte(0x80)
	if under && (res.status == statusGood || writeResidual) {
		flags |= 0x02
	}
	if over && (res.status == statusGood || writeResidual) {
		flags |= 0x04
	}
	r.BHS[1] = flags
	r.BHS[3] = res.status
	r.SetITT(cmd.ITT())
	if under || over {
		r.PutUint32At(44, uint32(residual))
	}
	if err := c.send(r, true); err != nil {
		c.close()
	}
}

// maxDataInPiece bounds a Data-In PDU whatever the initiator's
// MaxRecvDataSegmentLength: a READ is read and sent a piece at a time
// through one buffer of at most this, never more than the initiator's
// expected length.
const maxDataInPiece = 256 << 10

// dataInPool holds the buffers READs send their Data-In from.
var dataInPool = sync.Pool{New: func() any { b := make([]byte, maxDataInPiece); return &b }}

// dataIn sends the first n bytes of res's Data-In, the status in the last
// PDU. Each PDU holds at most the initiator's MaxRecvDataSegmentLength
// and maxDataInPiece, each sequence (F) at most MaxBurstLength. A READ is
// read a PDU at a time into one buffer. It reports whether the command is
// answered; if not, a read failed and the result to answer with is
// returned (the Data-In sent so far stands).
func (c *conn) dataIn(cmd *PDU, res result, n, residual int, under, over bool) (bool, result) {
	piece := min(c.p.maxSendData, maxDataInPiece)
	var buf []byte
	if res.read != nil {
		if size := min(piece, n); size == maxDataInPiece {
			bp := dataInPool.Get().(*[]byte)
			defer dataInPool.Put(bp)
			buf = *bp
		} else {
			buf = make([]byte, size)
		}
	}
	var dataSN uint32
	for off := 0; off < n; {
		k := min(n-off, piece, c.p.maxBurst-off%c.p.maxBurst)
		var data []byte
		if res.read != nil {
			data = buf[:k]
			if err := res.read.readAt(data, off); err != nil {
				return false, errReadFailed
			}
		} else {
			data = res.data[off : off+k]
		}
		last := off+k == n
		r := &PDU{Data: data}
		r.BHS[0] = OpDataIn
		flags := byte(0)
		if last || (off+k)%c.p.maxBurst == 0 {
			flags |= 0x80
		}
		if last {
			flags |= 0x01 // S: status follows in this PDU
			if under {
				flags |= 0x02
			}
			if over {
				flags |= 0x04
			}
			r.PutUint32At(44, uint32(residual))
		}
		r.BHS[1] = flags
		r.SetITT(cmd.ITT())
		r.PutUint32At(20, 0xffffffff)
		r.PutUint32At(36, dataSN)
		r.PutUint32At(40, uint32(off))
		dataSN++
		if err := c.send(r, last); err != nil {
			c.close()
			return true, res
		}
		off += k
	}
	return true, res
}

// text answers SendTargets (in discovery and normal sessions).
func (c *conn) text(p *PDU) error {
	kvs, err := ParseText(p.Data)
	if err != nil {
		return c.reject(p, 0x04)
	}
	var out []KV
	if v, ok := iscsiwire.Lookup(kvs, "SendTargets"); ok {
		var ts []*node
		if c.discovery {
			c.tmu.Lock()
			user := c.discoveryUser
			c.tmu.Unlock()
			ts = c.srv.visible(c.initiator, user)
		} else {
			ts = []*node{c.tgt}
		}
		addr := c.nc.LocalAddr().String()
		for _, t := range ts {
			if v == "All" || v == t.cfg.IQN || (v == "" && !c.discovery) {
				out = append(out, KV{Key: "TargetName", Value: t.cfg.IQN}, KV{Key: "TargetAddress", Value: addr + ",1"})
			}
		}
	}
	r := &PDU{Data: marshalTextList(out)}
	r.BHS[0], r.BHS[1] = OpTextResp, 0x80
	r.SetITT(p.ITT())
	r.PutUint32At(20, 0xffffffff)
	return c.send(r, true)
}

// marshalTextList encodes pairs that may repeat keys (SendTargets).
func marshalTextList(kvs []KV) []byte {
	var b strings.Builder
	for _, kv := range kvs {
		b.WriteString(kv.Key + "=" + kv.Value + "\x00")
	}
	return []byte(b.String())
}

func (c *conn) reject(p *PDU, reason byte) error {
	r := &PDU{Data: append([]byte(nil), p.BHS[:]...)}
	r.BHS[0], r.BHS[1], r.BHS[2] = OpReject, 0x80, reason
	r.SetITT(0xffffffff)
	return c.send(r, true)
}
