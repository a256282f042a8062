package mkimage

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/overboot/overboot/internal/durable"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrNoMksquashfs: the engine is not installed.
	ErrNoMksquashfs = errors.New("mksquashfs not found in PATH: install squashfs-tools")
	// ErrBadSource: the source is neither a directory nor a usable tar archive.
	ErrBadSource = errors.New("bad source")
	// ErrUnsafeTar: a tar entry names a path outside the image's root.
	ErrUnsafeTar = errors.New("unsafe tar entry")
	// ErrOption: a RootOptions field is out of range.
	ErrOption = errors.New("invalid option")
)

// Defaults for zero RootOptions fields.
const (
	DefaultCompression = "zstd"
	DefaultBlockSize   = 128 << 10 // bytes
)

// fstabPath is the file the netboot fix-ups change, relative to the root.
const fstabPath = "etc/fstab"

// levelRange gives the -Xcompression-level range of each compressor
// mksquashfs 4.5.1 offers; {0, 0} means the compressor has no levels.
var levelRange = map[string][2]int{
	"gzip": {1, 9},
	"zstd": {1, 22},
	"lzo":  {1, 9},
	"xz":   {0, 0},
	"lz4":  {0, 0},
}

// RootOptions says what BuildRoot builds from and how.
type RootOptions struct {
	Source      string    // a directory, or a tar archive: plain, gzip, zstd, xz or bzip2 (detected by magic bytes); with Tar, only the name messages give the source
	Tar         TarSource // when set, the tar archive to build from, instead of the file Source names
	Compression string    // gzip, xz, zstd, lz4 or lzo; "" = DefaultCompression
	Level       int       // compression level; 0 = mksquashfs's default for the compressor (zstd 15, gzip 9, lzo 8)
	BlockSize   int       // bytes, a power of two from 4 KiB to 1 MiB; 0 = DefaultBlockSize
	Processors  int       // mksquashfs threads; 0 = all processors
	NoFixups    bool      // build the tree as it is, without the netboot fix-ups
	// Capture, when set, gets a copy of the entries it wants as a tar
	// source (a file or Tar) streams into mksquashfs: the image's own
	// kernel and modules (package mkimage/imagekernel), without
	// extracting the rest. A directory source is not streamed: read it.
	Capture  Capturer
	Progress io.Writer    // human progress lines; nil = silent
	Log      *slog.Logger // nil = discard
}

// TarSource is a tar archive produced on demand (a container image's
// flattened layers: see mkimage/oci). BuildRoot calls WriteTar twice, once
// to check the archive and find its newest time, once to build; each call
// writes the same plain (uncompressed) tar to w.
type TarSource interface {
	WriteTar(ctx context.Context, w io.Writer) error
}

// Capturer receives entries of a tar source as BuildRoot streams them
// into mksquashfs (once per build, in the archive's order).
type Capturer interface {
	// Capture is called with every entry's cleaned name (relative to the
	// root) and its header after the rewrite (for a hard link, Linkname
	// is the cleaned target). For a regular file it may return a writer
	// that receives a copy of the data and is closed after it; nil: not
	// wanted. An error stops the build.
	Capture(name string, h *tar.Header) (io.WriteCloser, error)
}

// RootResult describes a built image.
type RootResult struct {
	Digest  boot.Digest   // sha256 of the image file
	Size    int64         // bytes
	Entries int           // paths in the image, root included
	Fixups  []string      // netboot changes made in the image (never in the source)
	Elapsed time.Duration // wall time of the whole build
}

func (o RootOptions) compression() string {
	if o.Compression == "" {
		return DefaultCompression
	}
	return o.Compression
}

func (o RootOptions) blockSize() int {
	if o.BlockSize == 0 {
		return DefaultBlockSize
	}
	return o.BlockSize
}

// Validate checks the options without touching the filesystem.
func (o RootOptions) Validate() error {
	if o.Source == "" {
		return fmt.Errorf("source: none given: %w", ErrOption)
	}
	comp := o.compression()
	r, ok := levelRange[comp]
	if !ok {
		return fmt.Errorf("compression %q: want gzip, xz, zstd, lz4 or lzo: %w", o.Compression, ErrOption)
	}
	if o.Level != 0 {
		if r[0] == 0 {
			return fmt.Errorf("level %d: %s has no compression levels: %w", o.Level, comp, ErrOption)
		}
		if o.Level < r[0] || o.Level > r[1] {
			return fmt.Errorf("level %d: %s wants %d to %d: %w", o.Level, comp, r[0], r[1], ErrOption)
		}
	}
	if b := o.BlockSize; b != 0 && (b < 4<<10 || b > 1<<20 || b&(b-1) != 0) {
		return fmt.Errorf("block size %d: want a power of two from 4096 to 1048576: %w", b, ErrOption)
	}
	if o.Processors < 0 {
		return fmt.Errorf("processors %d: want 0 (all) or more: %w", o.Processors, ErrOption)
	}
	return nil
}

