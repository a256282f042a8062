// Package blobstore keeps overboot's artifacts (root images, kernels, initramfs
// images, disk images) content-addressed on disk:
//
//	DIR/blobs/sha256/HEX     the artifact, named by its SHA-256, read-only
//	DIR/tmp/                 work files; a crash leaves only garbage here
//	DIR/names/NAME.json      names as overboot kept them before its state
//	                         store (read once and imported by the server)
//
// Blobs are never rewritten: a machine that booted a digest keeps reading
// it. Image names, their versions and history live in the server's state
// store (server/state); this package is imported by mkimage and the server
// alike and depends on neither.
package blobstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/overboot/overboot/internal/durable"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/overboot/overboot/boot"
)

// Kind says what an artifact is for.
type Kind string

// Artifact kinds.
const (
	KindRoot      Kind = "root"      // squashfs root image
	KindKernel    Kind = "kernel"    // bootable kernel (bzImage)
	KindInitramfs Kind = "initramfs" // compressed newc cpio
	KindDisk      Kind = "disk"      // raw disk image for sanboot
)

// ParseKind checks a kind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindRoot, KindKernel, KindInitramfs, KindDisk:
		return k, nil
	}
	return "", fmt.Errorf("kind %q: want root, kernel, initramfs or disk", s)
}

// Manifest describes one published artifact.
type Manifest struct {
	Name          string      `json:"name"`
	Version       int         `json:"version"` // 1 for the first publish of a name, then +1
	Kind          Kind        `json:"kind"`
	Digest        boot.Digest `json:"digest"`
	Size          int64       `json:"size"`
	Compression   string      `json:"compression,omitempty"`    // e.g. zstd, xz, gzip
	KernelRelease string      `json:"kernel_release,omitempty"` // for kernels and initramfs images
	Created       time.Time   `json:"created"`
}

// ErrNotFound is returned for names and digests the store does not have.
var ErrNotFound = errors.New("not found")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CheckName checks an artifact name: lowercase letters, digits, '.', '_'
// and '-', starting with a letter or digit, at most 64 characters.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("name %q: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64", name)
	}
	return nil
}

// Store is a directory of artifacts. Its methods are safe for concurrent use
// by several processes: every change is a rename.
type Store struct {
	dir string
}

