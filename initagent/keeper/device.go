package keeper

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/internal/verity"
)

// device is what the keeper serves the kernel: the image, then its
// dm-verity tree (when it has one) from byte image.Size() on, so that one
// NBD device is both dm-verity's data and hash device and the tree is read
// on demand like the image.
type device struct {
	image, tree *fetch.RangeReader
	cacheBytes  int64 // the image reader's cache (prefetch stays within half)
	// rec records the kernel's reads for the working set report; nil
	// without a report URL.
	rec *recorder
}

// treeCacheBytes bounds the tree's RAM cache in lazy mode: dm-verity keeps
// the hash blocks it has checked in its own cache (dm-bufio), so the
// keeper's only spares it round trips for neighbouring blocks.
const treeCacheBytes = 4 << 20

// openDevice opens the image and its tree, both at once: each Open makes
// a first request.
func openDevice(ctx context.Context, img Image, logf func(string, ...any)) (*device, error) {
	if img.TreeURL != "" && (img.Size%verity.BlockSize != 0 || img.TreeSize <= 0 || img.TreeSize%verity.BlockSize != 0) {
		return nil, fmt.Errorf("image %s: a dm-verity tree behind an image needs both sizes in whole %d-byte blocks (image %d, tree %d bytes)", img.Name, verity.BlockSize, img.Size, img.TreeSize)
	}
	d := &device{cacheBytes: img.CacheBytes}
	if d.cacheBytes == 0 {
		d.cacheBytes = fetch.DefaultCacheBytes
	}
	treeErr := make(chan error, 1)
	if img.TreeURL != "" {
		go func() {
			var err error
			d.tree, err = fetch.OpenRange(ctx, nil, img.TreeURL, fetch.RangeOptions{ExpectSize: img.TreeSize, Mirrors: img.TreeMirrors, Fill: img.Fill, CacheBytes: treeCacheBytes, Logf: logf})
			if err != nil {
				err = fmt.Errorf("dm-verity tree of image %s: %w", img.Name, err)
			}
			treeErr <- err
		}()
	} else {
		treeErr <- nil
	}
	var err error
	d.image, err = fetch.OpenRange(ctx, nil, img.URL, fetch.RangeOptions{ExpectSize: img.Size, Mirrors: img.Mirrors, Fill: img.Fill, CacheBytes: img.CacheBytes, Logf: logf})
	if err != nil {
		err = fmt.Errorf("image %s: %w", img.Name, err)
	}
	if err := errors.Join(err, <-treeErr); err != nil {
		d.Close()
		return nil, err
	}
	if img.Report != "" {
		d.rec = newRecorder(d.image.ChunkSize(), img.Size, img.TreeSize, recordWindow)
	}
	return d, nil
}

// Size implements nbd.Backend: the image and the tree.
func (d *device) Size() int64 {
	n := d.image.Size()
	if d.tree != nil {
		n += d.tree.Size()
	}
	return n
}

// ReadAt implements nbd.Backend. A read across the end of the image reads
// from both. The kernel's reads are recorded for the working set.
func (d *device) ReadAt(p []byte, off int64) (int, error) {
	if d.rec != nil {
		d.rec.read(off, int64(len(p)))
	}
	split := d.image.Size()
	n := 0
	if off < split {
		m := int(min(int64(len(p)), split-off))
		k, err := d.image.ReadAt(p[:m], off)
		n += k
		if err != nil || m == len(p) {
			return n, err
		}
		p, off = p[m:], split
	}
	if d.tree == nil {
		return n, io.EOF
	}
	k, err := d.tree.ReadAt(p, off-split)
	return n + k, err
}

// filled waits for a fill of both readers to end, and says how.
func (d *device) filled() error {
	<-d.image.FillDone()
	err := d.image.FillErr()
	if d.tree != nil {
		<-d.tree.FillDone()
		err = errors.Join(err, d.tree.FillErr())
	}
	return err
}

// prefetchMax bounds what prefetch reads (within half the cache).
const prefetchMax = 8 << 20

// prefetch reads what the kernel needs first into the cache, while the
// agent is still setting up: a squashfs keeps its inode, directory,
// fragment and id tables at the end of the image, and mounting it and
// looking up the first paths read them all, each a round trip otherwise;
// with a tree, the level-0 hash blocks dm-verity checks them against (the
// upper levels are in the tree's first chunk, which Open fetched). Not a
// squashfs: nothing to do. Errors are the demand reads' to report.
func (d *device) prefetch(logf func(string, ...any)) {
	var sb [squashfsSuperblockSize]byte
	if _, err := d.image.ReadAt(sb[:], 0); err != nil {
		return
	}
	off, n, ok := squashfsTables(sb[:], d.image.Size())
	if !ok {
		return
	}
	n = min(n, prefetchMax, d.cacheBytes/2)
	if off+n > d.image.Size() || n <= 0 {
		return
	}
	done := make(chan struct{})
	if d.tree != nil {
		go func() {
			defer close(done)
			hoff, hn := verity.Level0Span(uint64(d.image.Size()/verity.BlockSize), off, n)
			if hn > 0 && hoff+hn <= d.tree.Size() {
				d.tree.ReadAt(make([]byte, hn), hoff)
			}
		}()
	} else {
		close(done)
	}
	d.image.ReadAt(make([]byte, n), off)
	<-done
}

// squashfsSuperblockSize is the bytes of a squashfs 4.0 superblock.
const squashfsSuperblockSize = 96

// squashfsTables finds the tables of the squashfs whose superblock is sb
// (linux/fs/squashfs/squashfs_fs.h): from the inode table's start to the
// filesystem's end (bytes_used), all within size. ok is false for
// anything else.
func squashfsTables(sb []byte, size int64) (off, n int64, ok bool) {
	const magic = 0x73717368 // "hsqs"
	if len(sb) < squashfsSuperblockSize || binary.LittleEndian.Uint32(sb[0:]) != magic || binary.LittleEndian.Uint16(sb[28:]) != 4 {
		return 0, 0, false
	}
	used := binary.LittleEndian.Uint64(sb[40:])
	inodes := binary.LittleEndian.Uint64(sb[64:])
	if inodes < squashfsSuperblockSize || used <= inodes || used > uint64(size) {
		return 0, 0, false
	}
	return int64(inodes), int64(used - inodes), true
}

// Close ends both readers.
func (d *device) Close() error {
	var err error
	if d.image != nil {
		err = d.image.Close()
	}
	if d.tree != nil {
		err = errors.Join(err, d.tree.Close())
	}
	return err
}
