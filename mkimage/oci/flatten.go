package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// Why our own flattening rather than go-containerregistry's mutate.Extract:
// v0.22.1 does apply opaque whiteouts (ggcr#1897, fixed by PR #2372), but
// Extract walks the layers top-down, so a hard link to a file of a lower
// layer comes before the file it names and a directory's entry after its
// children (mksquashfs -tar wants both the other way round); it keeps an
// entry whose parent a lower layer made a symbolic link (written through
// the link by a runtime that extracts layer by layer); it drops links it
// finds unsafe silently; and it has no size bounds and no clamp of times.
// Flattener reads each layer twice instead: once to build the final tree
// (headers only), once to write the surviving entries bottom-up.

// Errors callers can branch on with errors.Is.
var (
	// ErrUnsafe: a layer names a path outside the root, or writes through
	// a symbolic link.
	ErrUnsafe = errors.New("unsafe layer entry")
	// ErrTooLarge: a layer, or all of them, are over a size limit.
	ErrTooLarge = errors.New("over the size limit")
	// ErrBadLayer: a layer is not what its manifest says (digest), or not
	// a usable tar.
	ErrBadLayer = errors.New("bad layer")
)

// Default limits (zero Limits fields).
const (
	DefaultMaxLayerSize = 8 << 30  // bytes
	DefaultMaxTotalSize = 64 << 30 // bytes
)

// Limits bound what an import reads. A layer over MaxLayerSize (the size
// its manifest claims, compressed, checked before reading; or its bytes
// once uncompressed, checked while reading) is refused, so is an image
// whose layers add up to more than MaxTotalSize.
type Limits struct {
	MaxLayerSize int64 // bytes; 0 = DefaultMaxLayerSize
	MaxTotalSize int64 // bytes; 0 = DefaultMaxTotalSize
}

func (l Limits) layer() int64 { return cmpOr(l.MaxLayerSize, DefaultMaxLayerSize) }
func (l Limits) total() int64 { return cmpOr(l.MaxTotalSize, DefaultMaxTotalSize) }

func cmpOr(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

// Layer is one layer of an image, lowest first in a list.
type Layer struct {
	Name   string // for messages, e.g. the layer's digest
	DiffID string // sha256:HEX of the uncompressed tar ("" = not checked)
	Size   int64  // bytes the manifest claims (compressed); -1 = unknown
	// Open returns the layer's uncompressed tar. Flattener calls it
	// once per pass and reads it to the end.
	Open func() (io.ReadCloser, error)
}

// Whiteout names (OCI image spec, layer.md "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh." // AUFS metadata (.wh..wh.plnk, ...): never part of the tree
	opaqueWhiteout = ".wh..wh..opq"
)

// Flattener merges layers into one tar the way a container runtime applies
// them: each layer over the ones below, .wh.NAME deleting NAME of the
// layers below, DIR/.wh..wh..opq hiding everything the layers below put in
// DIR, a non-directory replacing whatever was at its path, a directory
// merged into a directory. Hard links are kept across layers; symbolic
// links are stored as they are (their targets are never followed);
// ownership, modes (setuid too), device numbers and the xattr PAX records
// (SCHILY.xattr.*, security.capability among them) are copied.
//
// The output is deterministic: entries in layer order (a hard-linked
// file's paths sorted, the first carrying the data), directories before
// their contents, with the final layer's attributes; directories no entry
// describes are made 0755 root:root, the way runtimes make them. With
// Epoch set, no time is later than it (SOURCE_DATE_EPOCH).
//
// It refuses: a name with a ".." component; an entry whose parent is a
// symbolic link or a file in the tree so far (a runtime would write
// through the link, possibly outside the root); a hard link to something
// absent or to a directory; layers over the limits; a layer whose
// content does not match its DiffID. A whiteout for a path not present is
// ignored, as runtimes do.
type Flattener struct {
	Layers []Layer
	Epoch  *time.Time // clamp times to it; nil = the layers' own
	Limits Limits
	// Cache is a directory where the first pass keeps each layer's
	// uncompressed tar once its DiffID is checked; later passes read
	// those instead of decompressing and hashing the layers again ("":
	// every pass reads the layers). Measured: with three passes (the
	// tree, the build's check, the build), decompressing each gzip layer
	// three times made an import of a 172 MB image 1.06x the by-hand path
	// (docs/benchmarks.md).
	Cache string

	once   sync.Once
	tree   *tree
	err    error
	mu     sync.Mutex
	cached map[int]string // layer index: its checked tar in Cache
}

