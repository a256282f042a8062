package mkimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressions a tar source may have, detected by magic bytes.
var tarMagics = []struct {
	name  string
	magic []byte
}{
	{"gzip", []byte{0x1f, 0x8b}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"bzip2", []byte("BZh")},
}

// sniffCompression names the compression of the stream that starts with
// head: "gzip", "zstd", "xz", "bzip2", or "" for none of them.
func sniffCompression(head []byte) string {
	for _, m := range tarMagics {
		if bytes.HasPrefix(head, m.magic) {
			return m.name
		}
	}
	return ""
}

// isTarHeader reports whether block (the first 512 bytes of a stream) is a
// tar header: POSIX ustar and GNU headers carry "ustar" at offset 257; old v7
// headers only have their checksum; an archive with no entries starts with a
// zero block.
func isTarHeader(block []byte) bool {
	if len(block) < 512 {
		return false
	}
	block = block[:512]
	if bytes.Equal(block, make([]byte, 512)) {
		return true
	}
	if bytes.HasPrefix(block[257:], []byte("ustar")) {
		return true
	}
	field := strings.TrimRight(strings.TrimLeft(string(block[148:156]), " "), " \x00")
	want, err := strconv.ParseUint(field, 8, 32)
	if err != nil {
		return false
	}
	var sum uint64
	for i, c := range block {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += uint64(c)
	}
	return sum == want
}

// tarReader turns r (a tar archive, plain or compressed) into a plain tar
// stream. It returns the compression found ("" for none) and a close function
// for the decompressor.
func tarReader(r io.Reader) (io.Reader, string, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(6)
	comp := sniffCompression(head)
	var dec io.Reader = br
	closeFn := func() {}
	switch comp {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, comp, nil, fmt.Errorf("gzip: %w", err)
		}
		dec, closeFn = zr, func() { zr.Close() }
	case "zstd":
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, comp, nil, fmt.Errorf("zstd: %w", err)
		}
		dec, closeFn = zr, zr.Close
	case "xz":
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, comp, nil, fmt.Errorf("xz: %w", err)
		}
		dec = zr
	case "bzip2":
		dec = bzip2.NewReader(br)
	}
	if comp != "" {
		dec = bufio.NewReaderSize(dec, 1<<20)
	}
	block, err := dec.(*bufio.Reader).Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		closeFn()
		return nil, comp, nil, err
	}
	if !isTarHeader(block) {
		closeFn()
		what := "not a tar archive"
		if comp != "" {
			what = comp + " data but not a compressed tar archive"
		}
		return nil, comp, nil, fmt.Errorf("%s: %w", what, ErrBadSource)
	}
	return dec, comp, closeFn, nil
}

// cleanTarName turns a tar member name into the path it names inside the
// image: leading "/" and "./" go (GNU tar strips them too), "." is the root.
// Names with a ".." component are refused, as GNU tar refuses them: they
// could reach outside the root, and mksquashfs would silently strip them.
func cleanTarName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("tar entry %q: contains \"..\": %w", name, ErrUnsafeTar)
		}
	}
	p := strings.TrimLeft(path.Clean("/"+name), "/")
	if p == "" {
		p = "."
	}
	return p, nil
}

// rootAttrs are the attributes of a tar's root directory entry ("./").
type rootAttrs struct {
	Mode     int64 // permission bits, with setuid/setgid/sticky
	UID, GID int
	Mtime    int64 // seconds since the epoch
}

// tarStats is what rewriteTar saw.
type tarStats struct {
	Entries  int        // paths in the image, root and implicit directories included
	MaxMtime int64      // the newest modification time of any entry, seconds since the epoch
	Root     *rootAttrs // the root directory entry; nil when the archive has none
	Fixups   []string   // changes made for netboot
	Notes    []string   // things worth saying that changed nothing
}

// maxFstab bounds how much of etc/fstab is read into memory for fixing.
const maxFstab = 1 << 20

// rewriteTar reads the tar archive r and writes, to w, the archive mksquashfs
// -tar gets: names made relative and checked, owner names removed
// (mksquashfs prefers them to the numeric ids and looks them up on the build
// machine: wrong for a root image), only the xattr PAX records kept,
// etc/fstab fixed for netboot unless noFixups, the root entry left out (its
// mode goes on the command line). Duplicates are refused: tar keeps the last
// copy of a path, mksquashfs the first. A nil w only checks the archive.
// A non-nil capture gets the entries as they are written (see Capturer).
func rewriteTar(r io.Reader, w io.Writer, noFixups bool, capture Capturer) (tarStats, error) {
	t := &tarRewriter{tr: tar.NewReader(r), noFixups: noFixups, seen: map[string]bool{".": true}, explicit: map[string]byte{}, capture: capture}
	if w != nil {
		t.tw = tar.NewWriter(w)
	}
	for {
		h, err := t.tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return t.st, fmt.Errorf("read tar: %w", err)
		}
		if err := t.copyEntry(h); err != nil {
			return t.st, err
		}
	}
	if t.tw != nil {
		if err := t.tw.Close(); err != nil {
			return t.st, fmt.Errorf("write tar: %w", err)
		}
	}
	t.st.Entries = len(t.seen)
	return t.st, nil
}

// tarRewriter is one rewriteTar run.
type tarRewriter struct {
	tr       *tar.Reader
	tw       *tar.Writer // nil: check only
	noFixups bool
	seen     map[string]bool // every path in the image
	explicit map[string]byte // paths with their own entry: their type flag
	capture  Capturer        // nil: none
	st       tarStats
}

