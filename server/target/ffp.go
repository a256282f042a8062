package target

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// What one session's commands may hold, besides the login's limits.
//
// The command window (cmdWindow) bounds the commands a session has
// running: ExpCmdSN moves as commands arrive, and MaxCmdSN is ExpCmdSN
// plus the window's free slots, a slot freed when its command's answer
// goes out (RFC 7143 3.2.2.1). A command outside the window is dropped.
// Immediate commands take no slot; immediateAllowance of them may run at
// once, more are answered TASK SET FULL.
//
// Writes hold what they receive, allocated as it arrives: immediate and
// unsolicited data (at most FirstBurstLength each, so at most the window's
// worth) from the start, then, once admitted, what their R2Ts ask for. A
// write is admitted (its R2Ts go out) when its solicited data fits in
// connSolicitedBudget next to the connection's other admitted writes,
// first come first served; and every byte of write data counts against
// its Target's targetWriteBudget.
//
// READs are refused over maxTransferBlocks, and their Data-In is read and
// sent a piece (at most maxDataInPiece) at a time through one buffer,
// never more than the initiator's expected length; readConcurrency of
// them run at once.
const (
	immediateAllowance  = 4
	connSolicitedBudget = maxWriteTransfer
	maxDataInPiece      = 256 << 10
	readConcurrency     = 32
)

// dataInPool holds the buffers READs send their Data-In from.
var dataInPool = sync.Pool{New: func() any { b := make([]byte, maxDataInPiece); return &b }}

// session is a connection's Full Feature Phase.
type session struct {
	c   *conn
	log *slog.Logger
	tb  *writeBudget // the Target's

	// Only the reader goroutine (fullFeature) touches these.
	writes    map[uint32]*writeTask // by ITT: the writes waiting for Data-Out
	waiting   []*writeTask          // of those, the ones not admitted yet, in order
	admitted  int                   // writes admitted and not done
	solicited int                   // bytes of solicited data the admitted writes hold room for
	nextTTT   uint32

	// Guarded by c.smu, as c.expCmdSN is.
	running    int // commands that took a window slot, not answered yet
	immRunning int // immediate SCSI commands not answered yet

	wmu    sync.Mutex // guards warned
	warned map[string]bool
}

// writeTask is a WRITE (or a VERIFY that compares) waiting for its
// Data-Out.
type writeTask struct {
	cmd  *PDU
	lun  *lun
	want int        // bytes written: min(expected length, the CDB's length)
	data *writeData // what arrived of them
	got  int        // bytes received (the next Data-Out's offset), up to the expected length
	// unsolEnd is where unsolicited data (immediate, then Data-Out
	// without an R2T) ends: min(FirstBurstLength, expected length) while
	// it may come, where it stopped once it ended.
	unsolEnd  int
	reserved  int  // bytes of the Target's budget held: min(unsolEnd, want), want once admitted
	admitted  bool // its R2Ts go out
	solRes    int  // of reserved, the bytes admission added (counted in session.solicited)
	r2tSN     uint32
	ttt       uint32
	solicited int    // end offset of the last R2T: one is outstanding while got < solicited
	dataSN    uint32 // next DataSN of the current sequence (RFC 7143 11.7.5)
	unsolSN   uint32 // next DataSN of the unsolicited sequence
}

// fullFeature serves commands until logout or error.
func (c *conn) fullFeature(ctx context.Context) error {
	s := &session{
		c:       c,
		log:     c.srv.log.With("remote", c.nc.RemoteAddr().String(), "initiator", c.initiator, "target", c.targetName()),
		tb:      acquireWriteBudget(c.srv),
		writes:  map[uint32]*writeTask{},
		nextTTT: 1,
		warned:  map[string]bool{},
	}
	defer s.tb.release()
	defer s.dropAll()
	sem := make(chan struct{}, readConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		p, err := ReadPDU(c.r, c.p.digests, ourMaxRecvData)
		if err != nil {
			return err
		}
		if op := p.Opcode(); !p.Immediate() && op != OpDataOut && op != OpSNACK && !s.accept(p) {
			continue
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
			if err := s.send(r, true, nil); err != nil {
				return err
			}
		case OpText:
			if err := s.text(p); err != nil {
				return err
			}
		case OpLogout:
			r := &PDU{}
			r.BHS[0], r.BHS[1] = OpLogoutResp, 0x80
			r.SetITT(p.ITT())
			if err := s.send(r, true, nil); err != nil {
				return err
			}
			return nil
		case OpTaskMgmt:
			if err := s.taskMgmt(p); err != nil {
				return err
			}
		case OpSCSICommand:
			if c.discovery {
				return fmt.Errorf("SCSI command in a discovery session")
			}
			if err := s.command(p, sem, &wg); err != nil {
				return err
			}
		case OpDataOut:
			if err := s.dataOut(p); err != nil {
				return err
			}
		case OpSNACK:
			// ErrorRecoveryLevel is 0: nothing to resend.
		default:
			if err := s.reject(p, 0x04); err != nil { // protocol error
				return err
			}
		}
	}
}

