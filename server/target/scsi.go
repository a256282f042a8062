package target

import (
	"encoding/binary"
	"fmt"
	"io"
)

// SCSI status codes and sense keys (SPC-4).
const (
	statusGood           = 0x00
	statusCheckCondition = 0x02
	statusTaskSetFull    = 0x28

	senseNotReady       = 0x02
	senseMediumError    = 0x03
	senseIllegalRequest = 0x05
	senseDataProtect    = 0x07
	senseMiscompare     = 0x0e

	BlockSize = 512

	// maxTransferBlocks is the MAXIMUM TRANSFER LENGTH of the Block
	// Limits VPD page: a READ, WRITE or VERIFY over it is refused.
	maxTransferBlocks = maxWriteTransfer / BlockSize
)

// Backing is a LUN's storage.
type Backing interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	ReadOnly() bool
	Sync() error
	Close() error
}

// result is a finished SCSI command.
type result struct {
	status byte
	data   []byte    // Data-In
	read   *readSpec // or, for a READ, where its Data-In is read from as it is sent
	sense  []byte    // fixed-format sense data
}

func good(data []byte) result { return result{status: statusGood, data: data} }

// checkCondition builds fixed-format sense data (SPC-4 4.5.3).
func checkCondition(key, asc, ascq byte) result {
	s := make([]byte, 18)
	s[0] = 0x70
	s[2] = key
	s[7] = 10
	s[12], s[13] = asc, ascq
	return result{status: statusCheckCondition, sense: s}
}

var (
	errInvalidOpcode = checkCondition(senseIllegalRequest, 0x20, 0x00)
	errInvalidField  = checkCondition(senseIllegalRequest, 0x24, 0x00)
	errLBARange      = checkCondition(senseIllegalRequest, 0x21, 0x00)
	errWriteProtect  = checkCondition(senseDataProtect, 0x27, 0x00)
	errBadLUN        = checkCondition(senseIllegalRequest, 0x25, 0x00)
	errReadFailed    = checkCondition(senseMediumError, 0x11, 0x00)
	errWriteFailed   = checkCondition(senseMediumError, 0x0c, 0x00)
	// The iSCSI expected length ends inside a block (SAM-5 5.3.3).
	errInvalidIU = checkCondition(senseIllegalRequest, 0x0e, 0x03)
	// The command was not run for lack of room (the connection's or the
	// target's): the initiator retries it later (SAM-5 5.3.1).
	errTaskSetFull = result{status: statusTaskSetFull}
)

// lun is one logical unit.
type lun struct {
	b      Backing
	serial string // unit serial number (VPD 0x80)
	naa    [8]byte
}

func (l *lun) blocks() uint64 { return uint64(l.b.Size()) / BlockSize }

// rw decodes the LBA and block count of a READ or WRITE CDB.
func rw(cdb []byte) (lba uint64, n uint32, ok bool) {
	switch cdb[0] {
	case 0x08, 0x0a: // 6
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		n = uint32(cdb[4])
		if n == 0 {
			n = 256
		}
		return lba, n, true
	case 0x28, 0x2a, 0x2f: // 10
		return uint64(binary.BigEndian.Uint32(cdb[2:])), uint32(binary.BigEndian.Uint16(cdb[7:])), true
	case 0x88, 0x8a, 0x8f: // 16
		return binary.BigEndian.Uint64(cdb[2:]), binary.BigEndian.Uint32(cdb[10:]), true
	}
	return 0, 0, false
}

func isWrite(op byte) bool { return op == 0x0a || op == 0x2a || op == 0x8a }

// needsDataOut reports commands that carry Data-Out: writes, and VERIFY
// with BYTCHK (the initiator sends the data to compare).
func needsDataOut(cdb []byte) bool {
	return isWrite(cdb[0]) || (cdb[0] == 0x2f || cdb[0] == 0x8f) && cdb[1]&0x06 != 0
}

