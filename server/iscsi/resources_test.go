package iscsi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	initiatorpkg "github.com/overboot/overboot/initagent/iscsi"
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
	tr    *initiatorpkg.TCP
	n     initiatorpkg.Negotiated
	cmdSN uint32
}

func rawLogin(t *testing.T, addr, initiator, iqn string, chap CHAP) *rawSession {
	t.Helper()
	nc, n, st := loginAs(t, addr, initiatorpkg.Options{Initiator: initiator, Target: iqn, CHAP: chap, ISID: [6]byte{0x80, 0, 0, 0, 0, 9}})
	if st != 0 {
		t.Fatalf("login: status 0x%04x", st)
	}
	nc.SetDeadline(time.Now().Add(2 * patience))
	return &rawSession{t: t, nc: nc, tr: &initiatorpkg.TCP{Conn: nc}, n: n}
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
	r := rawLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
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
	r := rawLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
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
	r := rawLogin(t, addr, "iqn.2026-11.test:m1", testIQN, chap)
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