// warn logs a problem of kind once per connection: a misbehaving
// initiator does not flood the log.
func (s *session) warn(kind, msg string, args ...any) {
	s.wmu.Lock()
	seen := s.warned[kind]
	s.warned[kind] = true
	s.wmu.Unlock()
	if !seen {
		s.log.Warn(msg, append(args, "note", "logged once per connection")...)
	}
}

// accept applies the command window to a PDU that is not immediate (RFC
// 7143 4.2.2.1): outside [ExpCmdSN, MaxCmdSN] it is dropped; a SCSI
// command inside takes a slot until its answer goes out.
func (s *session) accept(p *PDU) bool {
	c := s.c
	c.smu.Lock()
	exp, free := c.expCmdSN, uint32(cmdWindow-s.running)
	ok := p.CmdSN()-exp < free
	if ok {
		c.expCmdSN = p.CmdSN() + 1
		if p.Opcode() == OpSCSICommand {
			s.running++
		}
	}
	c.smu.Unlock()
	if !ok {
		s.warn("window", "iscsi: a command outside the command window dropped", "opcode", fmt.Sprintf("0x%02x", p.Opcode()), "cmdsn", p.CmdSN(), "expcmdsn", exp, "maxcmdsn", exp+free-1)
	}
	return ok
}

// ended counts cmd's answer: its window slot (or immediate allowance) is
// free. c.smu is held.
func (s *session) ended(cmd *PDU) {
	if cmd.Immediate() {
		s.immRunning--
	} else {
		s.running--
	}
}

// send sends p with the session's numbers: StatSN (taken when
// withStatSN), ExpCmdSN and MaxCmdSN. ends, when not nil, is the command
// p answers: its slot is free from this PDU on.
func (s *session) send(p *PDU, withStatSN bool, ends *PDU) error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p.PutUint32At(24, c.statSN)
	if withStatSN {
		c.statSN++
	}
	c.smu.Lock()
	if ends != nil {
		s.ended(ends)
	}
	p.PutUint32At(28, c.expCmdSN)
	p.PutUint32At(32, c.expCmdSN+uint32(cmdWindow-s.running)-1) // ExpCmdSN-1 when full
	c.smu.Unlock()
	bufs, err := p.Buffers(c.p.digests)
	if err != nil {
		return err
	}
	nb := net.Buffers(bufs)
	_, err = nb.WriteTo(c.nc)
	return err
}

func (s *session) command(p *PDU, sem chan struct{}, wg *sync.WaitGroup) error {
	c := s.c
	if p.Immediate() {
		c.smu.Lock()
		s.immRunning++
		over := s.immRunning > immediateAllowance
		c.smu.Unlock()
		if over {
			s.warn("immediate", "iscsi: immediate commands over the allowance answered TASK SET FULL", "allowance", immediateAllowance)
			s.respond(p, errTaskSetFull)
			return nil
		}
	}
	cdb := p.BHS[32:48]
	idx := lunIndex(p.LUN())
	var l *lun
	if idx < len(c.tgt.luns) {
		l = c.tgt.luns[idx]
	}
	switch {
	case cdb[0] == 0xa0: // REPORT LUNS
		s.respond(p, good(c.reportLUNs()))
	case l == nil:
		s.respond(p, errBadLUN)
	case needsDataOut(cdb):
		return s.startWrite(p, l)
	default:
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.respond(p, l.exec(cdb, nil))
		}()
	}
	return nil
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

