package boot

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// DocumentVersion is the version of the boot document this package speaks.
const DocumentVersion = 1

// MaxDocumentSize bounds a boot document; anything larger is refused unread.
const MaxDocumentSize = 64 << 10

// Document is the boot document the agent fetches from overboot.doc. It names
// the lower (read-only image) and upper (writable) layers. It may carry CHAP
// secrets, so it is served once per token and never logged whole: use
// Document.LogValue or Redacted.
type Document struct {
	Version int    `json:"version"`
	Machine string `json:"machine,omitempty"` // the server's name for this machine, for messages
	Lower   Source `json:"lower"`
	Upper   Upper  `json:"upper"`
	Init    string `json:"init,omitempty"`   // default /sbin/init
	Report  string `json:"report,omitempty"` // URL the agent POSTs boot events to
	// Identity makes the machine itself in the booted system (optional).
	Identity *Identity `json:"identity,omitempty"`
}

// Source is where a layer comes from: exactly one of the fields is set.
type Source struct {
	HTTP  *HTTPSource  `json:"http,omitempty"`
	ISCSI *ISCSISource `json:"iscsi,omitempty"`
	// NFS is a lower only: an export mounted read-only (omitted when
	// unset, so agents older than the field read documents without it).
	NFS *NFSSource `json:"nfs,omitempty"`
}

// HTTPSource is an image read over HTTP. In mode ram (the default) it is
// downloaded into RAM and its SHA-256 checked before it is mounted; in
// modes lazy and fill it is read on demand with Range requests, block by
// block, each block checked by dm-verity against Verity's root hash (fill
// also completes the copy in RAM in the background).
type HTTPSource struct {
	URL string `json:"url"`
	// Mirrors are other URLs of the same bytes (other servers, HTTP
	// caches), tried in order after URL when it fails (at most
	// MaxMirrors; omitted when empty, so agents older than the field read
	// documents without it). Every source is as trustworthy as URL: the
	// digest or dm-verity checks what comes from any of them; a source
	// with another size is refused.
	Mirrors []string  `json:"mirrors,omitempty"`
	Digest  Digest    `json:"digest"`
	Size    int64     `json:"size,omitempty"` // bytes; checked when given, required for lazy and fill
	Mode    LowerMode `json:"mode,omitempty"` // "" means ram
	Verity  *Verity   `json:"verity,omitempty"`
	// WorkingSet is what earlier boots of the image read in their first
	// minute (modes lazy and fill): the keeper fetches it into its cache
	// while the agent sets up. Omitted when the server has none, so
	// agents older than the field read documents without it.
	WorkingSet *WorkingSet `json:"working_set,omitempty"`
}

// URLs returns URL, then the mirrors, in the order the agent tries them.
func (h HTTPSource) URLs() []string { return append([]string{h.URL}, h.Mirrors...) }

// HashURLs returns HashURL, then the mirrors, in the order the agent
// tries them.
func (v Verity) HashURLs() []string { return append([]string{v.HashURL}, v.HashMirrors...) }

// MaxMirrors bounds the mirrors of one URL: each is a place the agent
// may wait on before the next, and the static form must fit a kernel
// command line (2 KiB on x86).
const MaxMirrors = 7

// CheckMirrors checks the mirrors of primary: at most MaxMirrors, each an
// http or https URL (CheckURL) with no user information, query or
// fragment (they are shown on the console and, in the static form, on a
// command line every user reads: no secrets), none given twice or equal
// to primary.
func CheckMirrors(primary string, mirrors []string) error {
	if len(mirrors) > MaxMirrors {
		return fmt.Errorf("%d mirrors, at most %d", len(mirrors), MaxMirrors)
	}
	var errs []error
	seen := map[string]bool{primary: true}
	for _, m := range mirrors {
		if err := CheckURL(m); err != nil {
			errs = append(errs, err)
			continue
		}
		u, _ := url.Parse(m)
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(m, ",#?@") {
			errs = append(errs, fmt.Errorf("%q: a mirror is a plain URL: no user information, query or fragment (no secrets), and no comma", m))
			continue
		}
		if seen[m] {
			errs = append(errs, fmt.Errorf("%q given twice", m))
		}
		seen[m] = true
	}
	return errors.Join(errs...)
}

