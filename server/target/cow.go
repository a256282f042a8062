package target

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// CowChunk is the copy-on-write granularity.
const CowChunk = 64 << 10

// A log record is one write: a header (magic, count) then count pairs
// (chunk, slot), then a CRC32C of everything before it. A record is
// valid only when complete and its CRC matches, so a write torn by a
// crash is ignored as a whole.
const (
	cowMagic     = 0x4f42434f // "OBCO"
	cowHeaderLen = 8
	cowPairLen   = 16
	cowMaxPairs  = 1 << 20 // a longer record is corrupt
)

// The log only grows, a record a write, so it is compacted: rewritten as
// the live map alone (records of cowCompactRecord pairs), on open when it
// is any longer than that, and in use when it passes twice that (and
// cowCompactMin: a small log is left alone).
const cowCompactRecord = 4096

// cowCompactMin is a variable for the tests.
var cowCompactMin int64 = 64 << 10

// CowBacking is a machine's private view of a shared, read-only raw disk
// image: reads come from the base unless a chunk was written; written
// chunks live in a delta file, located by a log. Crash-safe: new data
// always goes to a fresh slot of the delta and is synced before the log
// record that points at it, and the record is synced before the write is
// acknowledged; a slot is reused only after the record replacing it is
// durable. After a crash at any point, each write reads back entirely old
// or entirely new. Compacting the log writes the new one beside it
// (.log.tmp), syncs it, renames it over the log and syncs the directory:
// a crash leaves the old log or the new one, which map the same chunks.
type CowBacking struct {
	base    *os.File
	delta   *os.File
	logPath string
	size    int64

	mu      sync.RWMutex // guards m, free, next, log, the log's end and the compaction state
	log     *os.File
	m       map[uint64]uint64
	free    []uint64
	next    uint64 // first never-used slot
	logSize int64
	// compactFloor: the log is not compacted in use below this size
	// (cowCompactMin, or further after a compaction failed).
	compactFloor int64
	// dirDirty: a compaction renamed the log but could not sync the
	// directory; it must be synced before the new log takes a record.
	dirDirty bool
}

// OpenCow opens (creating when missing, mode 0600) the copy-on-write
// layer deltaPath + deltaPath.log over base.
func OpenCow(base, deltaPath string) (*CowBacking, error) {
	bf, err := os.Open(base)
	if err != nil {
		return nil, err
	}
	fi, err := bf.Stat()
	if err != nil {
		bf.Close()
		return nil, err
	}
	c := &CowBacking{base: bf, size: fi.Size() / BlockSize * BlockSize, m: map[uint64]uint64{}, logPath: deltaPath + ".log", compactFloor: cowCompactMin}
	if c.size == 0 {
		bf.Close()
		return nil, fmt.Errorf("%s: smaller than a block", base)
	}
	if c.delta, err = os.OpenFile(deltaPath, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		bf.Close()
		return nil, err
	}
	// A compaction that a crash interrupted before its rename left the
	// old log in place and this, partial or whole: not needed.
	if err := os.Remove(c.logPath + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		bf.Close()
		c.delta.Close()
		return nil, err
	}
	if c.log, err = os.OpenFile(c.logPath, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		bf.Close()
		c.delta.Close()
		return nil, err
	}
	if err := c.replay(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", deltaPath, err)
	}
	if c.logSize > compactedLen(len(c.m)) {
		// Not fatal: the log as it is serves as well.
		c.compact()
	}
	return c, nil
}

// compactedLen is the size of a compacted log of n chunks.
func compactedLen(n int) int64 {
	records := (n + cowCompactRecord - 1) / cowCompactRecord
	return int64(n)*cowPairLen + int64(records)*(cowHeaderLen+4)
}

