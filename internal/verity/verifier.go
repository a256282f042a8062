package verity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrCorrupt is what every *CorruptionError matches with errors.Is.
var ErrCorrupt = errors.New("dm-verity hash mismatch")

// A CorruptionError reports a data block that does not verify against
// the root hash.
type CorruptionError struct {
	// Block is the data block that was being verified.
	Block int64
	// InTree reports that a hash block, not the data block, failed: the
	// hash device is corrupt or does not belong to the root hash.
	InTree bool
	// HashBlock is the failing hash block, counted in BlockSize blocks
	// from the start of the hash device (the superblock is block 0), when
	// InTree.
	HashBlock int64
}

func (e *CorruptionError) Error() string {
	if e.InTree {
		return fmt.Sprintf("verify data block %d: hash block %d of the hash device does not match the tree: wrong hash device for this root hash, or it is corrupt", e.Block, e.HashBlock)
	}
	return fmt.Sprintf("verify data block %d: hash mismatch: the data block is corrupt", e.Block)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// maxCachedBlocks bounds the Verifier's cache of verified hash blocks:
// 4096 blocks, 16 MiB, cover 2 GiB of data at level 0.
const maxCachedBlocks = 4096

// A Verifier checks data blocks against a hash tree and its root hash,
// walking up the levels as the kernel does (verity_verify_level) and
// keeping the hash blocks it has verified, so the next block under the
// same hash block costs one sha256. It is safe for concurrent use.
type Verifier struct {
	hash io.ReaderAt
	root []byte
	salt []byte
	l    layout

	maxCached int // cache size bound, in blocks

	mu    sync.Mutex        // guards cache
	cache map[uint64][]byte // verified hash blocks by hash device block
}

// NewVerifier returns a Verifier for the hash device hash (superblock at
// offset 0, the tree from HashStartBlock, as Build and veritysetup format
// write it), the trusted rootHash, and the superblock sb (from the boot
// document, or ReadSuperblock: a superblock that does not match the tree
// fails every block). For a hash device that starts at an offset of a
// larger file, pass an io.SectionReader.
func NewVerifier(hash io.ReaderAt, rootHash []byte, sb *Superblock) (*Verifier, error) {
	if len(rootHash) != digestSize {
		return nil, fmt.Errorf("verity: root hash of %d bytes, want %d (sha256)", len(rootHash), digestSize)
	}
	if err := sb.validate(); err != nil {
		return nil, err
	}
	l, err := newLayout(sb.DataBlocks)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return &Verifier{
		hash:      hash,
		root:      bytes.Clone(rootHash),
		salt:      bytes.Clone(sb.Salt),
		l:         l,
		maxCached: maxCachedBlocks,
		cache:     map[uint64][]byte{},
	}, nil
}

// VerifyBlock checks data block index (BlockSize bytes). A mismatch is a
// *CorruptionError naming the block; an error reading the hash device is
// returned wrapped.
func (v *Verifier) VerifyBlock(index int64, block []byte) error {
	if index < 0 || uint64(index) >= v.l.dataBlocks {
		return fmt.Errorf("verify data block %d: out of range (the tree covers %d blocks)", index, v.l.dataBlocks)
	}
	if len(block) != BlockSize {
		return fmt.Errorf("verify data block %d: %d bytes, want %d", index, len(block), BlockSize)
	}
	var want []byte
	if v.l.levels() == 0 {
		want = v.root
	} else {
		hb, err := v.hashBlock(index, 0, uint64(index)/hashesPerBlock)
		if err != nil {
			return err
		}
		i := uint64(index) % hashesPerBlock * digestSize
		want = hb[i : i+digestSize]
	}
	var d [digestSize]byte
	if !bytes.Equal(sum(sha256.New(), v.salt, block, d[:0]), want) {
		return &CorruptionError{Block: index}
	}
	return nil
}

// hashBlock returns hash block idx of level, verified against its parent
// (recursively, up to the root hash), for data block data's errors.
func (v *Verifier) hashBlock(data int64, level int, idx uint64) ([]byte, error) {
	pos := v.l.start[level] + idx
	v.mu.Lock()
	hb, ok := v.cache[pos]
	v.mu.Unlock()
	if ok {
		return hb, nil
	}

	var want []byte
	if level == v.l.levels()-1 {
		want = v.root
	} else {
		parent, err := v.hashBlock(data, level+1, idx/hashesPerBlock)
		if err != nil {
			return nil, err
		}
		i := idx % hashesPerBlock * digestSize
		want = parent[i : i+digestSize]
	}
	hb = make([]byte, BlockSize)
	if err := readFull(v.hash, hb, int64(pos)*BlockSize); err != nil {
		return nil, fmt.Errorf("verify data block %d: read hash block %d: %w", data, pos, err)
	}
	var d [digestSize]byte
	if !bytes.Equal(sum(sha256.New(), v.salt, hb, d[:0]), want) {
		return nil, &CorruptionError{Block: data, InTree: true, HashBlock: int64(pos)}
	}

	v.mu.Lock()
	for k := range v.cache { // drop arbitrary blocks to make room
		if len(v.cache) < v.maxCached {
			break
		}
		delete(v.cache, k)
	}
	v.cache[pos] = hb
	v.mu.Unlock()
	return hb, nil
}

// VerifyAll reads and checks every data block of data, in order, and
// returns the first error.
func (v *Verifier) VerifyAll(data io.ReaderAt) error {
	block := make([]byte, BlockSize)
	for i := int64(0); uint64(i) < v.l.dataBlocks; i++ {
		if err := readFull(data, block, i*BlockSize); err != nil {
			return fmt.Errorf("verify data block %d: read: %w", i, err)
		}
		if err := v.VerifyBlock(i, block); err != nil {
			return err
		}
	}
	return nil
}