// protectField reports a nonzero RDPROTECT/WRPROTECT/VRPROTECT: this
// target has no protection information (SBC-3 5.x).
func protectField(cdb []byte) bool {
	switch cdb[0] {
	case 0x28, 0x2a, 0x2f, 0x88, 0x8a, 0x8f:
		return cdb[1]&0xe0 != 0
	}
	return false
}

// exec runs one command. data is the Data-Out of a write. A READ's
// result says where to read its Data-In from: the caller reads it as it
// sends it.
func (l *lun) exec(cdb []byte, data *writeData) result {
	switch op := cdb[0]; op {
	case 0x00: // TEST UNIT READY
		return good(nil)
	case 0x03: // REQUEST SENSE: no pending sense
		s := make([]byte, 18)
		s[0], s[7] = 0x70, 10
		return good(s)
	case 0x12:
		return l.inquiry(cdb)
	case 0x1a, 0x5a:
		return l.modeSense(cdb)
	case 0x1b, 0x1e: // START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL
		return good(nil)
	case 0x25: // READ CAPACITY (10)
		b := make([]byte, 8)
		last := l.blocks() - 1
		if last > 0xffffffff {
			last = 0xffffffff
		}
		binary.BigEndian.PutUint32(b, uint32(last))
		binary.BigEndian.PutUint32(b[4:], BlockSize)
		return good(b)
	case 0x9e: // SERVICE ACTION IN (16)
		if cdb[1]&0x1f != 0x10 {
			return errInvalidField
		}
		b := make([]byte, 32)
		binary.BigEndian.PutUint64(b, l.blocks()-1)
		binary.BigEndian.PutUint32(b[8:], BlockSize)
		return good(b)
	case 0x35, 0x91: // SYNCHRONIZE CACHE (10/16)
		if !l.b.ReadOnly() {
			if err := l.b.Sync(); err != nil {
				return errWriteFailed
			}
		}
		return good(nil)
	case 0x08, 0x28, 0x88:
		if protectField(cdb) {
			return errInvalidField
		}
		lba, n, _ := rw(cdb)
		if n > maxTransferBlocks {
			return errInvalidField
		}
		if lba+uint64(n) > l.blocks() || lba+uint64(n) < lba {
			return errLBARange
		}
		return result{status: statusGood, read: &readSpec{b: l.b, off: int64(lba) * BlockSize, n: int(n) * BlockSize}}
	case 0x0a, 0x2a, 0x8a:
		if protectField(cdb) {
			return errInvalidField
		}
		lba, n, _ := rw(cdb)
		if l.b.ReadOnly() {
			return errWriteProtect
		}
		if lba+uint64(n) > l.blocks() || lba+uint64(n) < lba {
			return errLBARange
		}
		// The initiator may send less than the CDB says (its expected
		// transfer length is shorter: a residual overflow); only whole
		// blocks are written.
		switch {
		case data.Len() > int(n)*BlockSize:
			return errInvalidField
		case data.Len()%BlockSize != 0:
			return errInvalidIU
		}
		if err := data.writeTo(l.b, int64(lba)*BlockSize); err != nil {
			return errWriteFailed
		}
		if op != 0x0a && cdb[1]&0x08 != 0 { // FUA
			if err := l.b.Sync(); err != nil {
				return errWriteFailed
			}
		}
		return good(nil)
	case 0x2f, 0x8f: // VERIFY
		if protectField(cdb) {
			return errInvalidField
		}
		lba, n, _ := rw(cdb)
		if lba+uint64(n) > l.blocks() || lba+uint64(n) < lba {
			return errLBARange
		}
		if cdb[1]&0x06 == 0 {
			return good(nil) // the medium is always readable
		}
		if data.Len() != int(n)*BlockSize {
			return errInvalidField
		}
		// Compared a piece at a time: the medium's copy is never held
		// whole.
		buf := make([]byte, min(data.Len(), writePiece))
		for off := 0; off < data.Len(); off += writePiece {
			want := data.piece(off)
			got := buf[:len(want)]
			if _, err := l.b.ReadAt(got, int64(lba)*BlockSize+int64(off)); err != nil && err != io.EOF {
				return errReadFailed
			}
			for i := range got {
				if got[i] != want[i] {
					r := checkCondition(senseMiscompare, 0x1d, 0x00)
					r.sense[0] |= 0x80 // VALID: information is the offset
					binary.BigEndian.PutUint32(r.sense[3:], uint32(off+i))
					return r
				}
			}
		}
		return good(nil)
	}
	return errInvalidOpcode
}