// replay rebuilds the map from the log, read a record at a time, stopping
// at the first torn or corrupt record (and cutting the log there).
func (c *CowBacking) replay() error {
	fi, err := c.log.Stat()
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(c.log, 0, fi.Size()), 64<<10)
	var off int64
	rec := make([]byte, 0, 4096)
	for {
		rec = rec[:cowHeaderLen]
		if _, err := io.ReadFull(r, rec); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			return err
		}
		if binary.LittleEndian.Uint32(rec) != cowMagic {
			break
		}
		n := int(binary.LittleEndian.Uint32(rec[4:]))
		size := cowHeaderLen + n*cowPairLen + 4
		if n == 0 || n > cowMaxPairs || off+int64(size) > fi.Size() {
			break
		}
		rec = slices.Grow(rec, size-cowHeaderLen)[:size]
		if _, err := io.ReadFull(r, rec[cowHeaderLen:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			return err
		}
		if crc32.Checksum(rec[:size-4], iscsiwire.Castagnoli) != binary.LittleEndian.Uint32(rec[size-4:]) {
			break
		}
		for i := 0; i < n; i++ {
			p := rec[cowHeaderLen+i*cowPairLen:]
			chunk, slot := binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
			c.m[chunk] = slot
		}
		off += int64(size)
	}
	c.logSize = off
	if err := c.log.Truncate(c.logSize); err != nil {
		return err
	}
	used := map[uint64]bool{}
	for _, s := range c.m {
		used[s] = true
		c.next = max(c.next, s+1)
	}
	for s := uint64(0); s < c.next; s++ {
		if !used[s] {
			c.free = append(c.free, s)
		}
	}
	return nil
}

// record encodes one log record of pairs (chunk, slot).
func record(pairs [][2]uint64) []byte {
	rec := make([]byte, cowHeaderLen, cowHeaderLen+len(pairs)*cowPairLen+4)
	binary.LittleEndian.PutUint32(rec, cowMagic)
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(pairs)))
	for _, p := range pairs {
		rec = binary.LittleEndian.AppendUint64(rec, p[0])
		rec = binary.LittleEndian.AppendUint64(rec, p[1])
	}
	return binary.LittleEndian.AppendUint32(rec, crc32.Checksum(rec, iscsiwire.Castagnoli))
}

// compact replaces the log with the live map alone. The new log is
// written beside the old (.log.tmp) and synced, renamed over it, and the
// directory synced: a crash before the rename leaves the old log (and a
// .tmp that OpenCow removes), after it the new one; both map the same
// chunks to the same slots. c.mu is held, or c not shared yet.
func (c *CowBacking) compact() error {
	tmp := c.logPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	chunks := make([]uint64, 0, len(c.m))
	for ch := range c.m {
		chunks = append(chunks, ch)
	}
	slices.Sort(chunks)
	w := bufio.NewWriterSize(f, 64<<10)
	var size int64
	pairs := make([][2]uint64, 0, min(len(chunks), cowCompactRecord))
	for i := 0; i < len(chunks); i += cowCompactRecord {
		pairs = pairs[:0]
		for _, ch := range chunks[i:min(i+cowCompactRecord, len(chunks))] {
			pairs = append(pairs, [2]uint64{ch, c.m[ch]})
		}
		n, _ := w.Write(record(pairs)) // an error sticks: Flush returns it
		size += int64(n)
	}
	if err := errors.Join(w.Flush(), f.Sync()); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, c.logPath); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	// The log is the new file from here, whatever follows.
	old := c.log
	c.log, c.logSize = f, size
	old.Close()
	if err := syncDir(filepath.Dir(c.logPath)); err != nil {
		c.dirDirty = true
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func (c *CowBacking) Size() int64    { return c.size }
func (c *CowBacking) ReadOnly() bool { return false }
func (c *CowBacking) Sync() error    { return nil } // every write is durable when acknowledged

// Close closes the files.
func (c *CowBacking) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.base.Close(), c.delta.Close(), c.log.Close())
}

// DiskBytes reports what the machine's layer takes on disk, to count
// against a quota: the blocks allocated to the delta and the log (as du
// counts them; their sizes where the system does not tell). The base
// image is shared and not counted.
func (c *CowBacking) DiskBytes() (int64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var total int64
	for _, f := range []*os.File{c.delta, c.log} {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		total += allocated(fi)
	}
	return total, nil
}

// ReadAt reads from the delta where written, else from the base.
func (c *CowBacking) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > c.size {
		return 0, fmt.Errorf("cow: read %d bytes at %d beyond %d", len(p), off, c.size)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		chunk := uint64(pos / CowChunk)
		in := pos % CowChunk
		n := min(int64(len(p)-done), CowChunk-in)
		var err error
		if slot, ok := c.m[chunk]; ok {
			_, err = c.delta.ReadAt(p[done:done+int(n)], int64(slot)*CowChunk+in)
		} else {
			_, err = c.base.ReadAt(p[done:done+int(n)], pos)
		}
		if err != nil && err != io.EOF {
			return done, err
		}
		done += int(n)
	}
	return done, nil
}

// WriteAt writes p atomically: all of it or, after a crash, none.
func (c *CowBacking) WriteAt(p []byte, off int64) (int, error) {
	return c.writeVec([][]byte{p}, off)
}

