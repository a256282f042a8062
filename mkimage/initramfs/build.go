package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

// DefaultModules are loaded at boot when Options.Modules is nil
// (boot.DefaultInitramfsModules): what an HTTP root (squashfs, loop,
// overlay) and an iSCSI root or upper (iscsi_tcp, sd_mod, ext4, CRC32C for
// digests, iscsi_ibft for a sanbooted disk) need, the virtio NIC of QEMU
// and the Intel NICs many lab machines have (r8169 needs firmware files:
// add it with -add-modules and the firmware with Files). Names absent from
// a kernel's modules.dep but built into it are skipped.
var DefaultModules = boot.DefaultInitramfsModules()

// Paths inside the initramfs: the layout of package boot, which the agent
// reads.
const (
	ModulesList = boot.InitramfsModules
	InitPath    = boot.InitramfsInit
	ShellPath   = boot.InitramfsShell
	SiteCAPath  = boot.InitramfsSiteCA
)

// File is an extra file to add.
type File struct {
	Src  string // file on this machine
	Dst  string // path inside the initramfs, e.g. "etc/foo"
	Mode os.FileMode
}

// Options say what goes into the initramfs. Zero values are documented
// defaults and are never written back.
type Options struct {
	Agent string // static overboot-init binary, becomes /init (required)
	// NoRescueShell leaves out /bin/sh, a link to /init: the agent is the
	// rescue shell when called as sh (package initagent/rescue).
	NoRescueShell bool
	KernelRelease string   // modules come from ModulesDir/KernelRelease (required with modules)
	ModulesDir    string   // default /lib/modules
	Modules       []string // loaded at boot, written to ModulesList; nil = DefaultModules
	Compression   string   // zstd (default), gzip, xz or none
	// Firmware adds the firmware files the shipped modules name
	// (.modinfo firmware=) that FirmwareDir has, under lib/firmware.
	Firmware    bool
	FirmwareDir string // default DefaultFirmwareDir
	Files       []File
	// SiteCA is a PEM file of CA certificates (the server's site CA,
	// DATA/tls/ca.pem, or the site's own) put at SiteCAPath: the agent
	// trusts them alone for https URLs. "" = none.
	SiteCA string
	Log    *slog.Logger // nil: discard
}

// Summary describes a built initramfs.
type Summary struct {
	Files   int      // records, directories included
	Modules []string // .ko files shipped (dependencies included), sorted
	Builtin []string // requested modules the kernel has built in
	// With Options.Firmware: the firmware files shipped (under
	// lib/firmware) and those the modules name that were not found.
	Firmware, MissingFirmware []string
	Uncompressed              int64
	Compressed                int64
	Digest                    boot.Digest
}

// Errors callers branch on.
var (
	ErrNoModule = errors.New("no such kernel module")
	ErrOption   = errors.New("invalid option")
)

// Compressions lists the supported compressors (the kernel's initramfs
// decompressors for them are built into Debian's kernels).
var Compressions = []string{"zstd", "gzip", "xz", "none"}

// node is one path of the archive.
type node struct {
	mode         uint32
	src          string // file to copy
	data         []byte // or these bytes
	link         string
	major, minor uint32
}

