package target

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/initagent/initiator"
)

// serveTargets serves the targets on 127.0.0.1; setup, when not nil,
// runs before Serve.
func serveTargets(t *testing.T, setup func(*Target), cfgs ...TargetConfig) string {
	t.Helper()
	s := New(nil)
	for _, tc := range cfgs {
		if err := s.AddTarget(tc); err != nil {
			t.Fatal(err)
		}
	}
	if setup != nil {
		setup(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// sparseLUN is a writable sparse LUN of size bytes, closed at the end.
func sparseLUN(t *testing.T, size int64) *FileBacking {
	t.Helper()
	b, err := CreateSparse(filepath.Join(t.TempDir(), "lun.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// countingBacking records the largest ReadAt and the bytes read.
type countingBacking struct {
	Backing
	maxRead   atomic.Int64
	readBytes atomic.Int64
}

func (b *countingBacking) ReadAt(p []byte, off int64) (int, error) {
	for {
		m := b.maxRead.Load()
		if int64(len(p)) <= m || b.maxRead.CompareAndSwap(m, int64(len(p))) {
			break
		}
	}
	b.readBytes.Add(int64(len(p)))
	return b.Backing.ReadAt(p, off)
}

// rawSession is a logged-in session driven a PDU at a time.
type rawSession struct {
	t     *testing.T
	nc    net.Conn
	tr    *initiator.TCP
	n     initiator.Negotiated
	cmdSN uint32
}

func rawSessionLogin(t *testing.T, addr, iname, iqn string, chap CHAP) *rawSession {
	t.Helper()
	nc, n, st := loginAs(t, addr, initiator.Options{Initiator: iname, Target: iqn, CHAP: chap, ISID: [6]byte{0x80, 0, 0, 0, 0, 9}})
	if st != 0 {
		t.Fatalf("login: status 0x%04x", st)
	}
	nc.SetDeadline(time.Now().Add(2 * patience))
	return &rawSession{t: t, nc: nc, tr: &initiator.TCP{Conn: nc}, n: n}
}

func (r *rawSession) send(p *PDU) {
	r.t.Helper()
	if err := r.tr.Send(p); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

func (r *rawSession) recv() *PDU {
	r.t.Helper()
	p, err := r.tr.Recv()
	if err != nil {
		r.t.Fatalf("recv: %v", err)
	}
	return p
}

// command sends a SCSI command: flags are R (0x40) and W (0x20), final
// says no unsolicited Data-Out follows, data is immediate. A command
// not immediate takes the next CmdSN.
func (r *rawSession) command(itt uint32, cdb []byte, edtl int, flags byte, final, immediate bool, data []byte) {
	r.t.Helper()
	p := &PDU{Data: data}
	p.BHS[0] = OpSCSICommand
	if immediate {
		p.BHS[0] |= 0x40
	}
	p.BHS[1] = flags | 0x01 // simple
	if final {
		p.BHS[1] |= 0x80
	}
	p.SetITT(itt)
	p.PutUint32At(20, uint32(edtl))
	p.PutUint32At(24, r.cmdSN)
	if !immediate {
		r.cmdSN++
	}
	copy(p.BHS[32:48], cdb)
	r.send(p)
}

// dataOut sends one Data-Out PDU.
func (r *rawSession) dataOut(itt, ttt, dataSN uint32, off int, data []byte, final bool) {
	r.t.Helper()
	p := &PDU{Data: data}
	p.BHS[0] = OpDataOut
	if final {
		p.BHS[1] = 0x80
	}
	p.SetITT(itt)
	p.PutUint32At(20, ttt)
	p.PutUint32At(36, dataSN)
	p.PutUint32At(40, uint32(off))
	r.send(p)
}

// ping sends an immediate NOP-Out and returns the PDUs that came before
// its NOP-In, and the NOP-In.
func (r *rawSession) ping(itt uint32) ([]*PDU, *PDU) {
	r.t.Helper()
	p := &PDU{}
	p.BHS[0], p.BHS[1] = OpNOPOut|0x40, 0x80
	p.SetITT(itt)
	p.PutUint32At(20, 0xffffffff)
	p.PutUint32At(24, r.cmdSN)
	r.send(p)
	var before []*PDU
	for {
		q := r.recv()
		if q.Opcode() == OpNOPIn && q.ITT() == itt {
			return before, q
		}
		before = append(before, q)
	}
}

// answerR2Ts sends data (the write's from offset 0) for the R2Ts of itt
// until its SCSI Response, which it returns; PDUs of other tasks are
// returned too.
func (r *rawSession) answerR2Ts(itt uint32, data []byte, first *PDU) (*PDU, []*PDU) {
	r.t.Helper()
	var others []*PDU
	p := first
	for {
		if p == nil {
			p = r.recv()
		}
		switch {
		case p.ITT() != itt:
			others = append(others, p)
		case p.Opcode() == OpR2T:
			off, n := int(p.Uint32At(40)), int(p.Uint32At(44))
			seg := r.n.MaxXmitDataSegmentLength
			var sn uint32
			for o := off; o < off+n; o += seg {
				k := min(seg, off+n-o)
				r.dataOut(itt, p.Uint32At(20), sn, o, data[o:o+k], o+k == off+n)
				sn++
			}
		case p.Opcode() == OpSCSIResponse:
			return p, others
		default:
			r.t.Fatalf("task 0x%x: opcode 0x%02x", itt, p.Opcode())
		}
		p = nil
	}
}

// readData sends a READ and collects its Data-In; it fails the test on
// anything but a good status.
func (r *rawSession) readData(itt uint32, cdb []byte, edtl int) ([]byte, []*PDU) {
	r.t.Helper()
	r.command(itt, cdb, edtl, 0x40, true, false, nil)
	var got []byte
	var pdus []*PDU
	for {
		p := r.recv()
		if p.ITT() != itt {
			r.t.Fatalf("a PDU of task 0x%x", p.ITT())
		}
		pdus = append(pdus, p)
		switch p.Opcode() {
		case OpDataIn:
			got = append(got, p.Data...)
			if p.BHS[1]&0x01 != 0 {
				if p.BHS[3] != statusGood {
					r.t.Fatalf("READ status 0x%02x", p.BHS[3])
				}
				return got, pdus
			}
		case OpSCSIResponse:
			r.t.Fatalf("READ answered status 0x%02x sense %x", p.BHS[3], p.Data)
		default:
			r.t.Fatalf("READ: opcode 0x%02x", p.Opcode())
		}
	}
}

func read16(lba uint64, n uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], n)
	return cdb
}

func write16(lba uint64, n uint32) []byte {
	cdb := read16(lba, n)
	cdb[0] = 0x8a
	return cdb
}

// totalAlloc is the bytes allocated by the process so far.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// TestReadOverMaxTransfer: a READ longer than the Block Limits page's
// MAXIMUM TRANSFER LENGTH is refused (INVALID FIELD IN CDB) without
// allocating it; it once allocated the whole 1 GiB for an expected
// length of 512 bytes.
func TestReadOverMaxTransfer(t *testing.T) {
	lun := &countingBacking{Backing: sparseLUN(t, 1<<30)}
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{lun}, CHAP: chap})
	r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	before := totalAlloc()
	r.command(1, read16(0, 1<<21), 512, 0x40, true, false, nil)
	p := r.recv()
	grew := totalAlloc() - before
	if grew > 16<<20 {
		t.Errorf("a READ of 2^21 blocks for 512 bytes allocated %d MiB", grew>>20)
	}
	if p.Opcode() != OpSCSIResponse || p.BHS[3] != statusCheckCondition || len(p.Data) < 2+14 || p.Data[2+2]&0x0f != senseIllegalRequest || p.Data[2+12] != 0x24 {
		t.Fatalf("READ over the maximum transfer length: opcode 0x%02x status 0x%02x data %x, want CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB", p.Opcode(), p.BHS[3], p.Data[:min(len(p.Data), 20)])
	}
	if n := lun.readBytes.Load(); n != 0 {
		t.Errorf("the refused READ read %d bytes", n)
	}
}

// TestReadAllocatesExpectedLength: a legal READ whose expected length is
// shorter than its CDB's reads and holds only the expected length, and
// reports the rest as a residual overflow (RFC 7143 11.4.5).
func TestReadAllocatesExpectedLength(t *testing.T) {
	lun := &countingBacking{Backing: sparseLUN(t, 64<<20)}
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{lun}, CHAP: chap})
	r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	before := totalAlloc()
	r.command(1, read16(0, maxTransferBlocks), 512, 0x40, true, false, nil)
	p := r.recv()
	if grew := totalAlloc() - before; grew > 4<<20 {
		t.Errorf("a READ of %d blocks for 512 bytes allocated %d KiB", maxTransferBlocks, grew>>10)
	}
	if p.Opcode() != OpDataIn || p.BHS[1] != 0x80|0x04|0x01 || len(p.Data) != 512 || p.Uint32At(44) != maxWriteTransfer-512 {
		t.Fatalf("answer: opcode 0x%02x flags 0x%02x, %d bytes, residual %d; want one Data-In with status, O, 512 bytes, residual %d", p.Opcode(), p.BHS[1], len(p.Data), p.Uint32At(44), maxWriteTransfer-512)
	}
	if got := lun.readBytes.Load(); got != 512 {
		t.Errorf("read %d bytes of the LUN for 512 expected", got)
	}
}

// TestReadStreamsDataIn: a big READ returns the right bytes, read and
// sent in pieces no larger than a Data-In PDU (the initiator's
// MaxRecvDataSegmentLength), sequences (F) at MaxBurstLength, DataSN
// and offsets in order.
func TestReadStreamsDataIn(t *testing.T) {
	data := make([]byte, 16<<20)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "ro.img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fb, err := OpenFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	lun := &countingBacking{Backing: fb}
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{lun}, CHAP: chap})
	r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	const lba = 8
	n := uint32(maxTransferBlocks - lba) // a legal READ of nearly 16 MiB
	got, pdus := r.readData(1, read16(lba, n), int(n)*BlockSize)
	if !bytes.Equal(got, data[lba*BlockSize:]) {
		t.Fatalf("READ returned other bytes (%d of %d)", len(got), len(data)-lba*BlockSize)
	}
	maxSeg := min(r.n.MaxRecvDataSegmentLength, maxDataInPiece)
	off := 0
	for i, p := range pdus {
		last := i == len(pdus)-1
		if len(p.Data) > maxSeg || p.Uint32At(36) != uint32(i) || int(p.Uint32At(40)) != off {
			t.Fatalf("Data-In %d: %d bytes (max %d), DataSN %d, offset %d (want %d)", i, len(p.Data), maxSeg, p.Uint32At(36), p.Uint32At(40), off)
		}
		off += len(p.Data)
		if f := p.BHS[1]&0x80 != 0; f != (last || off%r.n.MaxBurstLength == 0) {
			t.Fatalf("Data-In %d ending at %d: F=%v with MaxBurstLength %d", i, off, f, r.n.MaxBurstLength)
		}
		if s := p.BHS[1]&0x01 != 0; s != last {
			t.Fatalf("Data-In %d: S=%v", i, s)
		}
	}
	if m := lun.maxRead.Load(); m > maxDataInPiece {
		t.Errorf("the LUN was read %d bytes at once: the Data-In is not streamed", m)
	}
}