// MksquashfsArgs returns the mksquashfs arguments (without the program name)
// that build out from src with opt's engine settings. src "-" reads a tar
// archive from standard input. BuildRoot appends the fix-up arguments (pseudo
// files, excludes, the root directory's attributes for a tar) to these.
//
// The image is reproducible: the same tree with the same options gives the
// same digest. For a directory, -mkfs-time 0 fixes the superblock's time; for
// a tar, BuildRoot sets SOURCE_DATE_EPOCH to the archive's newest time
// instead, because mksquashfs 4.5.1 -tar ignores -root-time and would give
// the root directory the build's time (the variable clamps it, and changes
// no other entry since none is newer). Ownership, modes,
// timestamps, extended attributes, hard links and device nodes are kept as
// they are in the source; -exit-on-error makes an unreadable file an error
// instead of a warning and a hole in the image.
func MksquashfsArgs(src, out string, opt RootOptions) []string {
	return mksquashfsArgv(src, out, opt, engineExtras{})
}

// engineExtras are the arguments BuildRoot adds for one build.
type engineExtras struct {
	RootMode *int64   // tar input: the root directory's permission bits (mksquashfs 4.5.1 -tar ignores -root-uid, -root-gid and -root-time)
	Pseudo   []string // -p definitions
	Exclude  []string // -e paths relative to the source; -e must come last
}

func mksquashfsArgv(src, out string, opt RootOptions, x engineExtras) []string {
	args := []string{src, out}
	if src == "-" {
		args = append(args, "-tar")
	}
	args = append(args, "-noappend", "-exit-on-error")
	if src != "-" {
		args = append(args, "-mkfs-time", "0")
	}
	args = append(args, "-comp", opt.compression())
	if opt.Level != 0 {
		args = append(args, "-Xcompression-level", strconv.Itoa(opt.Level))
	}
	args = append(args, "-b", strconv.Itoa(opt.blockSize()))
	if opt.Processors > 0 {
		args = append(args, "-processors", strconv.Itoa(opt.Processors))
	}
	if opt.Progress == nil || src == "-" {
		// From a tar, BuildRoot reports how much of the archive it has read.
		args = append(args, "-no-progress")
	}
	if x.RootMode != nil {
		args = append(args, "-root-mode", fmt.Sprintf("%04o", *x.RootMode&0o7777))
	}
	for _, p := range x.Pseudo {
		args = append(args, "-p", p)
	}
	if len(x.Exclude) > 0 {
		// mksquashfs takes every argument after -e as an exclude.
		args = append(args, "-e")
		args = append(args, x.Exclude...)
	}
	return args
}