// Build writes the initramfs to w.
func Build(ctx context.Context, w io.Writer, o Options) (Summary, error) {
	comp := o.Compression
	if comp == "" {
		comp = "zstd"
	}
	if !contains(Compressions, comp) {
		return Summary{}, fmt.Errorf("compression %q: want one of %s: %w", comp, strings.Join(Compressions, ", "), ErrOption)
	}
	if o.Agent == "" {
		return Summary{}, fmt.Errorf("agent: no binary given: %w", ErrOption)
	}
	tree := map[string]*node{}
	// The agent mounts the kernel's filesystems on dev, proc, sys and run.
	for _, d := range []string{"dev", "proc", "sys", "run", boot.InitramfsNewRoot, "tmp", path.Dir(ShellPath), boot.InitramfsModulesDir} {
		mkdirs(tree, d)
	}
	mkdirs(tree, path.Dir(ModulesList))
	tree["tmp"].mode = modeDir | 0o1777
	// The kernel opens /dev/console for init's stdio before devtmpfs is
	// mounted: without it the agent's messages go nowhere.
	tree["dev/console"] = &node{mode: modeChar | 0o600, major: 5, minor: 1}
	tree["dev/null"] = &node{mode: modeChar | 0o666, major: 1, minor: 3}
	if err := addFile(tree, o.Agent, InitPath, 0o755); err != nil {
		return Summary{}, fmt.Errorf("agent: %w", err)
	}
	if !o.NoRescueShell {
		tree[ShellPath] = &node{mode: modeSymlink | 0o777, link: "/" + InitPath}
	}
	for _, f := range o.Files {
		dst, err := cleanDst(f.Dst)
		if err != nil {
			return Summary{}, err
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		if err := addFile(tree, f.Src, dst, mode); err != nil {
			return Summary{}, err
		}
	}
	if o.SiteCA != "" {
		if err := checkCA(o.SiteCA); err != nil {
			return Summary{}, err
		}
		if err := addFile(tree, o.SiteCA, SiteCAPath, 0o644); err != nil {
			return Summary{}, fmt.Errorf("site CA: %w", err)
		}
	}
	var sum Summary
	names := o.Modules
	if names == nil {
		names = DefaultModules
	}
	if len(names) > 0 {
		if o.KernelRelease == "" {
			return Summary{}, fmt.Errorf("kernel release: none given, and modules are wanted: %w", ErrOption)
		}
		mt, err := OpenModuleTree(o.ModulesDir, o.KernelRelease)
		if err != nil {
			return Summary{}, err
		}
		mods, err := resolveModules(mt, names)
		if err != nil {
			return Summary{}, err
		}
		base := path.Join(boot.InitramfsModulesDir, o.KernelRelease)
		mkdirs(tree, base)
		for _, rel := range mods.files {
			mkdirs(tree, path.Dir(path.Join(base, rel)))
			tree[path.Join(base, rel)] = &node{mode: modeFile | 0o644, src: filepath.Join(mt.Dir, rel)}
		}
		tree[path.Join(base, boot.ModulesDep)] = &node{mode: modeFile | 0o644, data: mods.dep}
		if len(mods.alias) > 0 {
			tree[path.Join(base, boot.ModulesAlias)] = &node{mode: modeFile | 0o644, data: mods.alias}
		}
		if mods.builtinFile != nil {
			tree[path.Join(base, "modules.builtin")] = &node{mode: modeFile | 0o644, data: mods.builtinFile}
		}
		sum.Modules = mods.files
		sum.Builtin = mods.builtin
		if o.Firmware {
			if sum.Firmware, sum.MissingFirmware, err = addFirmware(tree, mt.Dir, mods.files, o.FirmwareDir); err != nil {
				return Summary{}, err
			}
		}
	}
	tree[ModulesList] = &node{mode: modeFile | 0o644, data: []byte(moduleList(names))}

	a, err := writeArchive(ctx, w, tree, comp)
	if err != nil {
		return Summary{}, err
	}
	sum.Files, sum.Uncompressed, sum.Compressed, sum.Digest = a.Files, a.Uncompressed, a.Compressed, a.Digest
	return sum, nil
}

// writeArchive writes tree as one compressed newc archive, its paths in
// sorted order (so parents come before their children) and every time
// zero: the bytes depend only on the tree. Only Files, Uncompressed,
// Compressed and Digest are set.
func writeArchive(ctx context.Context, w io.Writer, tree map[string]*node, comp string) (Summary, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	zw, err := compressor(cw, comp)
	if err != nil {
		return Summary{}, err
	}
	cp := &cpioWriter{w: zw}
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return Summary{}, err
		}
		if err := writeNode(cp, p, tree[p]); err != nil {
			return Summary{}, err
		}
	}
	if err := cp.trailer(); err != nil {
		return Summary{}, err
	}
	if err := zw.Close(); err != nil {
		return Summary{}, err
	}
	return Summary{Files: cp.count, Uncompressed: cp.n, Compressed: cw.n, Digest: boot.DigestFromSum(h.Sum(nil))}, nil
}