// TestWriteFlood: 100 WRITEs of 16 MiB sent without their data. The
// target neither allocates them (they once took 1.6 GiB) nor holds them
// all: the command window closes at 64 running commands, MaxCmdSN tells
// the initiator so, the commands beyond it are dropped (one warning),
// and only as many writes are asked for their data as the connection's
// budget allows. The first write then completes normally and frees its
// slot and its room for the next.
func TestWriteFlood(t *testing.T) {
	var log logBuffer
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, func(s *Target) { s.log = slog.New(slog.NewTextHandler(&log, nil)) },
		TargetConfig{IQN: testIQN, LUNs: []Backing{sparseLUN(t, 64<<20)}, CHAP: chap})
	r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	before := totalAlloc()
	for i := range 100 {
		r.command(uint32(i+1), write16(0, maxTransferBlocks), maxWriteTransfer, 0x20, true, false, nil)
	}
	got, nop := r.ping(0x1000)
	if grew := totalAlloc() - before; grew > 64<<20 {
		t.Fatalf("100 WRITEs of 16 MiB without data allocated %d MiB", grew>>20)
	}
	var r2t *PDU
	for _, p := range got {
		if p.Opcode() != OpR2T || r2t != nil {
			t.Fatalf("before the NOP-In: opcode 0x%02x ITT 0x%x; want one R2T", p.Opcode(), p.ITT())
		}
		r2t = p
	}
	if r2t == nil || r2t.ITT() != 1 {
		t.Fatalf("want an R2T for the first write only, got %v", r2t != nil)
	}
	if exp, max := nop.Uint32At(28), nop.Uint32At(32); exp != cmdWindow || max != exp-1 {
		t.Fatalf("after 100 commands: ExpCmdSN %d MaxCmdSN %d, want %d and %d (the window full)", exp, max, cmdWindow, cmdWindow-1)
	}
	if c := strings.Count(log.String(), "outside the command window"); c != 1 {
		t.Errorf("%d warnings of commands outside the window, want 1:\n%s", c, log.String())
	}

	data := make([]byte, maxWriteTransfer)
	rand.Read(data)
	resp, others := r.answerR2Ts(1, data, r2t)
	if resp.BHS[3] != statusGood || resp.BHS[1]&0x06 != 0 {
		t.Fatalf("the first write: status 0x%02x flags 0x%02x", resp.BHS[3], resp.BHS[1])
	}
	if exp, max := resp.Uint32At(28), resp.Uint32At(32); max != exp {
		t.Errorf("the first write's answer: ExpCmdSN %d MaxCmdSN %d: want one slot free", exp, max)
	}
	if len(others) == 0 {
		others = append(others, r.recv())
	}
	if p := others[0]; p.Opcode() != OpR2T || p.ITT() != 2 {
		t.Fatalf("after the first write: opcode 0x%02x ITT 0x%x, want the second write's R2T", p.Opcode(), p.ITT())
	}
	// The commands past the window were dropped: an initiator sends
	// them again, from ExpCmdSN, as the window opens.
	r.cmdSN = resp.Uint32At(28)
	back, _ := r.readData(0x2000, read16(0, 16), 16*BlockSize)
	if !bytes.Equal(back, data[:16*BlockSize]) {
		t.Errorf("the first write did not land")
	}
}

