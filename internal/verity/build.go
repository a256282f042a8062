package verity

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Params are the choices Build leaves to its caller. The zero value is
// the default: a random salt, a random UUID, a worker per CPU.
type Params struct {
	// Salt is prepended to every hashed block. Empty means DefaultSaltSize
	// bytes from crypto/rand; at most MaxSaltSize bytes. (The kernel and
	// veritysetup accept an empty salt; Build does not make one.)
	Salt []byte
	// UUID names the hash device in its superblock. Zero means a random
	// version 4 UUID, as veritysetup format draws.
	UUID [16]byte
	// Workers is the number of goroutines hashing blocks. Zero means
	// runtime.GOMAXPROCS(0).
	Workers int
}

// Tree is what Build wrote: the superblock, the root hash to trust, and
// the hash device's size.
type Tree struct {
	Superblock Superblock
	// RootHash is the sha256 of the salt and the top hash block (of the
	// salt and the data block, for a single data block). The boot
	// document carries it; it is the only trusted value.
	RootHash []byte
	// HashSize is the number of bytes written to the hash device.
	HashSize int64
}

// batchBlocks is how many blocks a worker hashes per job: 1 MiB of data,
// which fills two whole hash blocks.
const batchBlocks = 2 * hashesPerBlock

// Build hashes dataSize bytes of data and writes the hash device to hash:
// the superblock, padded to a hash block, then the hash tree, top level
// first, each level padded with zeros to whole hash blocks. This is what
// `veritysetup format DATA HASH` writes (format 1, sha256, 4096-byte
// blocks, the superblock at hash offset 0), so `veritysetup verify DATA
// HASH ROOTHASH` and the kernel's dm-verity accept it.
//
// dataSize must be a positive multiple of BlockSize: the caller pads the
// image (a squashfs image is padded to 4 KiB). Build keeps the tree in
// memory until it is complete, about dataSize/128 bytes, because the top
// level is written first; data is read with parallel ReadAt calls.
func Build(data io.ReaderAt, dataSize int64, hash io.Writer, p Params) (*Tree, error) {
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return nil, fmt.Errorf("verity: data size %d bytes is not a positive multiple of %d: pad the image with zeros to a multiple of %d", dataSize, BlockSize, BlockSize)
	}
	sb := Superblock{UUID: p.UUID, DataBlocks: uint64(dataSize / BlockSize), Salt: p.Salt}
	if len(sb.Salt) == 0 {
		sb.Salt = make([]byte, DefaultSaltSize)
		if _, err := rand.Read(sb.Salt); err != nil {
			return nil, fmt.Errorf("verity: salt: %w", err)
		}
	} else {
		sb.Salt = append([]byte(nil), sb.Salt...)
	}
	if sb.UUID == ([16]byte{}) {
		if _, err := rand.Read(sb.UUID[:]); err != nil {
			return nil, fmt.Errorf("verity: uuid: %w", err)
		}
		sb.UUID[6] = sb.UUID[6]&0x0f | 0x40 // version 4
		sb.UUID[8] = sb.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	}
	head, err := sb.MarshalBinary()
	if err != nil {
		return nil, err // names the field: "verity superblock: salt_size ..."
	}
	l, err := newLayout(sb.DataBlocks)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	workers := p.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}

	// tree holds the hash device after the superblock's block: level i is
	// tree[(start[i]-HashStartBlock)*BlockSize:][:size[i]*BlockSize].
	tree := make([]byte, (l.blocks-HashStartBlock)*BlockSize)
	level := func(i int) []byte {
		off := (l.start[i] - HashStartBlock) * BlockSize
		return tree[off : off+l.size[i]*BlockSize]
	}

	var root []byte
	if l.levels() == 0 {
		// One data block: its digest is the root hash.
		root = make([]byte, digestSize)
		err = hashBlocks(1, 1, sb.Salt, root, readerSource(data))
	} else {
		err = hashBlocks(sb.DataBlocks, workers, sb.Salt, level(0), readerSource(data))
		for i := 1; err == nil && i < l.levels(); i++ {
			err = hashBlocks(l.size[i-1], workers, sb.Salt, level(i), bytesSource(level(i-1)))
		}
		if err == nil {
			root = make([]byte, digestSize)
			err = hashBlocks(1, 1, sb.Salt, root, bytesSource(level(l.levels()-1)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}

	t := &Tree{Superblock: sb, RootHash: root}
	block0 := make([]byte, BlockSize)
	copy(block0, head)
	for _, b := range [][]byte{block0, tree} {
		n, err := hash.Write(b)
		t.HashSize += int64(n)
		if err != nil {
			return nil, fmt.Errorf("verity: write hash device: %w", err)
		}
	}
	return t, nil
}

// A blockSource fills buf with the len(buf)/BlockSize blocks starting at
// block first, or returns the slice itself when it has the bytes at hand.
type blockSource func(first uint64, buf []byte) ([]byte, error)

func readerSource(r io.ReaderAt) blockSource {
	return func(first uint64, buf []byte) ([]byte, error) {
		off := int64(first) * BlockSize
		if err := readFull(r, buf, off); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("read data at offset %d: ends before the size given: %w", off, err)
			}
			return nil, fmt.Errorf("read data at offset %d: %w", off, err)
		}
		return buf, nil
	}
}