func moduleList(names []string) string {
	var b strings.Builder
	b.WriteString("# kernel modules the overboot agent loads at boot, with their dependencies\n")
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	return b.String()
}

func writeNode(cp *cpioWriter, p string, n *node) error {
	switch {
	case n.src != "":
		f, err := os.Open(n.src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return cp.record(p, n.mode, 0, 0, 0, 0, f, fi.Size())
	case n.mode&modeType == modeSymlink:
		return cp.record(p, n.mode, 0, 0, 0, 0, strings.NewReader(n.link), int64(len(n.link)))
	default:
		return cp.record(p, n.mode, 0, 0, n.major, n.minor, bytes.NewReader(n.data), int64(len(n.data)))
	}
}

func addFile(tree map[string]*node, src, dst string, perm os.FileMode) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	mkdirs(tree, path.Dir(dst))
	tree[dst] = &node{mode: modeFile | uint32(perm.Perm()), src: src}
	return nil
}

func mkdirs(tree map[string]*node, dir string) {
	for d := dir; d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if _, ok := tree[d]; !ok {
			tree[d] = &node{mode: modeDir | 0o755}
		}
	}
}

// cleanDst confines a destination path to the archive.
func cleanDst(p string) (string, error) {
	c := path.Clean("/" + p)[1:]
	if c == "" || c != strings.TrimPrefix(p, "/") {
		return "", fmt.Errorf("file destination %q: want a clean relative path: %w", p, ErrOption)
	}
	return c, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// compressor returns a writer compressing for the kernel's decompressors.
func compressor(w io.Writer, comp string) (io.WriteCloser, error) {
	switch comp {
	case "zstd":
		// A bounded window keeps the kernel's decompression workspace
		// small; the archive is a few MB anyway.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(8<<20), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	case "gzip":
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case "xz":
		// The kernel's xz decoder checks CRC32 (or nothing), not CRC64.
		return xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(w)
	case "none":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("compression %q: %w", comp, ErrOption)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// BuildToStore builds into st as a blob and returns its manifest (Kind
// initramfs, no name: names are published in the server's state store).
func BuildToStore(ctx context.Context, st *blobstore.Store, o Options) (blobstore.Manifest, error) {
	f, err := st.TempFile("initramfs-*")
	if err != nil {
		return blobstore.Manifest{}, err
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	sum, err := Build(ctx, bw, o)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return blobstore.Manifest{}, err
	}
	comp := o.Compression
	if comp == "" {
		comp = "zstd"
	}
	return commit(st, f.Name(), blobstore.Manifest{Kind: blobstore.KindInitramfs, Digest: sum.Digest, Size: sum.Compressed, Compression: comp, KernelRelease: o.KernelRelease})
}

// commit moves the temporary file into the store by digest.
func commit(st *blobstore.Store, tmp string, m blobstore.Manifest) (blobstore.Manifest, error) {
	d, size, err := st.Commit(tmp)
	if err != nil {
		return blobstore.Manifest{}, err
	}
	if d != m.Digest || size != m.Size {
		return blobstore.Manifest{}, fmt.Errorf("store: %s changed while being stored (%s, %d bytes)", tmp, d, size)
	}
	return m, nil
}

// checkCA checks that file holds PEM CA certificates and nothing else
// (a private key put there by mistake would be in every machine's RAM).
func checkCA(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("site CA: %w", err)
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("site CA %s: a PEM %s block: want CA certificates only: %w", file, blk.Type, ErrOption)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("site CA %s: %w", file, err)
		}
		if !c.IsCA {
			return fmt.Errorf("site CA %s: %q is not a CA certificate (give the CA that signed the server's certificate): %w", file, c.Subject.CommonName, ErrOption)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("site CA %s: no PEM CERTIFICATE in it: %w", file, ErrOption)
	}
	return nil
}