// TestImmediateCommandsBounded: immediate commands take no window slot,
// but only immediateAllowance of them run at once; more are answered
// TASK SET FULL rather than held.
func TestImmediateCommandsBounded(t *testing.T) {
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{sparseLUN(t, 64<<20)}, CHAP: chap})
	r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
	before := totalAlloc()
	const n = 20
	for i := range n {
		r.command(uint32(i+1), write16(0, maxTransferBlocks), maxWriteTransfer, 0x20, true, true, nil)
	}
	got, nop := r.ping(0x1000)
	if grew := totalAlloc() - before; grew > 64<<20 {
		t.Fatalf("%d immediate WRITEs of 16 MiB without data allocated %d MiB", n, grew>>20)
	}
	full := 0
	for _, p := range got {
		switch {
		case p.Opcode() == OpSCSIResponse && p.BHS[3] == statusTaskSetFull:
			full++
		case p.Opcode() == OpR2T:
		default:
			t.Fatalf("opcode 0x%02x status 0x%02x", p.Opcode(), p.BHS[3])
		}
	}
	if full != n-immediateAllowance {
		t.Errorf("%d of %d immediate commands answered TASK SET FULL, want %d", full, n, n-immediateAllowance)
	}
	if exp, max := nop.Uint32At(28), nop.Uint32At(32); exp != 0 || max != cmdWindow-1 {
		t.Errorf("ExpCmdSN %d MaxCmdSN %d: immediate commands moved the window", exp, max)
	}
}