// startWrite takes a WRITE with its immediate data: it is done at once,
// waits for unsolicited Data-Out, or asks for its data with R2Ts.
func (s *session) startWrite(p *PDU, l *lun) error {
	c := s.c
	cdb := p.BHS[32:48]
	_, n, _ := rw(cdb)
	switch {
	case isWrite(cdb[0]) && l.b.ReadOnly():
		s.respond(p, errWriteProtect)
		return nil
	case protectField(cdb), n > maxTransferBlocks:
		s.respond(p, errInvalidField)
		return nil
	}
	// Only what both the CDB and the iSCSI expected length allow is
	// transferred and written; respond reports the difference as a
	// residual (RFC 7143 11.4.5.1).
	exp := int(p.Uint32At(20))
	if len(p.Data) > 0 && (!c.p.immediateData || len(p.Data) > exp) {
		s.respond(p, errInvalidField)
		return nil
	}
	if old := s.writes[p.ITT()]; old != nil {
		// The initiator reused the tag of a write still waiting for
		// data: that one is over for it.
		s.drop(old)
	}
	want := min(int(n)*BlockSize, exp)
	w := &writeTask{cmd: p, lun: l, want: want, data: newWriteData(want), got: len(p.Data), unsolEnd: len(p.Data)}
	if !c.p.initialR2T && !p.Final() {
		// F clear: unsolicited Data-Out follows (RFC 7143 11.3.1).
		w.unsolEnd = max(w.unsolEnd, min(c.p.firstBurst, exp))
	}
	w.data.add(p.Data)
	if w.got >= want {
		return s.finish(w) // done at once: it holds nothing
	}
	w.reserved = min(w.unsolEnd, want)
	if !s.tb.reserve(w.reserved) {
		s.warn("budget", "iscsi: the target's write budget is full: writes answered TASK SET FULL", "budget", targetWriteBudget)
		s.respond(p, errTaskSetFull)
		return nil
	}
	s.writes[p.ITT()] = w
	if w.got < w.unsolEnd {
		return nil // unsolicited Data-Out follows
	}
	return s.solicit(w)
}

// dataOut takes one Data-Out PDU of a write.
func (s *session) dataOut(p *PDU) error {
	w := s.writes[p.ITT()]
	if w == nil {
		return nil // for an aborted task, or one answered early
	}
	// ErrorRecoveryLevel 0: a gap, data beyond what was asked for or a
	// wrong DataSN is a protocol error, which ends the connection.
	off := int(p.Uint32At(40))
	ttt := p.Uint32At(20)
	unsolicited := ttt == 0xffffffff
	end := w.unsolEnd
	if !unsolicited {
		if ttt != w.ttt || w.got >= w.solicited {
			return fmt.Errorf("Data-Out with TTT 0x%x: no such R2T outstanding", ttt)
		}
		end = w.solicited
	}
	if off != w.got || off+len(p.Data) > end {
		return fmt.Errorf("Data-Out of %d bytes at offset %d, expected offset %d and data up to %d", len(p.Data), off, w.got, end)
	}
	sn := &w.dataSN
	if unsolicited {
		sn = &w.unsolSN
	}
	if got := p.Uint32At(36); got != *sn {
		return fmt.Errorf("Data-Out DataSN %d, expected %d", got, *sn)
	}
	*sn++
	w.data.add(p.Data)
	w.got += len(p.Data)
	switch {
	case w.got >= w.want:
		return s.finish(w)
	case !p.Final():
		return nil
	case unsolicited:
		return s.solicit(w) // the unsolicited data ended
	case w.got >= w.solicited:
		return s.r2t(w) // the sequence ended: the next
	}
	return nil
}

// solicit queues w, its unsolicited data over, for its R2Ts.
func (s *session) solicit(w *writeTask) error {
	w.unsolEnd = w.got
	s.waiting = append(s.waiting, w)
	return s.admit()
}