// LowerMode is how the agent reads an HTTP lower.
type LowerMode string

// The lower modes.
const (
	LowerRAM  LowerMode = "ram"  // download, check the SHA-256, loop-mount from RAM
	LowerLazy LowerMode = "lazy" // read blocks on demand (images larger than RAM boot)
	LowerFill LowerMode = "fill" // lazy, and complete the copy in RAM in the background
)

// ParseLowerMode reads a mode name.
func ParseLowerMode(s string) (LowerMode, error) {
	switch m := LowerMode(s); m {
	case LowerRAM, LowerLazy, LowerFill:
		return m, nil
	}
	return "", fmt.Errorf("%q: want ram, lazy or fill", s)
}

// OnDemand reports whether the image is read block by block (lazy, fill).
func (m LowerMode) OnDemand() bool { return m == LowerLazy || m == LowerFill }

// Verity is the dm-verity hash tree of an image (veritysetup's format 1,
// sha256, 4 KiB blocks, its superblock at offset 0 of the hash file). The
// root hash is the trust anchor: the agent reads the tree block by block
// as dm-verity asks for it, and dm-verity checks each tree block against
// the level above it up to the root hash, so a wrong tree is an I/O error
// like a wrong image block. The salt and the data size are given here too
// so that the superblock, which the tree does not cover, cannot change the
// table (without a salt the superblock's is used: a wrong one fails every
// read).
type Verity struct {
	HashURL string `json:"hash_url"`
	// HashMirrors are other URLs of the same tree, as HTTPSource.Mirrors
	// (optional).
	HashMirrors []string `json:"hash_mirrors,omitempty"`
	// HashDigest is the tree file's digest, for a copy kept elsewhere;
	// the agent needs none (optional).
	HashDigest Digest `json:"hash_digest,omitempty"`
	HashSize   int64  `json:"hash_size"`
	RootHash   string `json:"root_hash"`      // hex, 64 digits
	Salt       string `json:"salt,omitempty"` // hex; empty: the tree's superblock says
}

// ISCSISource is a LUN attached through the kernel's iSCSI initiator.
type ISCSISource struct {
	Portal    string `json:"portal"`    // host:port
	Target    string `json:"target"`    // target IQN
	LUN       int    `json:"lun"`       // usually 0
	Initiator string `json:"initiator"` // the initiator IQN the target expects
	CHAP      *CHAP  `json:"chap,omitempty"`
	Digest    Digest `json:"digest,omitempty"` // for a read-only lower: verified before use
	Size      int64  `json:"size,omitempty"`   // bytes of image on the LUN, with Digest
}

// CHAP holds the credentials for an iSCSI login (RFC 1994, RFC 7143 12.1.3).
// TargetUser and TargetSecret, when set, make the authentication mutual.
type CHAP struct {
	User         string `json:"user"`
	Secret       string `json:"secret"`
	TargetUser   string `json:"target_user,omitempty"`
	TargetSecret string `json:"target_secret,omitempty"`
}

// String never shows the secrets.
func (c CHAP) String() string {
	if c.TargetUser != "" {
		return fmt.Sprintf("CHAP user %s (mutual, target user %s)", c.User, c.TargetUser)
	}
	return "CHAP user " + c.User
}

// LogValue keeps secrets out of structured logs.
func (c CHAP) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Upper is the writable layer: exactly one field is set.
type Upper struct {
	Tmpfs *TmpfsUpper  `json:"tmpfs,omitempty"`
	ISCSI *ISCSISource `json:"iscsi,omitempty"`
}