// TestTargetWriteBudget: the write data of all a Target's sessions is
// bounded: a write finding the budget full, with no write of its own
// connection to wait for, is answered TASK SET FULL, and gets through
// once there is room.
func TestTargetWriteBudget(t *testing.T) {
	old := targetWriteBudget
	targetWriteBudget = 1 << 20
	t.Cleanup(func() { targetWriteBudget = old })
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{sparseLUN(t, 8<<20)}, CHAP: chap})
	a := rawSessionLogin(t, addr, "iqn.2026-11.test:a", testIQN, chap)
	b := rawSessionLogin(t, addr, "iqn.2026-11.test:b", testIQN, chap)

	// A's write: its first burst unsolicited, the rest asked for with
	// R2Ts; it holds the whole budget.
	big := make([]byte, 1<<20)
	rand.Read(big)
	seg := a.n.MaxXmitDataSegmentLength
	a.command(1, write16(0, 1<<20/BlockSize), len(big), 0x20, false, false, nil)
	for o := 0; o < a.n.FirstBurstLength; o += seg {
		a.dataOut(1, 0xffffffff, uint32(o/seg), o, big[o:o+seg], o+seg == a.n.FirstBurstLength)
	}
	r2t := a.recv()
	if r2t.Opcode() != OpR2T {
		t.Fatalf("A: opcode 0x%02x, want an R2T", r2t.Opcode())
	}
	// B's write of two blocks, one immediate, one unsolicited: no room.
	small := make([]byte, 2*BlockSize)
	rand.Read(small)
	b.command(1, write16(4096, 2), len(small), 0x20, false, false, small[:BlockSize])
	b.dataOut(1, 0xffffffff, 0, BlockSize, small[BlockSize:], true)
	if p := b.recv(); p.Opcode() != OpSCSIResponse || p.BHS[3] != statusTaskSetFull {
		t.Fatalf("B with the budget full: opcode 0x%02x status 0x%02x, want TASK SET FULL", p.Opcode(), p.BHS[3])
	}
	if resp, _ := a.answerR2Ts(1, big, r2t); resp.BHS[3] != statusGood {
		t.Fatalf("A's write: status 0x%02x", resp.BHS[3])
	}
	b.command(2, write16(4096, 2), len(small), 0x20, false, false, small[:BlockSize])
	b.dataOut(2, 0xffffffff, 0, BlockSize, small[BlockSize:], true)
	if resp, _ := b.answerR2Ts(2, small, nil); resp.BHS[3] != statusGood {
		t.Fatalf("B's write once there is room: status 0x%02x", resp.BHS[3])
	}
	if back, _ := a.readData(3, read16(0, 1<<20/BlockSize), len(big)); !bytes.Equal(back, big) {
		t.Errorf("A's write did not land")
	}
	if back, _ := a.readData(4, read16(4096, 2), len(small)); !bytes.Equal(back, small) {
		t.Errorf("B's write did not land")
	}
}