func (l *lun) inquiry(cdb []byte) result {
	evpd := cdb[1]&1 != 0
	page := cdb[2]
	if !evpd {
		if page != 0 {
			return errInvalidField
		}
		b := make([]byte, 96)
		b[0] = 0x00 // direct access block device
		b[2] = 0x06 // SPC-4
		b[3] = 0x02 // response data format
		b[4] = byte(len(b) - 5)
		b[7] = 0x02 // CmdQue
		copy(b[8:16], pad("OVERBOOT", 8))
		copy(b[16:32], pad("overboot disk", 16))
		copy(b[32:36], pad("0001", 4))
		// Version descriptors (SPC-4 6.4.2, table 148): SAM-5, iSCSI
		// (RFC 7143), SPC-4, SBC-3, each with no version claimed.
		for i, v := range []uint16{0x00a0, 0x0960, 0x0460, 0x04c0} {
			binary.BigEndian.PutUint16(b[58+2*i:], v)
		}
		return good(b)
	}
	switch page {
	case 0x00:
		return good([]byte{0, 0x00, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1})
	case 0x80:
		s := []byte(l.serial)
		return good(append([]byte{0, 0x80, 0, byte(len(s))}, s...))
	case 0x83:
		// One NAA IEEE Registered designator (type 3, binary).
		d := append([]byte{0x01, 0x03, 0x00, 8}, l.naa[:]...)
		return good(append([]byte{0, 0x83, 0, byte(len(d))}, d...))
	case 0xb0: // block limits
		b := make([]byte, 64)
		b[1], b[3] = 0xb0, 0x3c
		binary.BigEndian.PutUint32(b[8:], maxTransferBlocks) // maximum transfer length
		binary.BigEndian.PutUint32(b[12:], 128)              // optimal transfer length: 64 KiB
		return good(b)
	case 0xb1: // block device characteristics: non-rotating
		b := make([]byte, 64)
		b[1], b[3] = 0xb1, 0x3c
		b[5] = 1
		return good(b)
	}
	return errInvalidField
}

func (l *lun) modeSense(cdb []byte) result {
	page := cdb[2] & 0x3f
	var pages []byte
	caching := []byte{0x08, 0x12, 0x04, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x80, 0x14, 0, 0, 0, 0, 0, 0} // WCE
	control := []byte{0x0a, 0x0a, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}
	switch page {
	case 0x3f:
		pages = append(append(pages, caching...), control...)
	case 0x08:
		pages = caching
	case 0x0a:
		pages = control
	default:
		return errInvalidField
	}
	wp := byte(0x10) // DPOFUA: DPO and FUA are accepted
	if l.b.ReadOnly() {
		wp |= 0x80
	}
	if cdb[0] == 0x1a {
		h := []byte{byte(3 + len(pages)), 0, wp, 0}
		return good(append(h, pages...))
	}
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h, uint16(6+len(pages)))
	h[3] = wp
	return good(append(h, pages...))
}

func pad(s string, n int) []byte {
	b := []byte(fmt.Sprintf("%-*s", n, s))
	return b[:n]
}

// allocationLength returns how much Data-In a CDB allows (0 = no limit
// known: the transfer length decides).
func allocationLength(cdb []byte) uint32 {
	switch cdb[0] {
	case 0x12, 0x1a, 0x03:
		if cdb[0] == 0x12 {
			return uint32(binary.BigEndian.Uint16(cdb[3:]))
		}
		return uint32(cdb[4])
	case 0x5a:
		return uint32(binary.BigEndian.Uint16(cdb[7:]))
	case 0x9e, 0xa0:
		return binary.BigEndian.Uint32(cdb[10:])
	}
	return 0
}