// node is a path in the flattened tree.
type node struct {
	name     string
	layer    int         // the last layer that set it
	dir      bool        // a directory (else ino is set)
	hdr      *tar.Header // a directory's attributes; nil: made implicitly
	children map[string]*node
	parent   *node
	ino      *inode
}

// inode is a non-directory with its hard links: where its entry is, and
// the paths that name it in the final tree.
type inode struct {
	pos   [2]int // layer, entry index of the entry that has its data
	hdr   *tar.Header
	paths map[*node]bool
}

// tree is the result of the first pass.
type tree struct {
	root  *node
	at    map[[2]int]*inode // inodes that survive, by their entry
	count int               // nodes in the final tree, root included
}

// WriteTar writes the flattened layers to w as one plain tar archive
// (mkimage.TarSource). The first call reads every layer to build the tree;
// each call then reads them again to copy the data.
func (f *Flattener) WriteTar(ctx context.Context, w io.Writer) error {
	f.once.Do(func() { f.tree, f.err = f.index(ctx) })
	if f.err != nil {
		return f.err
	}
	return f.write(ctx, w)
}

// checkSizes refuses layers whose claimed sizes are over the limits,
// before anything is read.
func (f *Flattener) checkSizes() error {
	var total int64
	for i, l := range f.Layers {
		if l.Size > f.Limits.layer() {
			return fmt.Errorf("layer %d (%s) claims %d bytes, more than the limit of %d (--max-layer-size): %w", i+1, l.Name, l.Size, f.Limits.layer(), ErrTooLarge)
		}
		if l.Size > 0 {
			total += l.Size
		}
		if total > f.Limits.total() {
			return fmt.Errorf("layers 1 to %d claim %d bytes, more than the limit of %d for the image (--max-total-size): %w", i+1, total, f.Limits.total(), ErrTooLarge)
		}
	}
	return nil
}

// layerReader reads a layer's tar, counting its bytes against the limits
// and hashing them for the DiffID check at the end.
type layerReader struct {
	r       io.Reader
	h       hash.Hash
	n       int64
	limit   int64
	total   *int64
	tlimit  int64
	layer   int
	name    string
	hitEdge error
}

func (l *layerReader) Read(p []byte) (int, error) {
	if l.hitEdge != nil {
		return 0, l.hitEdge
	}
	n, err := l.r.Read(p)
	l.h.Write(p[:n])
	l.n += int64(n)
	*l.total += int64(n)
	switch {
	case l.n > l.limit:
		l.hitEdge = fmt.Errorf("layer %d (%s): more than %d bytes uncompressed (--max-layer-size): %w", l.layer+1, l.name, l.limit, ErrTooLarge)
		return n, l.hitEdge
	case *l.total > l.tlimit:
		l.hitEdge = fmt.Errorf("layers 1 to %d: more than %d bytes uncompressed (--max-total-size): %w", l.layer+1, l.tlimit, ErrTooLarge)
		return n, l.hitEdge
	}
	return n, err
}