// TmpfsUpper is a RAM upper layer; everything written is lost at reboot.
type TmpfsUpper struct {
	Size Size `json:"size,omitempty"` // default 50% of RAM
}

// ParseDocument decodes and validates a boot document. Unknown fields are
// errors, as are documents of another version.
func ParseDocument(r io.Reader) (Document, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocumentSize+1))
	if err != nil {
		return Document{}, fmt.Errorf("read boot document: %w", err)
	}
	if len(data) > MaxDocumentSize {
		return Document{}, fmt.Errorf("boot document larger than %d bytes", MaxDocumentSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("boot document: %w", err)
	}
	if dec.More() {
		return Document{}, errors.New("boot document: trailing data after the JSON object")
	}
	if err := d.Validate(); err != nil {
		return Document{}, err
	}
	return d, nil
}

// Marshal encodes a valid document.
func (d Document) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// Validate checks that the document is complete and well-formed. Errors name
// the field, in JSON path form ("lower.http.digest").
func (d Document) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("boot document: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if d.Version != DocumentVersion {
		bad("version", "is %d, this agent speaks version %d", d.Version, DocumentVersion)
	}
	lowers := 0
	for _, set := range []bool{d.Lower.HTTP != nil, d.Lower.ISCSI != nil, d.Lower.NFS != nil} {
		if set {
			lowers++
		}
	}
	switch {
	case lowers > 1:
		bad("lower", "give one of http, iscsi and nfs, not more")
	case d.Lower.NFS != nil:
		if err := d.Lower.NFS.Validate(); err != nil {
			bad("lower.nfs", "%v", err)
		}
	case d.Lower.HTTP != nil:
		h := d.Lower.HTTP
		if err := CheckURL(h.URL); err != nil {
			bad("lower.http.url", "%v", err)
		}
		if err := CheckMirrors(h.URL, h.Mirrors); err != nil {
			bad("lower.http.mirrors", "%v", err)
		}
		if _, err := ParseDigest(string(h.Digest)); err != nil {
			bad("lower.http.digest", "%v", err)
		}
		if h.Size < 0 {
			bad("lower.http.size", "is negative")
		}
		if h.Mode != "" {
			if _, err := ParseLowerMode(string(h.Mode)); err != nil {
				bad("lower.http.mode", "%v", err)
			}
		}
		if h.Mode.OnDemand() {
			if h.Verity == nil {
				bad("lower.http.verity", "is needed in mode %s: every block read on demand is checked against the tree", h.Mode)
			}
			if h.Size <= 0 || h.Size%4096 != 0 {
				bad("lower.http.size", "%d: mode %s needs the size, a multiple of 4096", h.Size, h.Mode)
			}
		}
		if v := h.Verity; v != nil {
			if err := CheckURL(v.HashURL); err != nil {
				bad("lower.http.verity.hash_url", "%v", err)
			}
			if err := CheckMirrors(v.HashURL, v.HashMirrors); err != nil {
				bad("lower.http.verity.hash_mirrors", "%v", err)
			}
			if _, err := ParseDigest(string(v.HashDigest)); v.HashDigest != "" && err != nil {
				bad("lower.http.verity.hash_digest", "%v", err)
			}
			if v.HashSize <= 0 {
				bad("lower.http.verity.hash_size", "is %d", v.HashSize)
			}
			if !isHex(v.RootHash, 64) {
				bad("lower.http.verity.root_hash", "want 64 hex digits (sha256)")
			}
			if !isHex(v.Salt, -1) || len(v.Salt) > 512 {
				bad("lower.http.verity.salt", "want at most 256 bytes in hex")
			}
		}
		if w := h.WorkingSet; w != nil {
			switch {
			case !h.Mode.OnDemand() || h.Verity == nil:
				bad("lower.http.working_set", "only in mode lazy or fill, with verity")
			default:
				if err := w.Check(h.Size, h.Verity.HashSize); err != nil {
					bad("lower.http.working_set", "%v", err)
				}
			}
		}
	case d.Lower.ISCSI != nil:
		checkISCSI("lower.iscsi", d.Lower.ISCSI, bad)
		if d.Lower.ISCSI.Digest != "" {
			if _, err := ParseDigest(string(d.Lower.ISCSI.Digest)); err != nil {
				bad("lower.iscsi.digest", "%v", err)
			}
			if d.Lower.ISCSI.Size <= 0 {
				bad("lower.iscsi.size", "is needed with digest: how many bytes of the LUN the digest covers")
			}
		}
	default:
		bad("lower", "missing: give http, iscsi or nfs")
	}
	switch {
	case d.Upper.Tmpfs != nil && d.Upper.ISCSI != nil:
		bad("upper", "give tmpfs or iscsi, not both")
	case d.Upper.ISCSI != nil:
		checkISCSI("upper.iscsi", d.Upper.ISCSI, bad)
		if d.Upper.ISCSI.Digest != "" {
			bad("upper.iscsi.digest", "a writable upper cannot have a digest")
		}
	case d.Upper.Tmpfs != nil:
		// Size was validated by its UnmarshalText; check values set in code.
		if s := d.Upper.Tmpfs.Size; s.Bytes < 0 || s.Percent < 0 || s.Percent > 100 || (s.Bytes != 0 && s.Percent != 0) {
			bad("upper.tmpfs.size", "invalid size %+v", s)
		}
	default:
		bad("upper", "missing: give tmpfs or iscsi")
	}
	if d.Init != "" && (!path.IsAbs(d.Init) || path.Clean(d.Init) != d.Init) {
		bad("init", "%q: want a clean absolute path", d.Init)
	}
	if d.Report != "" {
		if err := CheckURL(d.Report); err != nil {
			bad("report", "%v", err)
		}
	}
	if d.Identity != nil {
		d.Identity.validate(bad)
	}
	return errors.Join(errs...)
}