// writeVec writes the pieces one after the other from off, atomically as
// one write: all of them or, after a crash, none.
func (c *CowBacking) writeVec(pieces [][]byte, off int64) (int, error) {
	total := 0
	for _, p := range pieces {
		total += len(p)
	}
	if off < 0 || off+int64(total) > c.size {
		return 0, fmt.Errorf("cow: write %d bytes at %d beyond %d", total, off, c.size)
	}
	if total == 0 {
		// No record: an empty one would end the log's replay.
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	type change struct{ chunk, slot uint64 }
	var changes []change
	var old []uint64
	fail := func(err error) (int, error) {
		// The new slots are referenced by no record: free again.
		for _, ch := range changes {
			c.free = append(c.free, ch.slot)
		}
		return 0, err
	}
	src := pieceReader{pieces: pieces}
	buf := make([]byte, CowChunk)
	for done := 0; done < total; {
		pos := off + int64(done)
		chunk := uint64(pos / CowChunk)
		in := pos % CowChunk
		n := min(int64(total-done), CowChunk-in)
		if n < CowChunk {
			// A partial chunk: start from its current contents.
			start := int64(chunk) * CowChunk
			if err := c.readChunk(chunk, buf, start); err != nil {
				return fail(err)
			}
		}
		src.fill(buf[in : in+n])
		slot := c.allocSlot()
		changes = append(changes, change{chunk, slot})
		if _, err := c.delta.WriteAt(buf, int64(slot)*CowChunk); err != nil {
			return fail(err)
		}
		if s, ok := c.m[chunk]; ok {
			old = append(old, s)
		}
		done += int(n)
	}
	if err := c.delta.Sync(); err != nil {
		return fail(err)
	}
	if c.dirDirty {
		// The log was renamed by a compaction whose directory sync
		// failed: a record in it is durable only once that is.
		if err := syncDir(filepath.Dir(c.logPath)); err != nil {
			return fail(err)
		}
		c.dirDirty = false
	}
	pairs := make([][2]uint64, len(changes))
	for i, ch := range changes {
		pairs[i] = [2]uint64{ch.chunk, ch.slot}
	}
	rec := record(pairs)
	if _, err := c.log.WriteAt(rec, c.logSize); err != nil {
		// The record may be durable in part or whole: its slots stay
		// taken (until the disk is opened again).
		return 0, err
	}
	if err := c.log.Sync(); err != nil {
		return 0, err
	}
	c.logSize += int64(len(rec))
	for _, ch := range changes {
		c.m[ch.chunk] = ch.slot
	}
	c.free = append(c.free, old...) // durable now: the old slots are unreferenced
	if c.logSize >= c.compactFloor && c.logSize > 2*compactedLen(len(c.m)) {
		if err := c.compact(); err != nil && !c.dirDirty {
			// The write is durable; try again once the log grew more.
			c.compactFloor = c.logSize + cowCompactMin
		} else {
			c.compactFloor = cowCompactMin
		}
	}
	return total, nil
}

// pieceReader hands out the bytes of pieces in order.
type pieceReader struct {
	pieces [][]byte
	i, off int // the next byte: pieces[i][off]
}

func (r *pieceReader) fill(dst []byte) {
	for len(dst) > 0 {
		k := copy(dst, r.pieces[r.i][r.off:])
		dst = dst[k:]
		if r.off += k; r.off == len(r.pieces[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
}

func (c *CowBacking) readChunk(chunk uint64, buf []byte, start int64) error {
	var err error
	if slot, ok := c.m[chunk]; ok {
		_, err = c.delta.ReadAt(buf, int64(slot)*CowChunk)
	} else {
		clear(buf)
		n := min(int64(CowChunk), c.size-start)
		_, err = c.base.ReadAt(buf[:n], start)
	}
	if err == io.EOF {
		err = nil
	}
	return err
}

// allocSlot takes a free slot, or a new one at the end of the delta. A
// slot freed by this same write is not reused before its record is
// durable: frees are added after the log sync.
func (c *CowBacking) allocSlot() uint64 {
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		return s
	}
	c.next++
	return c.next - 1
}

// Reset drops every write: the machine sees the base image again.
func (c *CowBacking) Reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.log.Truncate(0); err != nil {
		return err
	}
	if err := c.log.Sync(); err != nil {
		return err
	}
	if err := c.delta.Truncate(0); err != nil {
		return err
	}
	c.m, c.free, c.next, c.logSize = map[uint64]uint64{}, nil, 0, 0
	return nil
}