// eachLayer opens layer i, hands its tar reader to fn, then reads the
// rest and checks the layer's DiffID.
func (f *Flattener) eachLayer(i int, total *int64, fn func(tr *tar.Reader) error) error {
	l := f.Layers[i]
	f.mu.Lock()
	kept := f.cached[i]
	f.mu.Unlock()
	if kept != "" {
		// Checked by an earlier pass, within the limits.
		kf, err := os.Open(kept)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, l.Name, err)
		}
		defer kf.Close()
		return fn(tar.NewReader(kf))
	}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %d (%s): %w", i+1, l.Name, err)
	}
	defer rc.Close()
	lr := &layerReader{r: rc, h: sha256.New(), limit: f.Limits.layer(), total: total, tlimit: f.Limits.total(), layer: i, name: l.Name}
	var r io.Reader = lr
	var keep *os.File
	if f.Cache != "" {
		if err := os.MkdirAll(f.Cache, 0o700); err != nil {
			return err
		}
		if keep, err = os.CreateTemp(f.Cache, "layer-*.tar"); err != nil {
			return err
		}
		defer func() {
			keep.Close()
			f.mu.Lock()
			if f.cached[i] != keep.Name() {
				os.Remove(keep.Name()) // not checked: never read again
			}
			f.mu.Unlock()
		}()
		r = io.TeeReader(lr, keep)
	}
	if err := fn(tar.NewReader(r)); err != nil {
		if lr.hitEdge != nil {
			return lr.hitEdge
		}
		return err
	}
	// Drain what follows the end-of-archive blocks, so the digest covers
	// all of the layer (and a verifying reader below reaches its EOF).
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("layer %d (%s): %w", i+1, l.Name, err)
	}
	if l.DiffID != "" {
		if got := "sha256:" + hex.EncodeToString(lr.h.Sum(nil)); got != l.DiffID {
			return fmt.Errorf("layer %d (%s): content is %s, the image says %s: corrupted or changed: %w", i+1, l.Name, got, l.DiffID, ErrBadLayer)
		}
	}
	if keep != nil {
		f.mu.Lock()
		if f.cached == nil {
			f.cached = map[int]string{}
		}
		f.cached[i] = keep.Name()
		f.mu.Unlock()
	}
	return nil
}

// cleanName turns a layer entry's name into its path in the tree: leading
// "/" and "./" go, "." is the root; a ".." component is refused.
func cleanName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q: a \"..\" component would leave the root: %w", name, ErrUnsafe)
		}
	}
	p := strings.TrimLeft(path.Clean("/"+name), "/")
	if p == "" {
		p = "."
	}
	return p, nil
}