// admit sends the first R2T of the waiting writes that fit, in order.
// The first that does not fit waits for this connection's admitted
// writes to end; with none to wait for, the target's budget being full,
// it is answered TASK SET FULL.
func (s *session) admit() error {
	for len(s.waiting) > 0 {
		w := s.waiting[0]
		need := w.want - w.reserved
		if s.admitted > 0 && s.solicited+need > connSolicitedBudget {
			return nil
		}
		if !s.tb.reserve(need) {
			if s.admitted > 0 {
				return nil
			}
			s.warn("budget", "iscsi: the target's write budget is full: writes answered TASK SET FULL", "budget", targetWriteBudget)
			s.forget(w)
			s.respond(w.cmd, errTaskSetFull)
			continue
		}
		s.waiting = s.waiting[1:]
		w.reserved += need
		w.solRes = need
		w.admitted = true
		s.admitted++
		s.solicited += need
		w.ttt = s.nextTTT
		if s.nextTTT++; s.nextTTT == 0xffffffff {
			s.nextTTT = 1
		}
		if err := s.r2t(w); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) r2t(w *writeTask) error {
	want := min(w.want-w.got, s.c.p.maxBurst)
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
	return s.send(r, false, nil)
}

// finish runs a write whose data is all there and answers it.
func (s *session) finish(w *writeTask) error {
	res := w.lun.exec(w.cmd.BHS[32:48], w.data)
	s.forget(w)
	s.respond(w.cmd, res)
	return s.admit()
}

// forget lets go of w and what it holds. Its command still needs an
// answer or ended.
func (s *session) forget(w *writeTask) {
	if s.writes[w.cmd.ITT()] == w {
		delete(s.writes, w.cmd.ITT())
	}
	if i := indexOf(s.waiting, w); i >= 0 {
		s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
	}
	if w.admitted {
		s.admitted--
		s.solicited -= w.solRes
		w.admitted = false
	}
	s.tb.free(w.reserved)
	w.reserved, w.data = 0, nil
}

func indexOf(ws []*writeTask, w *writeTask) int {
	for i, x := range ws {
		if x == w {
			return i
		}
	}
	return -1
}

// drop ends a write that will get no answer (aborted): its slot is free.
func (s *session) drop(w *writeTask) {
	s.forget(w)
	s.c.smu.Lock()
	s.ended(w.cmd)
	s.c.smu.Unlock()
}

// dropAll lets go of every write when the connection ends.
func (s *session) dropAll() {
	for _, w := range s.writes {
		s.forget(w)
	}
}

// taskMgmt answers a task management request. ABORT TASK drops the write
// it names if it still waits for data; ABORT TASK SET, CLEAR TASK SET and
// LOGICAL UNIT RESET drop the LUN's waiting writes, the target resets all
// of them. Commands already running finish.
func (s *session) taskMgmt(p *PDU) error {
	r := &PDU{}
	r.BHS[0], r.BHS[1] = OpTaskMgmtResp, 0x80
	r.SetITT(p.ITT())
	switch fn := p.BHS[1] & 0x7f; fn {
	case 1, 2, 4, 5, 6, 7: // abort task/task set, clear task set, LU reset, target warm/cold reset
		for _, w := range s.writes {
			switch {
			case fn == 1 && w.cmd.ITT() == p.Uint32At(20),
				(fn == 2 || fn == 4 || fn == 5) && lunIndex(w.cmd.LUN()) == lunIndex(p.LUN()),
				fn == 6 || fn == 7:
				s.drop(w)
			}
		}
		r.BHS[2] = 0 // function complete
	default:
		r.BHS[2] = 5 // not supported
	}
	if err := s.send(r, true, nil); err != nil {
		return err
	}
	return s.admit()
}

// respond sends a command's Data-In and status. Reads with good status
// carry the status in the last Data-In (phase collapse).
func (s *session) respond(cmd *PDU, res result) {
	c := s.c
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
		if done, res = s.dataIn(cmd, res, send, residual, under, over); done {
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
	if err := s.send(r, true, cmd); err != nil {
		c.close()
	}
}

// dataIn sends the first n bytes of res's Data-In, the status in the last
// PDU. Each PDU holds at most the initiator's MaxRecvDataSegmentLength
// and maxDataInPiece, each sequence (F) at most MaxBurstLength. A READ is
// read a PDU at a time into one buffer. It reports whether the command is
// answered; if not, a read failed and the result to answer with is
// returned (the Data-In sent so far stands).
func (s *session) dataIn(cmd *PDU, res result, n, residual int, under, over bool) (bool, result) {
	c := s.c
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
				s.warn("read", "iscsi: a READ failed", "err", err)
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
		var ends *PDU
		if last {
			ends = cmd
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
		if err := s.send(r, last, ends); err != nil {
			c.close()
			return true, res
		}
		off += k
	}
	return true, res
}

// text answers SendTargets (in discovery and normal sessions).
func (s *session) text(p *PDU) error {
	c := s.c
	kvs, err := ParseText(p.Data)
	if err != nil {
		return s.reject(p, 0x04)
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
	return s.send(r, true, nil)
}

// marshalTextList encodes pairs that may repeat keys (SendTargets).
func marshalTextList(kvs []KV) []byte {
	var b strings.Builder
	for _, kv := range kvs {
		b.WriteString(kv.Key + "=" + kv.Value + "\x00")
	}
	return []byte(b.String())
}

func (s *session) reject(p *PDU, reason byte) error {
	r := &PDU{Data: append([]byte(nil), p.BHS[:]...)}
	r.BHS[0], r.BHS[1], r.BHS[2] = OpReject, 0x80, reason
	r.SetITT(0xffffffff)
	return s.send(r, true, nil)
}
