package verity

import "fmt"

// layout places the levels of a hash tree on the hash device, as the
// kernel (drivers/md/dm-verity-target.c, verity_ctr) and veritysetup
// (lib/verity/verity_hash.c, hash_levels) both compute it:
//
//   - levels is the smallest n with (dataBlocks-1) >> (7*n) == 0, 128
//     sha256 digests filling a 4096-byte hash block; one data block needs
//     no hash block at all, its digest is the root hash;
//   - level i (0 nearest the data) has ceil(dataBlocks / 128^(i+1)) blocks;
//   - the top level comes first on the device, level 0 last, each a run
//     of whole hash blocks after the superblock's block.
type layout struct {
	dataBlocks uint64
	// start and size of each level, in hash blocks from the start of the
	// hash device; index 0 is the level nearest the data.
	start, size []uint64
	// blocks is the hash device's size in hash blocks, superblock included.
	blocks uint64
}

func newLayout(dataBlocks uint64) (layout, error) {
	if dataBlocks == 0 || dataBlocks > MaxDataBlocks {
		return layout{}, fmt.Errorf("data blocks %d: out of range (1 to %d)", dataBlocks, uint64(MaxDataBlocks))
	}
	const bits = 7 // log2(hashesPerBlock)
	levels := 0
	for bits*levels < 64 && (dataBlocks-1)>>(bits*levels) != 0 {
		levels++
	}
	l := layout{
		dataBlocks: dataBlocks,
		start:      make([]uint64, levels),
		size:       make([]uint64, levels),
	}
	pos := uint64(HashStartBlock)
	for i := levels - 1; i >= 0; i-- {
		shift := uint(bits * (i + 1))
		n := dataBlocks >> shift
		if dataBlocks&(1<<shift-1) != 0 {
			n++
		}
		l.start[i], l.size[i] = pos, n
		pos += n
	}
	l.blocks = pos
	return l, nil
}

// levels is the number of hash levels: 0 for a single data block.
func (l layout) levels() int { return len(l.start) }

// HashDeviceSize is the size in bytes of the hash device Build writes for
// dataBlocks data blocks: the superblock's block and the tree (veritysetup
// dump's "Hash device size"). It is 0 when dataBlocks is out of range.
func HashDeviceSize(dataBlocks uint64) int64 {
	l, err := newLayout(dataBlocks)
	if err != nil {
		return 0
	}
	return int64(l.blocks) * BlockSize
}

// Level0Span is where on the hash device (superblock at offset 0) the
// level-0 hash blocks for data bytes [off, off+n) lie, as a byte range:
// the blocks dm-verity reads first to check those data blocks. It is
// empty for a range outside the data or a tree of one level or none.
func Level0Span(dataBlocks uint64, off, n int64) (hashOff, hashLen int64) {
	l, err := newLayout(dataBlocks)
	if err != nil || l.levels() == 0 || off < 0 || n <= 0 {
		return 0, 0
	}
	first := uint64(off) / BlockSize
	last := (uint64(off) + uint64(n) - 1) / BlockSize
	if first >= dataBlocks {
		return 0, 0
	}
	last = min(last, dataBlocks-1)
	const perBlock = BlockSize / digestSize
	hFirst, hLast := first/perBlock, last/perBlock
	return int64(l.start[0]+hFirst) * BlockSize, int64(hLast-hFirst+1) * BlockSize
}