// index is the first pass: the final tree, from the headers.
func (f *Flattener) index(ctx context.Context) (*tree, error) {
	if err := f.checkSizes(); err != nil {
		return nil, err
	}
	t := &tree{root: &node{name: ".", dir: true, layer: -1, children: map[string]*node{}}}
	var total int64
	for i := range f.Layers {
		err := f.eachLayer(i, &total, func(tr *tar.Reader) error {
			for j := 0; ; j++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("layer %d (%s): read tar: %v: %w", i+1, f.Layers[i].Name, err, ErrBadLayer)
				}
				if err := t.apply(i, j, h); err != nil {
					return fmt.Errorf("layer %d (%s): entry %q: %w", i+1, f.Layers[i].Name, h.Name, err)
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	t.at = map[[2]int]*inode{}
	t.walk(t.root, func(n *node) {
		t.count++
		if n.ino != nil && len(n.ino.paths) > 0 {
			t.at[n.ino.pos] = n.ino
		}
	})
	return t, nil
}

// walk calls fn for n and everything under it, in sorted order.
func (t *tree) walk(n *node, fn func(*node)) {
	fn(n)
	for _, k := range slices.Sorted(mapKeys(n.children)) {
		t.walk(n.children[k], fn)
	}
}

func mapKeys(m map[string]*node) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// lookup finds the node at p without following symbolic links; nil when
// absent.
func (t *tree) lookup(p string) *node {
	n := t.root
	if p == "." {
		return n
	}
	for _, c := range strings.Split(p, "/") {
		if !n.dir {
			return nil
		}
		n = n.children[c]
		if n == nil {
			return nil
		}
	}
	return n
}

// parentOf returns the directory that holds p, making missing directories
// (implicitly, in layer i). A symbolic link or a file on the way is refused:
// writing there would go through it.
func (t *tree) parentOf(i int, p string) (*node, error) {
	n := t.root
	dir := path.Dir(p)
	if dir == "." {
		return n, nil
	}
	for _, c := range strings.Split(dir, "/") {
		next := n.children[c]
		if next == nil {
			next = &node{name: path.Join(n.name, c), dir: true, layer: i, parent: n, children: map[string]*node{}}
			n.children[c] = next
		}
		if !next.dir {
			what := "a file"
			if next.ino.hdr.Typeflag == tar.TypeSymlink {
				what = fmt.Sprintf("a symbolic link (to %q)", next.ino.hdr.Linkname)
			}
			return nil, fmt.Errorf("its parent %s is %s: refusing to write through it: %w", next.name, what, ErrUnsafe)
		}
		n = next
	}
	return n, nil
}

// remove takes n and everything under it out of the tree.
func (t *tree) remove(n *node) {
	if n.ino != nil {
		delete(n.ino.paths, n)
	}
	for _, c := range n.children {
		t.remove(c)
	}
	if n.parent != nil {
		delete(n.parent.children, path.Base(n.name))
	}
}

// pruneLower removes what layers below i put under directory d (an opaque
// directory, or one whited out and made again in layer i).
func (t *tree) pruneLower(i int, d *node) {
	for _, c := range d.children {
		switch {
		case c.layer < i:
			t.remove(c)
		case c.dir:
			t.pruneLower(i, c)
		}
	}
}

// apply adds entry j of layer i to the tree.
func (t *tree) apply(i, j int, h *tar.Header) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	base := path.Base(name)
	switch {
	case base == opaqueWhiteout:
		if d := t.lookup(path.Dir(name)); d != nil && d.dir {
			t.pruneLower(i, d)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		// A whiteout for a path not present is ignored, as runtimes do.
		n := t.lookup(path.Join(path.Dir(name), strings.TrimPrefix(base, whiteoutPrefix)))
		switch {
		case n == nil || n == t.root:
		case n.layer < i:
			t.remove(n)
		case n.dir:
			t.pruneLower(i, n)
		}
		return nil
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		h.Typeflag = tar.TypeReg // the reader expands sparse files
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("type %q not supported: %w", h.Typeflag, ErrBadLayer)
	}
	if name == "." {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("the root is not a directory: %w", ErrBadLayer)
		}
		t.root.hdr, t.root.layer = h, i
		return nil
	}
	parent, err := t.parentOf(i, name)
	if err != nil {
		return err
	}
	var ino *inode
	if h.Typeflag == tar.TypeLink {
		target, err := cleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		tn := t.lookup(target)
		switch {
		case tn == nil:
			return fmt.Errorf("hard link to %q, which is not in the layers so far: %w", h.Linkname, ErrBadLayer)
		case tn.dir:
			return fmt.Errorf("hard link to the directory %q: %w", h.Linkname, ErrBadLayer)
		case tn.name == name:
			return nil
		}
		ino = tn.ino
	}
	old := parent.children[base]
	if old != nil {
		if old.dir && h.Typeflag == tar.TypeDir {
			// A directory over a directory: merged, its attributes replaced.
			old.hdr, old.layer = h, i
			return nil
		}
		t.remove(old)
	}
	n := &node{name: name, layer: i, parent: parent}
	switch {
	case h.Typeflag == tar.TypeDir:
		n.dir, n.hdr, n.children = true, h, map[string]*node{}
	case ino == nil:
		ino = &inode{pos: [2]int{i, j}, hdr: h, paths: map[*node]bool{}}
		fallthrough
	default:
		n.ino = ino
		ino.paths[n] = true
	}
	parent.children[base] = n
	return nil
}

// write is the second pass: the surviving entries, in layer order.
func (f *Flattener) write(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	emitted := map[*node]bool{}
	var writeDirs func(n *node) error
	// writeDirs writes n's directory entry, and its parents' first.
	writeDirs = func(n *node) error {
		if emitted[n] {
			return nil
		}
		if n.parent != nil {
			if err := writeDirs(n.parent); err != nil {
				return err
			}
		}
		emitted[n] = true
		h := n.hdr
		if h == nil {
			if n == f.tree.root {
				return nil // mkimage gives an undescribed root 0755
			}
			h = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}
			if f.Epoch != nil {
				h.ModTime = *f.Epoch
			} else {
				h.ModTime = time.Unix(0, 0)
			}
		}
		return tw.WriteHeader(f.outHeader(h, n.name))
	}
	// The root's own entry first (mkimage takes the root's mode from it).
	if err := writeDirs(f.tree.root); err != nil {
		return err
	}
	var total int64
	for i := range f.Layers {
		err := f.eachLayer(i, &total, func(tr *tar.Reader) error {
			for j := 0; ; j++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("layer %d (%s): read tar: %v: %w", i+1, f.Layers[i].Name, err, ErrBadLayer)
				}
				if h.Typeflag == tar.TypeDir {
					// Directories as they come, with their final attributes.
					if name, err := cleanName(h.Name); err == nil {
						if n := f.tree.lookup(name); n != nil && n.dir && n.hdr != nil && n.layer == i {
							if err := writeDirs(n); err != nil {
								return err
							}
						}
					}
					continue
				}
				ino := f.tree.at[[2]int{i, j}]
				if ino == nil {
					continue
				}
				if err := f.writeInode(tw, tr, ino, emitted, writeDirs); err != nil {
					return err
				}
			}
		})
		if err != nil {
			return err
		}
	}
	// Directories no later entry needed (empty ones), in path order.
	var err error
	f.tree.walk(f.tree.root, func(n *node) {
		if err == nil && n.dir {
			err = writeDirs(n)
		}
	})
	if err != nil {
		return err
	}
	if len(emitted) < f.tree.count {
		return fmt.Errorf("flatten: wrote %d of %d paths: a layer changed between reads: %w", len(emitted), f.tree.count, ErrBadLayer)
	}
	return tw.Close()
}

