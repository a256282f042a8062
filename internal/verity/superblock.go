package verity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The one format overboot builds and sets up. veritysetup can make others
// (hash_type 0, sha1, 512..65536-byte blocks); ParseSuperblock rejects them
// by field name rather than half-support them.
const (
	// BlockSize is the data and the hash block size in bytes.
	BlockSize = 4096
	// Algorithm is the hash, by its kernel crypto API name.
	Algorithm = "sha256"
	// HashType 1 is the "normal" format: the salt is prepended to each
	// hashed block (0 is the Chrome OS format, salt appended).
	HashType = 1
	// SuperblockVersion is the only version of the veritysetup superblock.
	SuperblockVersion = 1
	// SuperblockSize is the on-disk size of the superblock in bytes. It
	// sits at the start of the first hash block; the tree starts at the
	// next hash block (HashStartBlock).
	SuperblockSize = 512
	// HashStartBlock is where the tree starts on a hash device with the
	// superblock at offset 0, in BlockSize units: the kernel's
	// <hash_start_block>, veritysetup's VERITY_hash_offset_block.
	HashStartBlock = 1
	// MaxSaltSize is the room for the salt in the superblock, in bytes.
	MaxSaltSize = 256
	// DefaultSaltSize is the salt Build draws from crypto/rand, in bytes
	// (what veritysetup draws: the digest size).
	DefaultSaltSize = 32
	// MaxDataBlocks keeps the data size, in bytes, within an int64.
	MaxDataBlocks = math.MaxInt64 / BlockSize

	digestSize     = 32 // sha256
	hashesPerBlock = BlockSize / digestSize
)

// signature opens every superblock.
var signature = [8]byte{'v', 'e', 'r', 'i', 't', 'y', 0, 0}

// Superblock is veritysetup's on-disk header for a hash device, as the
// cryptsetup wiki (DMVerity, "Verity superblock format") and
// lib/verity/verity.c define it: 512 bytes, little-endian, packed:
//
//	offset size field
//	     0    8 signature        "verity\0\0"
//	     8    4 version          1
//	    12    4 hash_type        1
//	    16   16 uuid
//	    32   32 algorithm        "sha256", NUL-padded
//	    64    4 data_block_size  4096
//	    68    4 hash_block_size  4096
//	    72    8 data_blocks
//	    80    2 salt_size
//	    82    6 _pad1            zero
//	    88  256 salt             salt_size bytes, then zero
//	   344  168 _pad2            zero
//
// The fields fixed by this package's format (version, hash type,
// algorithm, block sizes) are constants above, not struct fields.
//
// The kernel never reads the superblock; it takes the table line (Target).
// Only the root hash is trusted: a superblock read from the hash device
// says what the tree claims to be, and a wrong salt or size there makes
// every block fail verification against a trusted root hash.
type Superblock struct {
	// UUID identifies the hash device (veritysetup dump prints it); any
	// value is valid.
	UUID [16]byte
	// DataBlocks is the number of BlockSize data blocks the tree covers.
	DataBlocks uint64
	// Salt is prepended to every hashed block; 0 to MaxSaltSize bytes.
	Salt []byte
}

// Field offsets, named as in struct verity_sb.
const (
	offVersion       = 8
	offHashType      = 12
	offUUID          = 16
	offAlgorithm     = 32
	offDataBlockSize = 64
	offHashBlockSize = 68
	offDataBlocks    = 72
	offSaltSize      = 80
	offPad1          = 82
	offSalt          = 88
	offPad2          = offSalt + MaxSaltSize
)

// MarshalBinary returns the 512-byte superblock.
func (sb *Superblock) MarshalBinary() ([]byte, error) {
	if err := sb.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	copy(b, signature[:])
	le.PutUint32(b[offVersion:], SuperblockVersion)
	le.PutUint32(b[offHashType:], HashType)
	copy(b[offUUID:], sb.UUID[:])
	copy(b[offAlgorithm:], Algorithm)
	le.PutUint32(b[offDataBlockSize:], BlockSize)
	le.PutUint32(b[offHashBlockSize:], BlockSize)
	le.PutUint64(b[offDataBlocks:], sb.DataBlocks)
	le.PutUint16(b[offSaltSize:], uint16(len(sb.Salt)))
	copy(b[offSalt:], sb.Salt)
	return b, nil
}