// BuildRoot builds a squashfs root image from opt.Source and writes it to out
// atomically: a temporary file beside out, renamed into place when complete.
// The source is only read. The netboot fix-ups (unless opt.NoFixups) change
// the image only: /etc/fstab loses its root and swap entries (see FixFstab).
func BuildRoot(ctx context.Context, out string, opt RootOptions) (RootResult, error) {
	start := time.Now()
	if err := opt.Validate(); err != nil {
		return RootResult{}, err
	}
	if out == "" {
		return RootResult{}, fmt.Errorf("output: none given: %w", ErrOption)
	}
	engine, err := exec.LookPath("mksquashfs")
	if err != nil {
		return RootResult{}, ErrNoMksquashfs
	}
	var fi os.FileInfo
	if opt.Tar == nil {
		var err error
		fi, err = os.Stat(opt.Source)
		if err != nil {
			return RootResult{}, fmt.Errorf("source: %w", err)
		}
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return RootResult{}, fmt.Errorf("output %s: %w", out, err)
	}
	b := &build{engine: engine, opt: opt, log: opt.Log, progress: &lockedWriter{w: opt.Progress}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if fi != nil && fi.IsDir() {
		absSrc, err := filepath.Abs(opt.Source)
		if err != nil {
			return RootResult{}, fmt.Errorf("source %s: %w", opt.Source, err)
		}
		if strings.HasPrefix(absOut, strings.TrimSuffix(absSrc, "/")+"/") {
			return RootResult{}, fmt.Errorf("output %s is inside the source %s: %w", out, opt.Source, ErrOption)
		}
	} else if fi != nil && !fi.Mode().IsRegular() {
		return RootResult{}, fmt.Errorf("source %s: a %s: want a directory or a tar archive: %w", opt.Source, fi.Mode().Type(), ErrBadSource)
	}
	work, err := os.MkdirTemp(filepath.Dir(absOut), ".mkimage-root-*")
	if err != nil {
		return RootResult{}, fmt.Errorf("output %s: %w", out, err)
	}
	defer os.RemoveAll(work)
	b.work = work
	img := filepath.Join(work, "image.sqfs")

	var res RootResult
	switch {
	case fi == nil:
		res, err = b.fromTar(ctx, opt.Source, 0, img)
	case fi.IsDir():
		res, err = b.fromDir(ctx, opt.Source, img)
	default:
		res, err = b.fromTar(ctx, opt.Source, fi.Size(), img)
	}
	if err != nil {
		return RootResult{}, err
	}
	res.Digest, res.Size, err = hashFile(img)
	if err != nil {
		return RootResult{}, err
	}
	if err := os.Chmod(img, 0o644); err != nil {
		return RootResult{}, err
	}
	if err := os.Rename(img, absOut); err != nil {
		return RootResult{}, fmt.Errorf("output: %w", err)
	}
	if err := durable.Sync(filepath.Dir(absOut)); err != nil {
		return RootResult{}, err
	}
	res.Elapsed = time.Since(start)
	b.printf("image %s: %s, %d bytes, %d entries, %s\n", out, res.Digest, res.Size, res.Entries, res.Elapsed.Round(time.Millisecond))
	return res, nil
}

// BuildRootToStore builds a root image into st as a blob and returns its
// manifest (Kind root, with its compression; no name: names are published
// in the server's state store).
func BuildRootToStore(ctx context.Context, st *blobstore.Store, opt RootOptions) (blobstore.Manifest, error) {
	f, err := st.TempFile("root-*.sqfs")
	if err != nil {
		return blobstore.Manifest{}, err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	res, err := BuildRoot(ctx, tmp, opt)
	if err != nil {
		return blobstore.Manifest{}, err
	}
	d, n, err := st.Commit(tmp)
	if err != nil {
		return blobstore.Manifest{}, err
	}
	if d != res.Digest || n != res.Size {
		return blobstore.Manifest{}, fmt.Errorf("store %s: image changed between build (%s, %d bytes) and commit (%s, %d bytes)", st.Dir(), res.Digest, res.Size, d, n)
	}
	return blobstore.Manifest{Kind: blobstore.KindRoot, Digest: d, Size: n, Compression: opt.compression()}, nil
}

// build is one BuildRoot run.
type build struct {
	engine   string
	opt      RootOptions
	log      *slog.Logger
	progress *lockedWriter
	work     string // temporary directory beside the output, removed at the end
}

func (b *build) printf(format string, args ...any) {
	fmt.Fprintf(b.progress, format, args...)
}

// report prints and logs the fix-ups and notes of a build.
func (b *build) report(fixups, notes []string) {
	for _, f := range fixups {
		b.log.Info("fix-up", "change", f)
		b.printf("fix-up: %s\n", f)
	}
	for _, n := range notes {
		b.log.Info("fix-up skipped", "note", n)
		b.printf("note: %s\n", n)
	}
}

// fromDir runs mksquashfs on a directory, with the fixed fstab as a pseudo
// file that replaces the source's (excluded) one.
func (b *build) fromDir(ctx context.Context, src, img string) (RootResult, error) {
	var x engineExtras
	var fixups, notes []string
	if !b.opt.NoFixups {
		var err error
		fixups, notes, err = b.dirFstab(src, &x)
		if err != nil {
			return RootResult{}, err
		}
	}
	b.report(fixups, notes)

	// Count entries while mksquashfs runs: it reads the same tree, so the
	// second walk mostly hits the cache.
	count := make(chan int, 1)
	wctx, stopWalk := context.WithCancel(ctx)
	defer stopWalk()
	go func() {
		n := 0
		filepath.WalkDir(src, func(_ string, _ fs.DirEntry, err error) error {
			if wctx.Err() != nil {
				return filepath.SkipAll
			}
			if err == nil {
				n++
			}
			return nil
		})
		count <- n
	}()
	b.printf("mksquashfs %s (%s)\n", src, b.opt.compression())
	err := b.run(ctx, mksquashfsArgv(src, img, b.opt, x), nil, nil)
	if err != nil {
		stopWalk()
		<-count
		return RootResult{}, err
	}
	return RootResult{Entries: <-count, Fixups: fixups}, nil
}

// dirFstab prepares the fstab fix-up for a directory source: the fixed file
// in the work directory, given to mksquashfs as a pseudo file with the
// original's mode, owner and time. It returns the fix-ups, or notes saying why
// there are none.
func (b *build) dirFstab(src string, x *engineExtras) (fixups, notes []string, err error) {
	if fi, err := os.Lstat(filepath.Join(src, "etc")); err != nil || !fi.IsDir() {
		return nil, []string{"no etc directory: no fstab to fix"}, nil
	}
	p := filepath.Join(src, fstabPath)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, []string{"no " + fstabPath + ": nothing to fix"}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("fstab: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, []string{fstabPath + " is a symbolic link: not fixed"}, nil
	case !fi.Mode().IsRegular():
		return nil, []string{fstabPath + " is not a regular file: not fixed"}, nil
	case fi.Size() > maxFstab:
		return nil, []string{fmt.Sprintf("%s has %d bytes, more than %d: not fixed", fstabPath, fi.Size(), maxFstab)}, nil
	}
	in, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("fstab: %w", err)
	}
	out, dropped := FixFstab(in)
	if len(dropped) == 0 {
		return nil, nil, nil
	}
	a, ok := fileAttrs(fi)
	if !ok {
		return nil, []string{fstabPath + ": owner unknown on this system: not fixed"}, nil
	}
	fixed := filepath.Join(b.work, "fstab")
	if strings.ContainsAny(fixed, "\n\r") {
		return nil, nil, fmt.Errorf("work directory %q: a newline in the path: %w", b.work, ErrOption)
	}
	if err := os.WriteFile(fixed, out, 0o600); err != nil {
		return nil, nil, fmt.Errorf("fstab: %w", err)
	}
	// "filename F time mode uid gid command": a file with the command's output.
	x.Pseudo = append(x.Pseudo, fmt.Sprintf("%s F %d %04o %d %d cat %s", fstabPath, max(a.Mtime, 0), a.Mode, a.UID, a.GID, shellQuote(fixed)))
	x.Exclude = append(x.Exclude, fstabPath)
	for _, d := range dropped {
		fixups = append(fixups, fmt.Sprintf("%s: dropped %q", fstabPath, d))
	}
	return fixups, nil, nil
}

// fromTar streams the archive, decompressed and rewritten (see rewriteTar),
// into mksquashfs -tar. Nothing is extracted, so no root privileges or
// scratch space are needed for ownership, devices and xattrs. The archive is
// read twice: once to check it all before mksquashfs starts and to find its
// newest time (for SOURCE_DATE_EPOCH), once to build.
func (b *build) fromTar(ctx context.Context, src string, size int64, img string) (RootResult, error) {
	scan, comp, err := b.readTar(ctx, src, size, "check", nil)
	if err != nil {
		return RootResult{}, err
	}
	mode := int64(0o755) // what mkdir gives a root directory the archive does not describe
	var rootNote []string
	if r := scan.Root; r != nil {
		mode = r.Mode
		if r.UID != 0 || r.GID != 0 {
			rootNote = append(rootNote, fmt.Sprintf("the archive's root directory is owned by %d:%d; mksquashfs 4.5.1 -tar makes it 0:0", r.UID, r.GID))
		}
	}
	sde := min(max(scan.MaxMtime, 0), 1<<32-1)
	argv := mksquashfsArgv("-", img, b.opt, engineExtras{RootMode: &mode})
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(sde, 10)}
	b.printf("mksquashfs from %s tar %s (%s)\n", comp, src, b.opt.compression())

	pr, pw, err := os.Pipe()
	if err != nil {
		return RootResult{}, err
	}
	var st tarStats
	var werr error
	feed := func(cancel context.CancelFunc) {
		defer pw.Close()
		bw := bufio.NewWriterSize(pw, 1<<20)
		st, _, werr = b.readTar(ctx, src, size, "build", bw)
		if werr == nil {
			werr = bw.Flush()
		}
		if werr != nil && !isPipeError(werr) {
			cancel() // the archive changed under us, or the disk failed: stop mksquashfs
		}
	}
	err = b.run(ctx, argv, env, &tarInput{r: pr, feed: feed})
	switch {
	case werr != nil && !isPipeError(werr):
		return RootResult{}, werr
	case err != nil:
		return RootResult{}, err
	case werr != nil:
		return RootResult{}, fmt.Errorf("mksquashfs input: %w", werr)
	}
	b.report(st.Fixups, append(st.Notes, rootNote...))
	return RootResult{Entries: st.Entries, Fixups: st.Fixups}, nil
}

