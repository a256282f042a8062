package initramfs

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Archive is one piece of an initramfs as the kernel unpacks it: a cpio
// archive, plain or compressed, at an offset of the file.
type Archive struct {
	Offset      int64
	Length      int64 // bytes of the file it spans (compressed)
	Compression string
	Entries     []Entry
}

// Limits on hostile input: List never holds file bodies in memory.
const (
	MaxInput    = 2 << 30 // bytes of initramfs List reads
	maxNameSize = 4096
	maxEntries  = 1 << 20
)

// ErrFormat: the input is not what the kernel would unpack.
var ErrFormat = errors.New("not an initramfs")

var magics = []struct {
	name  string
	magic []byte
}{
	{"none", []byte(newcMagic)},
	{"none", []byte(newcCRCMagic)},
	{"gzip", []byte{0x1f, 0x8b}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
	{"bzip2", []byte("BZh")},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}},
	{"lzma", []byte{0x5d, 0x00, 0x00}},
}

// List reads every segment of an initramfs: concatenated cpio archives,
// each plain or compressed, separated by zero padding, as the kernel's
// init/initramfs.c reads them.
func List(r io.Reader) ([]Archive, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxInput {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrFormat, MaxInput)
	}
	var segs []Archive
	total := 0
	for off := 0; ; {
		for off < len(data) && data[off] == 0 {
			off++
		}
		if off == len(data) {
			break
		}
		comp := ""
		for _, m := range magics {
			if bytes.HasPrefix(data[off:], m.magic) {
				comp = m.name
				break
			}
		}
		seg := Archive{Offset: int64(off), Compression: comp}
		n := len(segs) + 1
		where := func(err error) error {
			return fmt.Errorf("segment %d at offset %d (%s): %w", n, off, comp, err)
		}
		var content io.Reader
		var length int
		switch comp {
		case "":
			return nil, fmt.Errorf("segment %d at offset %d: %w: unknown magic %x", n, off, ErrFormat, data[off:min(off+6, len(data))])
		case "none":
			ents, n, err := readCPIOAt(bytes.NewReader(data[off:]), maxEntries-total, true)
			if err != nil {
				return nil, where(err)
			}
			seg.Entries, length = ents, int(n)
		case "gzip":
			br := bytes.NewReader(data[off:])
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, where(err)
			}
			zr.Multistream(false)
			content = zr
			// Counted after reading: gzip stops exactly at the member's end
			// on a ByteReader.
			ents, err := readCPIO(content, maxEntries-total, false)
			if err != nil {
				return nil, where(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				return nil, where(err)
			}
			seg.Entries, length = ents, len(data)-off-br.Len()
		case "zstd":
			end, err := zstdFrameEnd(data[off:])
			if err != nil {
				return nil, where(err)
			}
			zr, err := zstd.NewReader(bytes.NewReader(data[off:off+end]), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
			if err != nil {
				return nil, where(err)
			}
			ents, err := readCPIO(zr, maxEntries-total, false)
			zr.Close()
			if err != nil {
				return nil, where(err)
			}
			seg.Entries, length = ents, end
		case "xz", "bzip2":
			// These decoders read ahead: the segment is taken to run to the
			// end of the file, which is where such segments are in practice.
			var zr io.Reader
			if comp == "xz" {
				zr, err = xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(data[off:]))
				if err != nil {
					return nil, where(err)
				}
			} else {
				zr = bzip2.NewReader(bytes.NewReader(data[off:]))
			}
			ents, err := readCPIO(zr, maxEntries-total, false)
			if err != nil {
				return nil, where(err)
			}
			seg.Entries, length = ents, len(data)-off
		default:
			return nil, where(fmt.Errorf("%s segments are not supported by this lister", comp))
		}
		seg.Length = int64(length)
		total += len(seg.Entries)
		segs = append(segs, seg)
		off += length
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrFormat)
	}
	return segs, nil
}

// readCPIO reads newc archives from r: one (plain: up to its trailer) or,
// in decompressed data, all of them with zero padding between.
func readCPIO(r io.Reader, budget int, one bool) ([]Entry, error) {
	ents, _, err := readCPIOAt(r, budget, one)
	return ents, err
}