func bytesSource(b []byte) blockSource {
	return func(first uint64, buf []byte) ([]byte, error) {
		return b[first*BlockSize:][:len(buf)], nil
	}
}

// hashBlocks writes sha256(salt || block) for blocks 0..n-1 of src into
// out, digest i at out[i*digestSize:], with a pool of workers each taking
// batchBlocks blocks at a time. Digests are packed (format 1 pads each
// digest to a power of two, which sha256 already is), and a hash block's
// unused tail stays zero as out comes zeroed.
func hashBlocks(n uint64, workers int, salt, out []byte, src blockSource) error {
	batches := (n + batchBlocks - 1) / batchBlocks
	if uint64(workers) > batches {
		workers = int(batches)
	}
	var (
		next    atomic.Uint64 // next batch to take
		failed  atomic.Bool   // stop taking batches
		errOnce sync.Once
		first   error // set once, read after wg.Wait
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			buf := make([]byte, batchBlocks*BlockSize)
			for !failed.Load() {
				b := next.Add(1) - 1
				if b >= batches {
					return
				}
				lo := b * batchBlocks
				hi := min(lo+batchBlocks, n)
				blocks, err := src(lo, buf[:(hi-lo)*BlockSize])
				if err != nil {
					errOnce.Do(func() { first = err })
					failed.Store(true)
					return
				}
				for i := lo; i < hi; i++ {
					sum(h, salt, blocks[(i-lo)*BlockSize:][:BlockSize], out[i*digestSize:i*digestSize])
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// sum appends sha256(salt || block) to dst: hash_type 1 prepends the salt.
func sum(h hash.Hash, salt, block, dst []byte) []byte {
	h.Reset()
	h.Write(salt)
	h.Write(block)
	return h.Sum(dst)
}

// ParamsFor returns the Params overboot builds an image's tree with: salt
// and UUID derived from the image's digest (hex), so that a tree is
// reproducible from its image alone (the server and `overboot mkimage
// verity` make the same one) while different images get different salts.
func ParamsFor(imageHex string) Params {
	salt := sha256.Sum256([]byte("overboot dm-verity salt\x00" + imageHex))
	u := sha256.Sum256([]byte("overboot dm-verity uuid\x00" + imageHex))
	var id [16]byte
	copy(id[:], u[:16])
	id[6] = id[6]&0x0f | 0x40 // a version 4 layout, as veritysetup draws
	id[8] = id[8]&0x3f | 0x80
	return Params{Salt: salt[:], UUID: id}
}