// writeHeader writes h unless only checking.
func (t *tarRewriter) writeHeader(h *tar.Header) error {
	if t.tw == nil {
		return nil
	}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar entry %q: %w", h.Name, err)
	}
	return nil
}

func (t *tarRewriter) copyEntry(h *tar.Header) error {
	name, err := cleanTarName(h.Name)
	if err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		h.Typeflag = tar.TypeReg // the reader has expanded sparse files
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		t.st.Notes = append(t.st.Notes, fmt.Sprintf("tar: global PAX header %q ignored", h.Name))
		return nil
	default:
		return fmt.Errorf("tar entry %q: type %q not supported: %w", h.Name, h.Typeflag, ErrBadSource)
	}
	if t.explicit[name] != 0 {
		return fmt.Errorf("tar entry %q: %s appears twice (tar would keep the last, mksquashfs the first): repack the archive: %w", h.Name, name, ErrBadSource)
	}
	isDir := h.Typeflag == tar.TypeDir
	if name != "." && t.seen[name] && !isDir {
		return fmt.Errorf("tar entry %q: a %s, but earlier entries use it as a directory: %w", h.Name, tarTypeName(h.Typeflag), ErrBadSource)
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if typ := t.explicit[p]; typ != 0 && typ != tar.TypeDir {
			return fmt.Errorf("tar entry %q: %s is a %s, not a directory: %w", h.Name, p, tarTypeName(typ), ErrUnsafeTar)
		}
	}
	t.explicit[name] = h.Typeflag
	for p := name; p != "." && !t.seen[p]; p = path.Dir(p) {
		t.seen[p] = true
	}
	if mt := h.ModTime.Unix(); mt > t.st.MaxMtime {
		t.st.MaxMtime = mt
	}
	if name == "." {
		if !isDir {
			return fmt.Errorf("tar entry %q: the root is a %s, not a directory: %w", h.Name, tarTypeName(h.Typeflag), ErrBadSource)
		}
		// mksquashfs -tar ignores a root entry: BuildRoot passes its mode on
		// the command line.
		t.st.Root = &rootAttrs{Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid, Mtime: h.ModTime.Unix()}
		return nil
	}
	if h.Typeflag == tar.TypeLink {
		target, err := cleanTarName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", h.Name, err)
		}
		switch typ := t.explicit[target]; {
		case target == name || typ == 0:
			return fmt.Errorf("tar entry %q: hard link to %q, which is not earlier in the archive: %w", h.Name, h.Linkname, ErrBadSource)
		case typ == tar.TypeDir:
			return fmt.Errorf("tar entry %q: hard link to the directory %q: %w", h.Name, h.Linkname, ErrBadSource)
		}
		h.Linkname = target
	}
	h.Name = name
	h.Uname, h.Gname = "", ""
	h.ModTime = h.ModTime.Truncate(time.Second)
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	h.Format = tar.FormatUnknown
	h.Xattrs = nil //nolint:staticcheck // PAXRecords carry the same records
	recs := map[string]string{}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			recs[k] = v
		}
	}
	h.PAXRecords = recs
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
		if name == fstabPath && !t.noFixups {
			t.st.Notes = append(t.st.Notes, fmt.Sprintf("%s is a %s in the archive: not fixed", fstabPath, tarTypeName(h.Typeflag)))
		}
		if t.capture != nil && t.tw != nil {
			cw, err := t.capture.Capture(name, h)
			if err != nil {
				return fmt.Errorf("tar entry %q: capture: %w", h.Name, err)
			}
			if cw != nil {
				if err := cw.Close(); err != nil {
					return fmt.Errorf("tar entry %q: capture: %w", h.Name, err)
				}
			}
		}
		return t.writeHeader(h)
	}
	if name == fstabPath && !t.noFixups {
		return t.copyFstab(h)
	}
	return t.copyFile(h)
}

// copyFile writes a regular file's header and data.
func (t *tarRewriter) copyFile(h *tar.Header) error {
	if t.tw == nil {
		return nil // the reader skips the data
	}
	if err := t.writeHeader(h); err != nil {
		return err
	}
	var dst io.Writer = t.tw
	var cw io.WriteCloser
	if t.capture != nil {
		var err error
		if cw, err = t.capture.Capture(h.Name, h); err != nil {
			return fmt.Errorf("tar entry %q: capture: %w", h.Name, err)
		}
		if cw != nil {
			dst = io.MultiWriter(t.tw, cw)
		}
	}
	_, err := io.Copy(dst, t.tr)
	if cw != nil {
		if cerr := cw.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("capture: %w", cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("tar entry %q: %w", h.Name, err)
	}
	return nil
}

// copyFstab writes etc/fstab fixed by FixFstab.
func (t *tarRewriter) copyFstab(h *tar.Header) error {
	if h.Size > maxFstab {
		t.st.Notes = append(t.st.Notes, fmt.Sprintf("%s has %d bytes, more than %d: not fixed", fstabPath, h.Size, maxFstab))
		return t.copyFile(h)
	}
	in, err := io.ReadAll(t.tr)
	if err != nil {
		return fmt.Errorf("tar entry %q: %w", h.Name, err)
	}
	out, dropped := FixFstab(in)
	for _, d := range dropped {
		t.st.Fixups = append(t.st.Fixups, fmt.Sprintf("%s: dropped %q", fstabPath, d))
	}
	h.Size = int64(len(out))
	if err := t.writeHeader(h); err != nil {
		return err
	}
	if t.tw == nil {
		return nil
	}
	if _, err := t.tw.Write(out); err != nil {
		return fmt.Errorf("tar entry %q: %w", h.Name, err)
	}
	return nil
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "regular file"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeDir:
		return "directory"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return "special file"
}