// validate checks the fields a caller sets.
func (sb *Superblock) validate() error {
	if sb.DataBlocks == 0 {
		return errors.New("verity superblock: data_blocks 0: the tree must cover at least one block")
	}
	if sb.DataBlocks > MaxDataBlocks {
		return fmt.Errorf("verity superblock: data_blocks %d: more than %d", sb.DataBlocks, uint64(MaxDataBlocks))
	}
	if len(sb.Salt) > MaxSaltSize {
		return fmt.Errorf("verity superblock: salt_size %d: more than %d", len(sb.Salt), MaxSaltSize)
	}
	return nil
}

// ParseSuperblock parses the superblock in the first SuperblockSize bytes
// of b (bytes after those are ignored). It checks every field, padding
// included, and an error names the first field that is wrong, so
// MarshalBinary of the result gives back b[:SuperblockSize].
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("verity superblock: %d bytes, want %d", len(b), SuperblockSize)
	}
	b = b[:SuperblockSize]
	le := binary.LittleEndian
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("verity superblock: %s "+format, append([]any{field}, args...)...)
	}
	if !bytes.Equal(b[:offVersion], signature[:]) {
		return nil, bad("signature", "%q: not a veritysetup superblock (want %q)", b[:offVersion], signature[:])
	}
	if v := le.Uint32(b[offVersion:]); v != SuperblockVersion {
		return nil, bad("version", "%d: unsupported (want %d)", v, SuperblockVersion)
	}
	if v := le.Uint32(b[offHashType:]); v != HashType {
		return nil, bad("hash_type", "%d: unsupported (want %d; 0 is the Chrome OS format)", v, HashType)
	}
	alg := b[offAlgorithm:offDataBlockSize]
	name, rest, _ := bytes.Cut(alg, []byte{0})
	if string(name) != Algorithm || len(rest) == 0 || !allZero(rest) {
		return nil, bad("algorithm", "%q: unsupported (want %q, NUL-padded)", bytes.TrimRight(alg, "\x00"), Algorithm)
	}
	if v := le.Uint32(b[offDataBlockSize:]); v != BlockSize {
		return nil, bad("data_block_size", "%d: unsupported (want %d)", v, BlockSize)
	}
	if v := le.Uint32(b[offHashBlockSize:]); v != BlockSize {
		return nil, bad("hash_block_size", "%d: unsupported (want %d)", v, BlockSize)
	}
	sb := &Superblock{DataBlocks: le.Uint64(b[offDataBlocks:])}
	copy(sb.UUID[:], b[offUUID:offAlgorithm])
	if sb.DataBlocks == 0 || sb.DataBlocks > MaxDataBlocks {
		return nil, bad("data_blocks", "%d: out of range (1 to %d)", sb.DataBlocks, uint64(MaxDataBlocks))
	}
	saltSize := int(le.Uint16(b[offSaltSize:]))
	if saltSize > MaxSaltSize {
		return nil, bad("salt_size", "%d: more than %d", saltSize, MaxSaltSize)
	}
	if !allZero(b[offPad1:offSalt]) {
		return nil, bad("_pad1", "%x: not zero", b[offPad1:offSalt])
	}
	if saltSize > 0 {
		sb.Salt = bytes.Clone(b[offSalt : offSalt+saltSize])
	}
	if !allZero(b[offSalt+saltSize : offPad2]) {
		return nil, bad("salt", "not zero after salt_size (%d) bytes", saltSize)
	}
	if !allZero(b[offPad2:]) {
		return nil, bad("_pad2", "not zero")
	}
	return sb, nil
}

// ReadSuperblock reads and parses the superblock at offset 0 of a hash
// device.
func ReadSuperblock(hash io.ReaderAt) (*Superblock, error) {
	b := make([]byte, SuperblockSize)
	if err := readFull(hash, b, 0); err != nil {
		return nil, fmt.Errorf("read verity superblock: %w", err)
	}
	return ParseSuperblock(b)
}

// readFull reads len(b) bytes at off. An io.ReaderAt may return io.EOF
// with a full read at the end of its input; a short read is
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// UUIDString formats the UUID the way veritysetup dump prints it.
func (sb *Superblock) UUIDString() string {
	u := sb.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
