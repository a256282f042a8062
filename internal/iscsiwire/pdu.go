package iscsiwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcodes (RFC 7143 section 11.2.1.2).
const (
	OpNOPOut      = 0x00
	OpSCSICommand = 0x01
	OpTaskMgmt    = 0x02
	OpLogin       = 0x03
	OpText        = 0x04
	OpDataOut     = 0x05
	OpLogout      = 0x06
	OpSNACK       = 0x10

	OpNOPIn        = 0x20
	OpSCSIResponse = 0x21
	OpTaskMgmtResp = 0x22
	OpLoginResp    = 0x23
	OpTextResp     = 0x24
	OpDataIn       = 0x25
	OpLogoutResp   = 0x26
	OpR2T          = 0x31
	OpAsync        = 0x32
	OpReject       = 0x3f
)

// BHSLen is the length of the Basic Header Segment.
const BHSLen = 48

// MaxDataSegment bounds what ReadPDU accepts whatever was negotiated
// (MaxRecvDataSegmentLength is at most 2^24-1 by RFC 7143).
const MaxDataSegment = 1<<24 - 1

// ErrProtocol marks malformed PDUs.
var ErrProtocol = errors.New("iscsi protocol error")

var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PDU is one iSCSI protocol data unit: the 48-byte basic header, any
// additional header segments, and the data segment (without padding).
type PDU struct {
	BHS  [BHSLen]byte
	AHS  []byte
	Data []byte
}

// Opcode returns the opcode without the immediate bit.
func (p *PDU) Opcode() byte { return p.BHS[0] & 0x3f }

// Immediate reports the I bit.
func (p *PDU) Immediate() bool { return p.BHS[0]&0x40 != 0 }

// Final reports the F bit (byte 1, bit 7).
func (p *PDU) Final() bool { return p.BHS[1]&0x80 != 0 }

// Field accessors: offsets are those of RFC 7143 section 11.
func (p *PDU) Uint32At(off int) uint32       { return binary.BigEndian.Uint32(p.BHS[off:]) }
func (p *PDU) PutUint32At(off int, v uint32) { binary.BigEndian.PutUint32(p.BHS[off:], v) }
func (p *PDU) Uint16At(off int) uint16       { return binary.BigEndian.Uint16(p.BHS[off:]) }
func (p *PDU) PutUint16At(off int, v uint16) { binary.BigEndian.PutUint16(p.BHS[off:], v) }
func (p *PDU) LUN() uint64                   { return binary.BigEndian.Uint64(p.BHS[8:]) }
func (p *PDU) SetLUN(v uint64)               { binary.BigEndian.PutUint64(p.BHS[8:], v) }
func (p *PDU) ITT() uint32                   { return p.Uint32At(16) }
func (p *PDU) SetITT(v uint32)               { p.PutUint32At(16, v) }
func (p *PDU) CmdSN() uint32                 { return p.Uint32At(24) }
func (p *PDU) ExpStatSN() uint32             { return p.Uint32At(28) }
func (p *PDU) dataSegmentLength() int        { return int(p.BHS[5])<<16 | int(p.BHS[6])<<8 | int(p.BHS[7]) }
func (p *PDU) setDataSegmentLength(n int) {
	p.BHS[5], p.BHS[6], p.BHS[7] = byte(n>>16), byte(n>>8), byte(n)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// Digests says which digests a connection uses after login.
type Digests struct{ Header, Data bool }

func crc(b ...[]byte) uint32 {
	var c uint32
	for _, x := range b {
		c = crc32.Update(c, Castagnoli, x)
	}
	return c
}

// ReadPDU reads one PDU. maxData bounds the data segment (the negotiated
// MaxRecvDataSegmentLength, or the login limit).
func ReadPDU(r io.Reader, d Digests, maxData int) (*PDU, error) {
	p := &PDU{}
	if _, err := io.ReadFull(r, p.BHS[:]); err != nil {
		return nil, err
	}
	ahs := int(p.BHS[4]) * 4
	n := p.dataSegmentLength()
	if maxData > MaxDataSegment {
		maxData = MaxDataSegment
	}
	if n > maxData {
		return nil, fmt.Errorf("%w: opcode 0x%02x: data segment of %d bytes, limit %d", ErrProtocol, p.Opcode(), n, maxData)
	}
	if ahs > 0 {
		p.AHS = make([]byte, ahs)
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return nil, unexpected(err)
		}
	}
	if d.Header {
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, unexpected(err)
		}
		if got, want := binary.LittleEndian.Uint32(b[:]), crc(p.BHS[:], p.AHS); got != want {
			return nil, fmt.Errorf("%w: header digest 0x%08x, computed 0x%08x", ErrProtocol, got, want)
		}
	}
	if n > 0 {
		buf := make([]byte, n+pad4(n))
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpected(err)
		}
		if d.Data {
			var b [4]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, unexpected(err)
			}
			if got, want := binary.LittleEndian.Uint32(b[:]), crc(buf); got != want {
				return nil, fmt.Errorf("%w: data digest 0x%08x, computed 0x%08x", ErrProtocol, got, want)
			}
		}
		p.Data = buf[:n]
	}
	return p, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Marshal returns the PDU as it goes on the wire.
func (p *PDU) Marshal(d Digests) ([]byte, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > 255*4 {
		return nil, fmt.Errorf("%w: AHS of %d bytes", ErrProtocol, len(p.AHS))
	}
	if len(p.Data) > MaxDataSegment {
		return nil, fmt.Errorf("%w: data segment of %d bytes", ErrProtocol, len(p.Data))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	p.setDataSegmentLength(len(p.Data))
	size := BHSLen + len(p.AHS) + len(p.Data) + pad4(len(p.Data))
	if d.Header {
		size += 4
	}
	if d.Data && len(p.Data) > 0 {
		size += 4
	}
	out := make([]byte, 0, size)
	out = append(out, p.BHS[:]...)
	out = append(out, p.AHS...)
	if d.Header {
		out = binary.LittleEndian.AppendUint32(out, crc(p.BHS[:], p.AHS))
	}
	if len(p.Data) > 0 {
		start := len(out)
		out = append(out, p.Data...)
		out = append(out, make([]byte, pad4(len(p.Data)))...)
		if d.Data {
			out = binary.LittleEndian.AppendUint32(out, crc(out[start:]))
		}
	}
	return out, nil
}

// Buffers returns the PDU as wire pieces without copying the data
// segment, for a vectored write (writev) of large Data-In.
func (p *PDU) Buffers(d Digests) ([][]byte, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > 255*4 || len(p.Data) > MaxDataSegment {
		return nil, fmt.Errorf("%w: AHS of %d bytes, data of %d", ErrProtocol, len(p.AHS), len(p.Data))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	p.setDataSegmentLength(len(p.Data))
	hdr := make([]byte, 0, BHSLen+len(p.AHS)+4)
	hdr = append(hdr, p.BHS[:]...)
	hdr = append(hdr, p.AHS...)
	if d.Header {
		hdr = binary.LittleEndian.AppendUint32(hdr, crc(p.BHS[:], p.AHS))
	}
	if len(p.Data) == 0 {
		return [][]byte{hdr}, nil
	}
	tailb := make([]byte, pad4(len(p.Data)), pad4(len(p.Data))+4)
	if d.Data {
		tailb = binary.LittleEndian.AppendUint32(tailb, crc(p.Data, tailb))
	}
	return [][]byte{hdr, p.Data, tailb}, nil
}