// readCPIOAt is readCPIO that also returns how many bytes it consumed.
func readCPIOAt(r io.Reader, budget int, one bool) ([]Entry, int64, error) {
	br := bufio.NewReader(r)
	var pos int64
	read := func(n int) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		pos += int64(n)
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated at byte %d", pos-int64(n))
		}
		return b, err
	}
	skip := func(n int64) error {
		m, err := io.CopyN(io.Discard, br, n)
		pos += m
		if err != nil {
			return fmt.Errorf("truncated at byte %d", pos)
		}
		return nil
	}
	align := func() error { return skip((4 - pos%4) % 4) }
	var ents []Entry
	for {
		if !one {
			// Between archives of a decompressed segment: zero padding.
			for {
				b, err := br.Peek(1)
				if err == io.EOF {
					return ents, pos, nil
				}
				if err != nil {
					return nil, pos, err
				}
				if b[0] != 0 {
					break
				}
				br.ReadByte()
				pos++
			}
		}
		hdr, err := read(newcHeaderLen)
		if err != nil {
			return nil, pos, err
		}
		if m := string(hdr[:6]); m != newcMagic && m != newcCRCMagic {
			return nil, pos, fmt.Errorf("%w: bad cpio magic %q at byte %d", ErrFormat, m, pos-newcHeaderLen)
		}
		var f [13]uint64
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, pos, fmt.Errorf("%w: bad cpio header field %d at byte %d", ErrFormat, i, pos-newcHeaderLen)
			}
			f[i] = v
		}
		mode, uid, gid, size, major, minor, namesize := f[1], f[2], f[3], f[6], f[9], f[10], f[11]
		if namesize == 0 || namesize > maxNameSize {
			return nil, pos, fmt.Errorf("%w: name size %d at byte %d", ErrFormat, namesize, pos-newcHeaderLen)
		}
		nb, err := read(int(namesize))
		if err != nil {
			return nil, pos, err
		}
		name := string(bytes.TrimRight(nb, "\x00"))
		if err := align(); err != nil {
			return nil, pos, err
		}
		if name == trailerName {
			if err := align(); err != nil {
				return nil, pos, err
			}
			if one {
				return ents, pos, nil
			}
			continue
		}
		if len(ents) >= budget {
			return nil, pos, fmt.Errorf("%w: more than %d entries", ErrFormat, maxEntries)
		}
		e := Entry{Name: name, Mode: uint32(mode), UID: uint32(uid), GID: uint32(gid), Size: int64(size), Major: uint32(major), Minor: uint32(minor)}
		if e.Mode&modeType == modeSymlink && size <= maxNameSize {
			lb, err := read(int(size))
			if err != nil {
				return nil, pos, err
			}
			e.Link = string(lb)
		} else if err := skip(int64(size)); err != nil {
			return nil, pos, err
		}
		if err := align(); err != nil {
			return nil, pos, err
		}
		ents = append(ents, e)
	}
}

// zstdFrameEnd returns the length of the zstd frame (or skippable frames
// followed by one) at the start of b (RFC 8878 section 3.1).
func zstdFrameEnd(b []byte) (int, error) {
	off := 0
	need := func(n int) error {
		if off+n > len(b) {
			return fmt.Errorf("truncated zstd frame at byte %d", off)
		}
		return nil
	}
	for {
		if err := need(4); err != nil {
			return 0, err
		}
		magic := binary.LittleEndian.Uint32(b[off:])
		if magic&0xfffffff0 == 0x184d2a50 { // skippable frame
			if err := need(8); err != nil {
				return 0, err
			}
			n := int(binary.LittleEndian.Uint32(b[off+4:]))
			off += 8
			if err := need(n); err != nil {
				return 0, err
			}
			off += n
			continue
		}
		if magic != 0xfd2fb528 {
			return 0, fmt.Errorf("bad zstd magic %08x", magic)
		}
		off += 4
		if err := need(1); err != nil {
			return 0, err
		}
		fhd := b[off]
		off++
		single := fhd>>5&1 == 1
		if !single {
			off++ // window descriptor
		}
		off += []int{0, 1, 2, 4}[fhd&3]
		fcs := []int{0, 2, 4, 8}[fhd>>6]
		if fhd>>6 == 0 && single {
			fcs = 1
		}
		off += fcs
		for {
			if err := need(3); err != nil {
				return 0, err
			}
			h := uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16
			off += 3
			last, typ, size := h&1 == 1, h>>1&3, int(h>>3)
			switch typ {
			case 1: // RLE
				size = 1
			case 3:
				return 0, fmt.Errorf("reserved zstd block type at byte %d", off-3)
			}
			if err := need(size); err != nil {
				return 0, err
			}
			off += size
			if last {
				break
			}
		}
		if fhd>>2&1 == 1 {
			if err := need(4); err != nil {
				return 0, err
			}
			off += 4
		}
		return off, nil
	}
}