// Open opens the store at dir, creating its layout if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: no directory given")
	}
	for _, d := range []string{"blobs/sha256", "names", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// BlobPath returns where the blob with digest d lives (whether or not it exists).
func (s *Store) BlobPath(d boot.Digest) string {
	return filepath.Join(s.dir, "blobs", "sha256", d.Hex())
}

// TempFile creates a work file inside the store, on the same filesystem as
// the blobs so Commit can rename it. The caller removes it if it is not
// committed.
//
// The file is made in this process's work directory, DIR/tmp/pidPID-*,
// which the process holds an exclusive flock on until it exits (see
// workDir): a server starting removes every entry of DIR/tmp that nobody
// holds, whatever its age (what a killed mkimage left), and keeps the
// others. What a caller makes beside its work file (mkimage's work
// directory beside its output) is covered as well, and so is the file
// after the caller closed it, until it commits or removes it.
func (s *Store) TempFile(pattern string) (*os.File, error) {
	dir, err := s.workDir()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return os.CreateTemp(dir, pattern)
}

// Commit hashes the file at path (which must be in the store's tmp
// directory, e.g. from TempFile), and moves it into place as a blob. The
// file is gone from path afterwards, whether or not Commit succeeds.
func (s *Store) Commit(path string) (boot.Digest, int64, error) {
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("store: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", 0, fmt.Errorf("store: hash %s: %w", path, err)
	}
	d := boot.DigestFromSum(h.Sum(nil))
	if err := s.place(path, d); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// Ingest copies r into the store as a blob, hashing while it copies.
func (s *Store) Ingest(r io.Reader) (boot.Digest, int64, error) {
	tmp, d, n, err := s.copyHashed("ingest-*", r)
	if err != nil {
		return "", 0, fmt.Errorf("store: ingest: %w", err)
	}
	defer os.Remove(tmp)
	if err := s.place(tmp, d); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// copyHashed copies r into a new temporary file of the store (named by
// pattern), synced, and returns its path, SHA-256 and size. The caller
// removes the file (place renames it away first when it keeps it).
func (s *Store) copyHashed(pattern string, r io.Reader) (string, boot.Digest, int64, error) {
	f, err := s.TempFile(pattern)
	if err != nil {
		return "", "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", 0, err
	}
	return f.Name(), boot.DigestFromSum(h.Sum(nil)), n, nil
}

// DigestError says that content brought in as a blob of one digest (and
// size) is not: it was not kept.
type DigestError struct {
	Want, Got         boot.Digest
	WantSize, GotSize int64
}

func (e *DigestError) Error() string {
	if e.WantSize >= 0 && e.GotSize != e.WantSize {
		return fmt.Sprintf("%d bytes where %d were expected", e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("content of digest %s where %s was expected", e.Got, e.Want)
}

// IngestAs copies r into the store as the blob want, hashing while it
// copies, and keeps it only when it is that blob: its SHA-256 is want and,
// with size >= 0, it has size bytes (at most size+1 bytes are read from r).
// Anything else is a *DigestError and nothing is kept. Content from
// elsewhere (another server) is checked once, as it streams.
func (s *Store) IngestAs(r io.Reader, want boot.Digest, size int64) error {
	if _, err := boot.ParseDigest(string(want)); err != nil {
		return err
	}
	if size >= 0 {
		r = io.LimitReader(r, size+1)
	}
	tmp, got, n, err := s.copyHashed("fetch-*", r)
	if err != nil {
		return fmt.Errorf("store: ingest %s: %w", want, err)
	}
	defer os.Remove(tmp)
	if got != want || (size >= 0 && n != size) {
		return &DigestError{Want: want, Got: got, WantSize: size, GotSize: n}
	}
	return s.place(tmp, want)
}

// place makes the file at tmp the blob for d. An existing blob with the same
// digest has the same content and is kept.
func (s *Store) place(tmp string, d boot.Digest) error {
	dst := s.BlobPath(d)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return durable.Sync(filepath.Dir(dst))
}

// OpenBlob opens the blob with digest d for reading.
func (s *Store) OpenBlob(d boot.Digest) (*os.File, error) {
	if _, err := boot.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return f, err
}

// Publish points m.Name at m.Digest, atomically, in the names/ format of
// older versions (kept for reading those and for tests of their import). The blob must exist with
// m.Size bytes. Version is set to one more than the name's current version;
// Created is set to now when zero. It returns the manifest as stored.
func (s *Store) Publish(m Manifest) (Manifest, error) {
	if err := CheckName(m.Name); err != nil {
		return Manifest{}, err
	}
	if _, err := ParseKind(string(m.Kind)); err != nil {
		return Manifest{}, err
	}
	st, err := os.Stat(s.BlobPath(m.Digest))
	if err != nil {
		return Manifest{}, fmt.Errorf("publish %s: blob %s: %w", m.Name, m.Digest, ErrNotFound)
	}
	if st.Size() != m.Size {
		return Manifest{}, fmt.Errorf("publish %s: blob %s has %d bytes, manifest says %d", m.Name, m.Digest, st.Size(), m.Size)
	}
	m.Version = 1
	if old, err := s.Get(m.Name); err == nil {
		m.Version = old.Version + 1
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	f, err := s.TempFile("manifest-*")
	if err != nil {
		return Manifest{}, fmt.Errorf("publish %s: %w", m.Name, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), s.namePath(m.Name))
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("publish %s: %w", m.Name, err)
	}
	return m, durable.Sync(filepath.Join(s.dir, "names"))
}

func (s *Store) namePath(name string) string {
	return filepath.Join(s.dir, "names", name+".json")
}

// Get returns the manifest name points to.
func (s *Store) Get(name string) (Manifest, error) {
	if err := CheckName(name); err != nil {
		return Manifest{}, err
	}
	b, err := os.ReadFile(s.namePath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("artifact %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %w", s.namePath(name), err)
	}
	return m, nil
}

// Resolve finds an artifact by name, or by "sha256:HEX" for a blob with no
// name (its manifest then only has Digest and Size).
func (s *Store) Resolve(ref string) (Manifest, error) {
	if strings.HasPrefix(ref, boot.DigestAlgorithm+":") {
		d, err := boot.ParseDigest(ref)
		if err != nil {
			return Manifest{}, err
		}
		st, err := os.Stat(s.BlobPath(d))
		if err != nil {
			return Manifest{}, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return Manifest{Digest: d, Size: st.Size()}, nil
	}
	return s.Get(ref)
}

// List returns every published manifest, sorted by name.
func (s *Store) List() ([]Manifest, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "names"))
	if err != nil {
		return nil, err
	}
	var out []Manifest
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || CheckName(name) != nil {
			continue
		}
		m, err := s.Get(name)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Blob is one stored blob.
type Blob struct {
	Digest  boot.Digest
	Size    int64
	ModTime time.Time
}

// Blobs lists every blob.
func (s *Store) Blobs() ([]Blob, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	var out []Blob
	for _, e := range ents {
		d, err := boot.ParseDigest("sha256:" + e.Name())
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Blob{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// Remove deletes a blob. Its caller has made sure nothing refers to it.
func (s *Store) Remove(d boot.Digest) error {
	if _, err := boot.ParseDigest(string(d)); err != nil {
		return err
	}
	if err := os.Remove(s.BlobPath(d)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return err
	}
	return durable.Sync(filepath.Join(s.dir, "blobs", "sha256"))
}

// Sniff guesses what a blob is from its first bytes: a squashfs root, a
// bzImage kernel, a (compressed) cpio initramfs, else a raw disk. It only
// guesses: Check says whether the content is sound as that kind.
func Sniff(r io.ReaderAt) Kind {
	b, _ := head(r)
	if k, _ := sniff(b); k != "" {
		return k
	}
	return KindDisk
}

// head reads the first bytes of r, as many as sniff and Check look at.
func head(r io.ReaderAt) ([]byte, error) {
	b := make([]byte, 0x210)
	n, err := r.ReadAt(b, 0)
	if err == io.EOF {
		err = nil
	}
	return b[:n], err
}

// sniff says what b, the first bytes of a blob, are: the kind they look
// like ("" for none) and, in words, what they are.
func sniff(b []byte) (Kind, string) {
	has := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case len(b) == 0:
		return "", "empty"
	case has(0, "hsqs"):
		return KindRoot, "a squashfs image"
	case has(0x202, "HdrS"):
		return KindKernel, "a kernel (bzImage)"
	case has(0, "070701"), has(0, "070702"):
		return KindInitramfs, "a newc cpio archive"
	case has(0, "\x1f\x8b"):
		return KindInitramfs, "gzip data"
	case has(0, "\x28\xb5\x2f\xfd"):
		return KindInitramfs, "zstd data"
	case has(0, "\xfd7zXZ\x00"):
		return KindInitramfs, "xz data"
	case has(0, "\x02\x21\x4c\x18"):
		return KindInitramfs, "lz4 (legacy) data"
	case has(0, "\x04\x22\x4d\x18"):
		return "", "lz4 frame data (the kernel unpacks only lz4's legacy format, lz4 -l)"
	case has(0, "sqsh"):
		return "", "a big-endian squashfs image (Linux reads little-endian ones)"
	case isText(b):
		return "", "text"
	}
	return "", "data of no kind overboot knows"
}

// isText says whether b looks like the start of a text file: UTF-8 with
// no control characters but tab, newline, carriage return and form feed
// (the last rune may be cut).
func isText(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			return len(b) < utf8.UTFMax && !utf8.FullRune(b)
		}
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' && r != '\f' || r == 0x7f {
			return false
		}
		b = b[n:]
	}
	return true
}

// KindError says that a blob's content is not of the kind it was to be
// published as. Its message reads after "blob sha256:... is".
type KindError struct {
	Kind Kind   // the kind asked for; "" for any of root, kernel and initramfs
	What string // what the content is, e.g. "text" or "a kernel (bzImage)"
}

func (e *KindError) Error() string {
	switch e.Kind {
	case KindRoot:
		return e.What + ", not a root (squashfs)"
	case KindKernel:
		return e.What + ", not a kernel (x86 bzImage)"
	case KindInitramfs:
		return e.What + ", not an initramfs (a newc cpio archive, or one compressed with gzip, zstd, xz or lz4 -l)"
	}
	return e.What + ", not a squashfs root, a kernel or an initramfs"
}

// Squashfs superblock (little-endian, 96 bytes): the fields Check reads.
const (
	sqSuperSize      = 96
	sqBlockSize      = 12 // u32
	sqBlockLog       = 22 // u16
	sqMajor          = 28 // u16
	sqBytesUsed      = 40 // u64
	sqMinBlockSize   = 4 << 10
	sqMaxBlockSize   = 1 << 20
	bzImageSetupHead = 0x210 // through the setup header's fields the boot loader reads
)

// Check says whether the blob r, of size bytes, is content of kind k: a
// squashfs image with a sound superblock for a root, an x86 bzImage for a
// kernel, a newc cpio archive or a gzip, zstd, xz or lz4 (legacy) stream
// for an initramfs. A disk may be anything. With k "", the content must
// be one of root, kernel and initramfs, whichever it looks like. A
// mismatch is a *KindError; reading r can fail with another error.
func Check(r io.ReaderAt, size int64, k Kind) error {
	if k != "" {
		if _, err := ParseKind(string(k)); err != nil {
			return err
		}
	}
	if k == KindDisk {
		return nil
	}
	b, err := head(r)
	if err != nil {
		return err
	}
	got, what := sniff(b)
	if got == "" || (k != "" && got != k) {
		return &KindError{Kind: k, What: what}
	}
	bad := func(format string, args ...any) error {
		return &KindError{Kind: got, What: what + " " + fmt.Sprintf(format, args...)}
	}
	switch got {
	case KindRoot:
		if size < sqSuperSize || len(b) < sqSuperSize {
			return bad("cut short: %d bytes, less than its %d-byte superblock", size, sqSuperSize)
		}
		le := binary.LittleEndian
		if v := le.Uint16(b[sqMajor:]); v != 4 {
			return bad("of squashfs version %d (Linux reads version 4)", v)
		}
		bs := le.Uint32(b[sqBlockSize:])
		if bs < sqMinBlockSize || bs > sqMaxBlockSize || bs&(bs-1) != 0 {
			return bad("with block size %d (want a power of two from 4 KiB to 1 MiB)", bs)
		}
		if l := le.Uint16(b[sqBlockLog:]); 1<<l != bs {
			return bad("with block size %d but block_log %d", bs, l)
		}
		if used := le.Uint64(b[sqBytesUsed:]); used <= sqSuperSize || used > uint64(size) {
			return bad("that says it has %d bytes, in a blob of %d (cut short?)", used, size)
		}
	case KindKernel:
		if size <= bzImageSetupHead {
			return bad("cut short: %d bytes", size)
		}
	}
	return nil
}