// TestWritePaths: writes with immediate data, unsolicited Data-Out, R2Ts
// and mixes of them land, and read back, on a file and on a
// copy-on-write layer (which takes a write's pieces as one).
func TestWritePaths(t *testing.T) {
	bp, dp, _ := cowFixture(t, 64<<20)
	cow, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cow.Close() })
	for _, lun := range []struct {
		name string
		b    Backing
	}{{"file", sparseLUN(t, 64<<20)}, {"cow", cow}} {
		t.Run(lun.name, func(t *testing.T) { testWritePaths(t, lun.b) })
	}
}

func testWritePaths(t *testing.T, lun Backing) {
	chap := CHAP{User: testUser, Secret: testPass}
	addr := serveTargets(t, nil, TargetConfig{IQN: testIQN, LUNs: []Backing{lun}, CHAP: chap})
	for i, tc := range []struct {
		name  string
		size  int
		imm   int // immediate data
		unsol int // unsolicited data in all (immediate included): ended with F
	}{
		{"immediate only", 4096, 4096, 4096},
		{"immediate then R2T", 1<<20 + 4096, 8192, 8192},
		{"R2T only", 3 << 20, 0, 0},
		{"immediate and unsolicited then R2T", 2<<20 + 512, 64 << 10, 256 << 10},
		{"unsolicited only", 200 << 10, 0, 200 << 10},
		{"unsolicited ended early", 1 << 20, 4096, 12288},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawSessionLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
			if r.n.InitialR2T || !r.n.ImmediateData || r.n.FirstBurstLength != 256<<10 {
				t.Fatalf("negotiated %+v: want InitialR2T=No, ImmediateData=Yes, FirstBurstLength=256KiB", r.n)
			}
			seg := r.n.MaxXmitDataSegmentLength
			itt := uint32(1)
			lba := uint64(i+1)*8192 + 3 // not chunk-aligned
			data := make([]byte, tc.size)
			rand.Read(data)
			final := tc.unsol == tc.imm
			r.command(itt, write16(lba, uint32(tc.size/BlockSize)), tc.size, 0x20, final, false, data[:tc.imm])
			var sn uint32
			for o := tc.imm; o < tc.unsol; o += seg {
				k := min(seg, tc.unsol-o)
				r.dataOut(itt, 0xffffffff, sn, o, data[o:o+k], o+k == tc.unsol)
				sn++
			}
			resp, others := r.answerR2Ts(itt, data, nil)
			if resp.BHS[3] != statusGood || len(others) > 0 {
				t.Fatalf("status 0x%02x, %d other PDUs", resp.BHS[3], len(others))
			}
			itt++
			back, _ := r.readData(itt, read16(lba, uint32(tc.size/BlockSize)), tc.size)
			if !bytes.Equal(back, data) {
				t.Fatalf("read back other bytes")
			}
		})
	}
}