// readTar runs rewriteTar over the archive at src, writing to w (nil: check
// only), and returns what it saw and the archive's compression.
func (b *build) readTar(ctx context.Context, src string, size int64, phase string, w io.Writer) (tarStats, string, error) {
	if b.opt.Tar != nil {
		return b.readTarSource(ctx, src, w)
	}
	f, err := os.Open(src)
	if err != nil {
		return tarStats{}, "", fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	cr := &countingReader{r: f, total: size, progress: b.progress, name: phase + " " + src}
	plain, comp, closeDec, err := tarReader(cr)
	if err != nil {
		return tarStats{}, "", fmt.Errorf("source %s: %w", src, err)
	}
	defer closeDec()
	if comp == "" {
		comp = "uncompressed"
	}
	st, err := rewriteTar(plain, w, b.opt.NoFixups, b.capture(w))
	if err != nil && !isPipeError(err) {
		err = fmt.Errorf("source %s: %w", src, err)
	}
	return st, comp, err
}

// capture is the Capturer of the pass that writes to w: only the build
// pass (the check pass skips file data).
func (b *build) capture(w io.Writer) Capturer {
	if w == nil {
		return nil
	}
	return b.opt.Capture
}

// readTarSource runs rewriteTar over what b.opt.Tar writes, through a pipe.
func (b *build) readTarSource(ctx context.Context, src string, w io.Writer) (tarStats, string, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := b.opt.Tar.WriteTar(ctx, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	st, err := rewriteTar(pr, w, b.opt.NoFixups, b.capture(w))
	// Stop the writer if rewriteTar stopped early, then wait for it: its
	// error (a layer's digest, a path escaping the root) names the cause.
	pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
	if werr := <-done; werr != nil && !errors.Is(werr, io.ErrClosedPipe) {
		return st, "flattened", fmt.Errorf("source %s: %w", src, werr)
	}
	if err != nil && !isPipeError(err) {
		err = fmt.Errorf("source %s: %w", src, err)
	}
	return st, "flattened", err
}

// tarInput is mksquashfs's standard input: the read end of a pipe, and the
// function that feeds the write end (run calls it once mksquashfs has
// started, and waits for it).
type tarInput struct {
	r    *os.File
	feed func(cancel context.CancelFunc)
}

func isPipeError(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)
}

// run starts mksquashfs with args and waits for it.
func (b *build) run(parent context.Context, args, env []string, in *tarInput) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	b.log.Debug("run", "cmd", b.engine, "args", args)
	cmd := exec.CommandContext(ctx, b.engine, args...)
	// The caller's SOURCE_DATE_EPOCH conflicts with -mkfs-time: BuildRoot
	// decides the image's times itself.
	cmd.Env = append(envWithout(os.Environ(), "SOURCE_DATE_EPOCH"), env...)
	cmd.Stdout = &barWriter{progress: b.progress, log: b.log}
	tail := &tailWriter{log: b.log, max: 4 << 10}
	cmd.Stderr = tail
	cmd.WaitDelay = 10 * time.Second
	if in != nil {
		cmd.Stdin = in.r
	}
	if err := cmd.Start(); err != nil {
		if in != nil {
			in.r.Close()
		}
		return fmt.Errorf("mksquashfs: %w", err)
	}
	fed := make(chan struct{})
	if in != nil {
		in.r.Close() // the child has its copy
		go func() {
			defer close(fed)
			in.feed(cancel)
		}()
	} else {
		close(fed)
	}
	err := cmd.Wait()
	<-fed
	if err != nil && parent.Err() != nil {
		return fmt.Errorf("mksquashfs: %w", parent.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(tail.String())
		if msg == "" {
			return fmt.Errorf("mksquashfs: %w", err)
		}
		return fmt.Errorf("mksquashfs: %w: %s", err, msg)
	}
	return nil
}