func checkISCSI(field string, s *ISCSISource, bad func(string, string, ...any)) {
	host, port, err := net.SplitHostPort(s.Portal)
	if err != nil || host == "" {
		bad(field+".portal", "%q: want host:port", s.Portal)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad(field+".portal", "%q: bad port", s.Portal)
	}
	if !validIQN(s.Target) {
		bad(field+".target", "%q: want an iSCSI name like iqn.2024-01.org.example:disk", s.Target)
	}
	if !validIQN(s.Initiator) {
		bad(field+".initiator", "%q: want an iSCSI name like iqn.2024-01.org.example:client", s.Initiator)
	}
	if s.LUN < 0 || s.LUN > 16383 {
		bad(field+".lun", "%d: want 0..16383", s.LUN)
	}
	if s.Size < 0 {
		bad(field+".size", "is negative")
	}
	if c := s.CHAP; c != nil {
		if c.User == "" || c.Secret == "" {
			bad(field+".chap", "needs user and secret")
		}
		if (c.TargetUser == "") != (c.TargetSecret == "") {
			bad(field+".chap", "mutual CHAP needs both target_user and target_secret")
		}
	}
}

// validIQN accepts the name forms of RFC 7143 section 4.2.7.2: "iqn." names
// in the lowercase form (RFC 3722 stringprep folds case), and "eui." and "naa."
// names with hex digits.
func validIQN(s string) bool {
	switch {
	case strings.HasPrefix(s, "iqn."):
		if len(s) > 223 || len(s) < len("iqn.yyyy-mm.x") {
			return false
		}
		for _, c := range s {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
				return false
			}
		}
		return true
	case strings.HasPrefix(s, "eui.") && len(s) == 20,
		strings.HasPrefix(s, "naa.") && (len(s) == 20 || len(s) == 36):
		for _, c := range s[4:] {
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	return false
}

// ValidIQN reports whether s is an iSCSI name overboot accepts.
func ValidIQN(s string) bool { return validIQN(s) }

// InitPath returns the init to run in the new root.
func (d Document) InitPath() string { return cmp.Or(d.Init, DefaultInit) }

// Redacted returns a copy with every secret replaced, fit for logs and
// for the agent's dry-run output.
func (d Document) Redacted() Document {
	r := d
	redact := func(s *ISCSISource) *ISCSISource {
		if s == nil || s.CHAP == nil {
			return s
		}
		c := *s
		chap := *s.CHAP
		chap.Secret = redactedSecret(chap.Secret)
		chap.TargetSecret = redactedSecret(chap.TargetSecret)
		c.CHAP = &chap
		return &c
	}
	r.Lower.ISCSI = redact(d.Lower.ISCSI)
	r.Upper.ISCSI = redact(d.Upper.ISCSI)
	if d.Identity != nil {
		// Files may be keys: only their sizes show.
		id := *d.Identity
		id.Files = make([]IdentityFile, len(d.Identity.Files))
		for i, f := range d.Identity.Files {
			id.Files[i] = IdentityFile{Path: f.Path, Mode: f.Mode, Data: fmt.Sprintf("(%d bytes)", len(f.Data))}
		}
		r.Identity = &id
	}
	return r
}

func redactedSecret(s string) string {
	if s == "" {
		return ""
	}
	return "(redacted)"
}

// LogValue keeps secrets out of structured logs.
func (d Document) LogValue() slog.Value {
	b, _ := json.Marshal(d.Redacted())
	return slog.StringValue(string(b))
}

// isHex reports whether s is lower-case hex of n digits (any even number
// when n < 0).
func isHex(s string, n int) bool {
	if n >= 0 && len(s) != n || len(s)%2 != 0 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MaxWorkingSetChunks bounds the chunks of a working set (image and tree
// together): 2,048 chunks of 256 KiB are 512 MiB, far more than a boot
// reads in its first minute, and the longest text form (every other
// chunk) still fits a document.
const MaxWorkingSetChunks = 2048

// Chunk sizes a working set may be counted in, in bytes.
const (
	MinWorkingSetChunk = 4 << 10
	MaxWorkingSetChunk = 16 << 20
)

// WorkingSet is what the boots of an image read in their first minute,
// in chunks of ChunkSize bytes of the image and of its dm-verity tree:
// the keeper reports it (WorkingSetReport), the server keeps the union
// of the last boots' per image and hands it to the next boots in
// HTTPSource.WorkingSet, whose keeper fetches it in a few large requests
// before the root is needed.
type WorkingSet struct {
	ChunkSize int64       `json:"chunk_size"`      // bytes: a power of two, MinWorkingSetChunk..MaxWorkingSetChunk
	Image     ChunkRanges `json:"image,omitempty"` // chunks of the image
	Tree      ChunkRanges `json:"tree,omitempty"`  // chunks of its dm-verity tree
}

// Count is the number of chunks in the set.
func (w WorkingSet) Count() int64 { return w.Image.Count() + w.Tree.Count() }

// Validate checks the set without the sizes of what it counts chunks of:
// the chunk size and at most MaxWorkingSetChunks. Errors name the field.
func (w WorkingSet) Validate() error {
	var errs []error
	if w.ChunkSize < MinWorkingSetChunk || w.ChunkSize > MaxWorkingSetChunk || w.ChunkSize&(w.ChunkSize-1) != 0 {
		errs = append(errs, fmt.Errorf("chunk_size: %d: want a power of two from %d to %d", w.ChunkSize, MinWorkingSetChunk, MaxWorkingSetChunk))
	}
	for _, f := range []struct {
		name string
		r    ChunkRanges
	}{{"image", w.Image}, {"tree", w.Tree}} {
		if err := f.r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	if n := w.Count(); n > MaxWorkingSetChunks {
		errs = append(errs, fmt.Errorf("%d chunks: at most %d", n, MaxWorkingSetChunks))
	}
	return errors.Join(errs...)
}

// Check is Validate, and every chunk within the image of imageSize bytes
// or its tree of treeSize bytes.
func (w WorkingSet) Check(imageSize, treeSize int64) error {
	if err := w.Validate(); err != nil {
		return err
	}
	var errs []error
	for _, f := range []struct {
		name string
		r    ChunkRanges
		size int64
	}{{"image", w.Image, imageSize}, {"tree", w.Tree, treeSize}} {
		n := (f.size + w.ChunkSize - 1) / w.ChunkSize
		if len(f.r) > 0 && f.r[len(f.r)-1].Last >= n {
			errs = append(errs, fmt.Errorf("%s: chunk %d is past the end: %d bytes are %d chunks of %d", f.name, f.r[len(f.r)-1].Last, f.size, n, w.ChunkSize))
		}
	}
	return errors.Join(errs...)
}

// ChunkRange is the chunks First to Last, both included.
type ChunkRange struct{ First, Last int64 }

// ChunkRanges is a set of chunk indexes as ranges in order, apart (not
// touching) and not empty; in JSON a string of ranges and single chunks,
// "0-3,17,40-45": the one text form of each set.
type ChunkRanges []ChunkRange

// RangesOf makes the ranges of chunks, which are in increasing order
// (repeats allowed).
func RangesOf(chunks []int64) ChunkRanges {
	var out ChunkRanges
	for _, c := range chunks {
		if n := len(out); n > 0 && c <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, c)
			continue
		}
		out = append(out, ChunkRange{c, c})
	}
	return out
}

// Count is the number of chunks.
func (c ChunkRanges) Count() int64 {
	var n int64
	for _, r := range c {
		n += r.Last - r.First + 1
	}
	return n
}

// Chunks lists the chunks in order.
func (c ChunkRanges) Chunks() []int64 {
	var out []int64
	for _, r := range c {
		for i := r.First; i <= r.Last; i++ {
			out = append(out, i)
		}
	}
	return out
}

// Validate checks the ranges are in order, apart, and not empty, with no
// negative chunk.
func (c ChunkRanges) Validate() error {
	for i, r := range c {
		switch {
		case r.First < 0:
			return fmt.Errorf("negative chunk %d", r.First)
		case r.Last < r.First:
			return fmt.Errorf("range %d-%d ends before it starts", r.First, r.Last)
		case i > 0 && r.First <= c[i-1].Last+1:
			return fmt.Errorf("range %s after %s: want ranges in order, apart", r, c[i-1])
		}
	}
	return nil
}

func (r ChunkRange) String() string {
	if r.First == r.Last {
		return strconv.FormatInt(r.First, 10)
	}
	return strconv.FormatInt(r.First, 10) + "-" + strconv.FormatInt(r.Last, 10)
}

func (c ChunkRanges) String() string {
	var b strings.Builder
	for i, r := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler.
func (c ChunkRanges) MarshalText() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: the one text form,
// strictly (decimal numbers without signs or leading zeros, ranges in
// order and apart, no spaces).
func (c *ChunkRanges) UnmarshalText(b []byte) error {
	s := string(b)
	if len(s) > 32<<10 {
		return fmt.Errorf("chunk ranges of %d bytes: too long", len(s))
	}
	var out ChunkRanges
	if s != "" {
		for _, part := range strings.Split(s, ",") {
			a, z, isRange := strings.Cut(part, "-")
			first, err := parseChunk(a)
			if err != nil {
				return fmt.Errorf("%q: %w", part, err)
			}
			last := first
			if isRange {
				if last, err = parseChunk(z); err != nil {
					return fmt.Errorf("%q: %w", part, err)
				}
				if last == first {
					return fmt.Errorf("%q: write a single chunk as %d", part, first)
				}
			}
			out = append(out, ChunkRange{first, last})
		}
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*c = out
	return nil
}

// parseChunk reads a chunk index: decimal digits, no leading zero.
func parseChunk(s string) (int64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("want chunk numbers like 0-3,17")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("chunk number out of range")
	}
	return n, nil
}