// writeInode writes a non-directory: its first path (sorted) with the
// data, the others as hard links to it.
func (f *Flattener) writeInode(tw *tar.Writer, tr *tar.Reader, ino *inode, emitted map[*node]bool, writeDirs func(*node) error) error {
	paths := slices.SortedFunc(func(yield func(*node) bool) {
		for n := range ino.paths {
			if !yield(n) {
				return
			}
		}
	}, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	for k, n := range paths {
		if err := writeDirs(n.parent); err != nil {
			return err
		}
		h := f.outHeader(ino.hdr, n.name)
		if k > 0 {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, paths[0].name, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", n.name, err)
		}
		if k == 0 && h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("copy %s: %w", n.name, err)
			}
		}
		emitted[n] = true
	}
	return nil
}

// outHeader is the header written for h at name: relative name, numeric
// owner only, xattr PAX records only, times clamped to the epoch.
func (f *Flattener) outHeader(h *tar.Header, name string) *tar.Header {
	out := &tar.Header{
		Typeflag: h.Typeflag, Name: name, Linkname: h.Linkname, Size: h.Size,
		Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, ModTime: h.ModTime.Truncate(time.Second),
		Devmajor: h.Devmajor, Devminor: h.Devminor, Format: tar.FormatPAX,
	}
	if out.Typeflag != tar.TypeReg {
		out.Size = 0
	}
	if out.Typeflag != tar.TypeSymlink && out.Typeflag != tar.TypeLink {
		out.Linkname = ""
	}
	if f.Epoch != nil && out.ModTime.After(*f.Epoch) {
		out.ModTime = *f.Epoch
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	return out
}
