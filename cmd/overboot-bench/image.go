package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// The image section compares importing a multi-layer container image
// (overboot mkimage root --from oci:DIR: the layers flattened into one tar
// stream into mksquashfs -tar, no root) with the path a user takes by hand
// today: as root, extract the layers in order into a directory, applying
// each layer's whiteouts first, then mksquashfs the directory. Both run in
// the same process conditions, interleaved, with the same compressor,
// block size and processors; the two images' file lists are compared.

func imageSection() Section {
	return Section{Name: "image", Run: runImage}
}

// imageInputVersion names the layout's recipe: a change to imageLayers
// must change it, so that the cached layout is rebuilt.
const imageInputVersion = "image-oci v1"

// imageBlock is the squashfs block size both paths use (mksquashfs's default).
const imageBlock = 128 << 10

// imageTime is the time of every entry the layers add or change (the
// entries copied from the minbase tree keep the tree's times).
var imageTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// handScript is the by-hand path, run with sh -c as root: $1 the scratch
// directory, $2 the image, $3 the processors, $4 the block size, then the layers (gzip tars)
// lowest first. Before a layer is extracted its whiteouts are applied, the
// way a runtime does: .wh.NAME removes NAME from the layers below,
// .wh..wh..opq empties its directory. The .wh. entries themselves are left
// out of the extraction (--exclude) rather than deleted afterwards, which
// would give their directories the time of the run.
const handScript = `set -eu
dir=$1 out=$2 procs=$3 block=$4
shift 4
mkdir -p "$dir"
for layer in "$@"; do
	tar -tzf "$layer" | while IFS= read -r p; do
		p=${p#./}; p=${p%/}
		case "$p" in */*) d=${p%/*} b=${p##*/} ;; *) d=. b=$p ;; esac
		case "$b" in
		.wh..wh..opq) [ ! -d "$dir/$d" ] || find "$dir/$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} + ;;
		.wh.*) rm -rf "$dir/$d/${b#.wh.}" ;;
		esac
	done
	tar -xpzf "$layer" --xattrs --xattrs-include='*' --numeric-owner --exclude='.wh.*' -C "$dir"
done
mksquashfs "$dir" "$out" -noappend -comp zstd -b "$block" -processors "$procs" -no-progress -quiet
`

// runImage times both paths (three interleaved rounds each, after one read
// of the layers to warm the page cache), measures their memory in one more
// round each, and compares the images' file lists.
func runImage(ctx context.Context, env *Env) ([]Result, error) {
	for _, tool := range []string{"mksquashfs", "unsquashfs", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: install squashfs-tools, tar and gzip", tool)
		}
	}
	overboot, err := filepath.Abs(filepath.Join(env.BuildDir, "overboot"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(overboot); err != nil {
		return nil, fmt.Errorf("%w (make build first)", err)
	}
	work, err := filepath.Abs(env.WorkDir)
	if err != nil {
		return nil, err
	}
	lay, err := imageInput(ctx, env, work)
	if err != nil {
		return nil, err
	}
	blobs, err := layerBlobs(lay)
	if err != nil {
		return nil, err
	}
	var unpacked int64
	for _, b := range blobs {
		n, err := gunzipSize(b)
		if err != nil {
			return nil, err
		}
		unpacked += n
	}
	fmt.Fprintf(env.Out, "input: %s, %d layers, %.1f MB of layer tars unpacked, %.1f MB gzip\n",
		lay, len(blobs), float64(unpacked)/1e6, float64(totalSize(blobs))/1e6)

	procs := strconv.Itoa(runtime.NumCPU())
	ourOut := filepath.Join(work, "image-ours.sqfs")
	refOut := filepath.Join(work, "image-ref.sqfs")
	refTree := filepath.Join(work, "image-ref-tree")
	ours := func() *exec.Cmd {
		return exec.CommandContext(ctx, overboot, "mkimage", "root", "--from", "oci:"+lay, "-o", ourOut,
			"--comp", "zstd", "--block-size", strconv.Itoa(imageBlock), "--processors", procs, "--no-fixups", "-q")
	}
	ref := func() *exec.Cmd {
		args := append([]string{"-c", handScript, "by-hand", refTree, refOut, procs, strconv.Itoa(imageBlock)}, blobs...)
		return exec.CommandContext(ctx, "sh", args...)
	}
	// Not timed: a fresh output and an empty scratch directory, as on a
	// first run. The layers were read once above (gunzipSize), so neither
	// path pays for the disk.
	prepareOurs := func() error {
		if err := os.Remove(ourOut); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	prepareRef := func() error {
		if err := os.Remove(refOut); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return os.RemoveAll(refTree)
	}
	var ourT, refT []float64
	for i := range 3 {
		for _, side := range []struct {
			name    string
			cmd     func() *exec.Cmd
			prepare func() error
			ts      *[]float64
		}{{"overboot", ours, prepareOurs, &ourT}, {"by hand", ref, prepareRef, &refT}} {
			if err := side.prepare(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			if err := runQuiet(side.cmd()); err != nil {
				return nil, fmt.Errorf("%s: %w", side.name, err)
			}
			*side.ts = append(*side.ts, time.Since(t0).Seconds())
			fmt.Fprintf(env.Out, "round %d: %s %.2fs\n", i+1, side.name, time.Since(t0).Seconds())
		}
	}
	sort.Float64s(ourT)
	sort.Float64s(refT)

	// Memory, in a round of its own (the sampling costs CPU).
	if err := prepareOurs(); err != nil {
		return nil, err
	}
	ourMem, err := measureMem(ours())
	if err != nil {
		return nil, fmt.Errorf("overboot: %w", err)
	}
	if err := prepareRef(); err != nil {
		return nil, err
	}
	refMem, err := measureMem(ref())
	if err != nil {
		return nil, fmt.Errorf("by hand: %w", err)
	}
	for _, m := range []struct {
		name string
		mem  memUse
	}{{"overboot", ourMem}, {"by hand", refMem}} {
		fmt.Fprintf(env.Out, "memory, %s: %s; concurrent peak %.1f MB; wait4 maxrss of the top process %.1f MB\n",
			m.name, m.mem.detail(), kB(m.mem.concurrent), kB(m.mem.waitMaxrss))
	}

	differ, known, err := compareListings(env, ourOut, refOut)
	if err != nil {
		return nil, err
	}
	listNote := "unsquashfs -lls, by path: type, mode, owner, size, time, link target"
	if len(known) > 0 {
		listNote += "; not counted: " + strings.Join(known, "; ")
	}
	os.RemoveAll(refTree)
	return []Result{
		{Section: "image", Metric: "3-layer OCI image to squashfs (zstd), s (median)", Ours: ourT[1], Ref: refT[1], RefName: "by hand", Better: "lower", Goal: "<= 1.0x",
			Note: "by hand: sh script, tar -xpzf per layer as root + whiteouts, then mksquashfs"},
		{Section: "image", Metric: "peak RSS summed over processes, MB", Ours: kB(ourMem.sum), Ref: kB(refMem.sum), RefName: "by hand", Better: "lower", Goal: "report",
			Note: fmt.Sprintf("each process's VmHWM sampled every 20 ms; concurrent peak %.0f vs %.0f MB", kB(ourMem.concurrent), kB(refMem.concurrent))},
		{Section: "image", Metric: "image size, MB", Ours: float64(fileSize(ourOut)) / 1e6, Ref: float64(fileSize(refOut)) / 1e6, RefName: "by hand", Better: "lower", Goal: "report"},
		{Section: "image", Metric: "file lists differ: entries", Ours: float64(differ), RefName: "-", Goal: "= 0", Note: listNote},
	}, nil
}

// runQuiet runs cmd without SOURCE_DATE_EPOCH (it would clamp the times of
// the by-hand image and not ours, or the other way round) and returns its
// output's tail in the error when it fails.
func runQuiet(cmd *exec.Cmd) error {
	cmd.Env = benchEnviron()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(string(out), 20))
	}
	return nil
}

func benchEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") {
			env = append(env, kv)
		}
	}
	return env
}

func kB(n int64) float64 { return float64(n) / 1000 }

func totalSize(paths []string) int64 {
	var n int64
	for _, p := range paths {
		n += fileSize(p)
	}
	return n
}

// gunzipSize reads the gzip file at path to the end and returns its
// uncompressed size.
func gunzipSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin = f
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, cerr := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("gzip -dc %s: %w", path, err)
	}
	return n, cerr
}

// layerBlobs returns the files of the layout's only image's layers,
// lowest first.
func layerBlobs(lay string) ([]string, error) {
	idx, err := layout.ImageIndexFromPath(lay)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s: %d images, want 1", lay, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var blobs []string
	for _, l := range m.Layers {
		blobs = append(blobs, filepath.Join(lay, "blobs", l.Digest.Algorithm, l.Digest.Hex))
	}
	return blobs, nil
}

// imageInput makes (once) the OCI layout the section imports, from the
// minbase tree: see imageLayers.
func imageInput(ctx context.Context, env *Env, work string) (string, error) {
	lay := filepath.Join(work, "image-oci")
	stamp := lay + ".version"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == imageInputVersion {
		if _, err := os.Stat(filepath.Join(lay, "index.json")); err == nil {
			return lay, nil
		}
	}
	if _, err := os.Stat(filepath.Join(minbaseTree(env), "usr/bin/apt")); err != nil {
		if _, err := minbase(ctx, env); err != nil {
			return "", err
		}
	}
	tree, err := filepath.EvalSymlinks(minbaseTree(env))
	if err != nil {
		return "", err
	}
	fmt.Fprintln(env.Out, "writing the 3-layer OCI image from", tree, "(once; kept in", lay+")")
	scratch, err := os.MkdirTemp(work, "image-oci-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	img := empty.Image
	for i, write := range imageLayers(tree) {
		file := filepath.Join(scratch, fmt.Sprintf("layer%d.tar", i+1))
		if err := writeLayer(file, write); err != nil {
			return "", fmt.Errorf("layer %d: %w", i+1, err)
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(file) })
		if err != nil {
			return "", fmt.Errorf("layer %d: %w", i+1, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return "", err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: imageTime}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	tmp := filepath.Join(scratch, "oci")
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "bench"})); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(lay); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, lay); err != nil {
		return "", err
	}
	fmt.Fprintln(env.Out, "image", d)
	return lay, os.WriteFile(stamp, []byte(imageInputVersion), 0o644)
}

func writeLayer(file string, write func(*layerWriter) error) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	lw := &layerWriter{tw: tar.NewWriter(bw), links: map[[2]uint64]string{}}
	if err := write(lw); err != nil {
		return err
	}
	if err := lw.tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// imageLayers returns the writers of the three layers, lowest first:
//
//  1. the minbase tree but /usr/share/doc and /usr/share/locale;
//  2. those two directories, a changed /etc/motd, and /opt/bench: a setuid
//     file with a security.capability xattr, a symbolic link, a
//     directory conf/ (made opaque by layer 3) and a directory tmp/
//     (deleted by layer 3);
//  3. whiteouts: /usr/share/doc/apt (a directory of layer 2),
//     /var/log/bootstrap.log (a file of layer 1), /usr/bin/uncompress (one
//     of two hard links of layer 1), /opt/bench/tmp; opaque directories
//     /etc/apt/apt.conf.d (of layer 1) and /opt/bench/conf (of layer 2),
//     each with a new file; a hard link /usr/local/bin/true-link to
//     /usr/bin/true of layer 1; a changed /etc/hostname.
//
// Like the layers docker writes, each holds the parent directories of
// what it adds, changes or deletes.
func imageLayers(tree string) []func(*layerWriter) error {
	moved := []string{"usr/share/doc", "usr/share/locale"}
	one := func(lw *layerWriter) error {
		return lw.copyTree(tree, ".", func(rel string) bool {
			for _, m := range moved {
				if rel == m {
					return false
				}
			}
			return true
		})
	}
	two := func(lw *layerWriter) error {
		for _, d := range []string{"usr", "usr/share"} {
			if err := lw.copyOne(tree, d); err != nil {
				return err
			}
		}
		for _, m := range moved {
			if err := lw.copyTree(tree, m, nil); err != nil {
				return err
			}
		}
		if err := lw.copyOne(tree, "etc"); err != nil {
			return err
		}
		if err := lw.file("etc/motd", 0o644, "Built for overboot's image benchmark.\n", nil); err != nil {
			return err
		}
		if err := lw.copyOne(tree, "opt"); err != nil {
			return err
		}
		trueBin, err := os.ReadFile(filepath.Join(tree, "usr/bin/true"))
		if err != nil {
			return err
		}
		steps := []error{
			lw.dir("opt/bench", 0o755),
			lw.dir("opt/bench/bin", 0o755),
			lw.file("opt/bench/bin/pinger", 0o4755, string(trueBin), map[string]string{"security.capability": capNetRaw}),
			lw.symlink("opt/bench/bin/sh", "../../../bin/sh"),
			lw.dir("opt/bench/conf", 0o750),
		}
		for _, n := range []string{"a", "b", "c"} {
			steps = append(steps, lw.file("opt/bench/conf/"+n+".conf", 0o640, "value = "+n+"\n", nil))
		}
		steps = append(steps, lw.dir("opt/bench/tmp", 0o1777))
		for i := range 20 {
			steps = append(steps, lw.file(fmt.Sprintf("opt/bench/tmp/scratch-%02d", i), 0o600, strings.Repeat("x", 1000*i), nil))
		}
		return errors.Join(steps...)
	}
	three := func(lw *layerWriter) error {
		var steps []error
		copyDirs := func(ds ...string) {
			for _, d := range ds {
				steps = append(steps, lw.copyOne(tree, d))
			}
		}
		copyDirs("etc", "etc/apt")
		steps = append(steps,
			lw.file("etc/hostname", 0o644, "bench-image\n", nil),
			lw.dir("etc/apt/apt.conf.d", 0o755),
			lw.file("etc/apt/apt.conf.d/.wh..wh..opq", 0o644, "", nil),
			lw.file("etc/apt/apt.conf.d/99bench", 0o644, "APT::Install-Recommends \"false\";\n", nil),
			lw.dir("opt", 0o755),
			lw.dir("opt/bench", 0o755),
			lw.dir("opt/bench/conf", 0o750),
			lw.file("opt/bench/conf/.wh..wh..opq", 0o644, "", nil),
			lw.file("opt/bench/conf/d.conf", 0o640, "value = d\n", nil),
			lw.file("opt/bench/.wh.tmp", 0o644, "", nil),
		)
		copyDirs("usr", "usr/bin")
		steps = append(steps, lw.file("usr/bin/.wh.uncompress", 0o644, "", nil))
		copyDirs("usr/local", "usr/local/bin")
		steps = append(steps, lw.hardlink("usr/local/bin/true-link", "usr/bin/true"))
		steps = append(steps, lw.dir("usr/share", 0o755), lw.dir("usr/share/doc", 0o755),
			lw.file("usr/share/doc/.wh.apt", 0o644, "", nil))
		copyDirs("var", "var/log")
		steps = append(steps, lw.file("var/log/.wh.bootstrap.log", 0o644, "", nil))
		return errors.Join(steps...)
	}
	return []func(*layerWriter) error{one, two, three}
}

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2, cap_net_raw
// permitted and effective).
var capNetRaw = string([]byte{
	0x01, 0x00, 0x00, 0x02,
	0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
})

// layerWriter writes one layer's tar.
type layerWriter struct {
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, inode) of a file with several links: its first name in this layer
}

// copyTree copies rel (relative to tree; "." the root) and everything
// under it, in lexical order; keep (when not nil) says which paths to take,
// a directory refused with everything under it.
func (lw *layerWriter) copyTree(tree, rel string, keep func(rel string) bool) error {
	return filepath.WalkDir(filepath.Join(tree, rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		if keep != nil && !keep(r) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return lw.copyOne(tree, r)
	})
}

// copyOne writes the entry for tree/rel as it is on disk: type, mode,
// owner, time, content, link target, device numbers, xattrs; a file whose
// inode this layer already holds becomes a hard link to it.
func (lw *layerWriter) copyOne(tree, rel string) error {
	p := filepath.Join(tree, rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	var target string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	h.Name = filepath.ToSlash(rel)
	if rel == "." {
		h.Name = "./"
	} else if fi.IsDir() {
		h.Name += "/"
	}
	h.Uid, h.Gid, h.Uname, h.Gname = int(st.Uid), int(st.Gid), "", ""
	h.ModTime, h.AccessTime, h.ChangeTime = fi.ModTime().Truncate(time.Second), time.Time{}, time.Time{}
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := lw.links[key]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
		} else {
			lw.links[key] = h.Name
		}
	}
	if err := addXattrs(h, p); err != nil {
		return err
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(lw.tw, f)
	return err
}

// addXattrs puts the extended attributes of the file at p into h.
func addXattrs(h *tar.Header, p string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: xattrs: %w", p, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return fmt.Errorf("%s: xattr %s: %w", p, name, err)
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = string(v[:m])
	}
	return nil
}

func (lw *layerWriter) dir(name string, mode int64) error {
	return lw.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: imageTime})
}

func (lw *layerWriter) file(name string, mode int64, body string, xattrs map[string]string) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: imageTime}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := io.WriteString(lw.tw, body)
	return err
}

func (lw *layerWriter) symlink(name, target string) error {
	return lw.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: imageTime})
}

func (lw *layerWriter) hardlink(name, target string) error {
	return lw.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o755, ModTime: imageTime})
}

// memUse is one path's memory: each process's peak (VmHWM), their sum,
// the peak of the processes' resident sets at one moment (VmRSS summed at
// each sample), and the top process's wait4 ru_maxrss (the largest of it
// and its descendants, which Linux reports for a waited-for child), in kB.
type memUse struct {
	peaks      map[int]procPeak
	sum        int64
	concurrent int64
	waitMaxrss int64
}

type procPeak struct {
	name string
	hwm  int64
}

// detail lists the processes by name with their peaks (the largest of
// each name's several processes, with the count).
func (m memUse) detail() string {
	type agg struct {
		n   int
		max int64
	}
	by := map[string]*agg{}
	for _, p := range m.peaks {
		a := by[p.name]
		if a == nil {
			a = &agg{}
			by[p.name] = a
		}
		a.n++
		a.max = max(a.max, p.hwm)
	}
	var names []string
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return by[names[i]].max > by[names[j]].max })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f MB (x%d)", n, kB(by[n].max), by[n].n))
	}
	return fmt.Sprintf("sum of %d processes' peaks %.1f MB: %s", len(m.peaks), kB(m.sum), strings.Join(parts, ", "))
}

// measureMem runs cmd, sampling its process tree in /proc every 20 ms.
// A process that lives less than one interval can be missed (rm, find:
// small); each process's VmHWM is its peak so far, so a sampled process's
// peak is missed only for growth in its last interval.
func measureMem(cmd *exec.Cmd) (memUse, error) {
	cmd.Env = benchEnviron()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return memUse{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	m := memUse{peaks: map[int]procPeak{}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		sampleTree(cmd.Process.Pid, &m)
		select {
		case err = <-done:
			break loop
		case <-tick.C:
		}
	}
	if err != nil {
		return memUse{}, fmt.Errorf("%w\n%s", err, tail(out.String(), 20))
	}
	for _, p := range m.peaks {
		m.sum += p.hwm
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.waitMaxrss = ru.Maxrss
	}
	return m, nil
}

// sampleTree records the memory of root and its descendants.
func sampleTree(root int, m *memUse) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var rss int64
	for q := []int{root}; len(q) > 0; q = q[1:] {
		pid := q[0]
		q = append(q, children[pid]...)
		name, hwm, cur, ok := procMem(pid)
		if !ok {
			continue
		}
		rss += cur
		if p := m.peaks[pid]; hwm >= p.hwm {
			m.peaks[pid] = procPeak{name: name, hwm: hwm}
		}
	}
	m.concurrent = max(m.concurrent, rss)
}

// procMem reads a process's name, VmHWM and VmRSS (kB).
func procMem(pid int) (string, int64, int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", 0, 0, false
	}
	var name string
	var hwm, rss int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			name = v
		case "VmHWM":
			hwm, _ = strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		case "VmRSS":
			rss, _ = strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		}
	}
	return name, hwm, rss, name != ""
}

// listing is unsquashfs -lls of an image: each path ("/usr", "" the
// root) with the rest of its line (type and mode,
// owner, size, time, link target).
func listing(img string) (map[string]string, error) {
	out, err := exec.Command("unsquashfs", "-lls", img).Output()
	if err != nil {
		return nil, fmt.Errorf("unsquashfs -lls %s: %w", img, err)
	}
	l := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// "drwxr-xr-x 0/0 123 2024-01-02 03:04 /usr": the path starts
		// after the fifth field (a device's "maj, min" size is two).
		if len(line) < 10 || !strings.ContainsRune("-dlcbps", rune(line[0])) {
			continue
		}
		f := strings.Fields(line)
		n := 5
		if line[0] == 'c' || line[0] == 'b' {
			n = 6
		}
		if len(f) <= n {
			continue
		}
		attrs := strings.Join(f[:n], " ")
		rest := strings.Join(f[n:], " ")
		path, target, _ := strings.Cut(rest, " -> ")
		path, ok := strings.CutPrefix(path, "squashfs-root")
		if !ok {
			return nil, fmt.Errorf("unsquashfs -lls %s: unexpected line %q", img, line)
		}
		if target != "" {
			attrs += " -> " + target
		}
		l[path] = attrs
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := l[""]; !ok {
		return nil, fmt.Errorf("unsquashfs -lls %s: no root directory in its output", img)
	}
	return l, nil
}

// compareListings compares the two images' file lists by path and prints
// the first differences. Two differences are understood and not counted
// (they are reported in the returned notes):
//   - a directory's size: squashfs's size of a directory is that of its
//     encoded listing, a 12-byte header for each run of entries whose inodes
//     share a metadata block, so it depends on the order the inodes were
//     written (tar order for overboot, a directory scan by hand), not on
//     the directory's entries, which are compared entry by entry;
//   - the root directory's time: mksquashfs 4.5.1 -tar ignores -root-time,
//     so overboot gives the root the image's newest time (SOURCE_DATE_EPOCH).
func compareListings(env *Env, ours, ref string) (int, []string, error) {
	a, err := listing(ours)
	if err != nil {
		return 0, nil, err
	}
	b, err := listing(ref)
	if err != nil {
		return 0, nil, err
	}
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	var sorted []string
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var diffs, known []string
	dirSizes := 0
	for _, p := range sorted {
		x, inA := a[p]
		y, inB := b[p]
		switch {
		case x == y:
		case !inA:
			diffs = append(diffs, fmt.Sprintf("only by hand: %s %s", y, p))
		case !inB:
			diffs = append(diffs, fmt.Sprintf("only overboot: %s %s", x, p))
		case x[0] == 'd' && y[0] == 'd' && withoutFields(x, 2) == withoutFields(y, 2):
			dirSizes++
		case p == "" && withoutFields(x, 2, 3, 4) == withoutFields(y, 2, 3, 4):
			known = append(known, fmt.Sprintf("the root directory's time (overboot %s, by hand %s: mksquashfs -tar ignores -root-time)", timeOf(x), timeOf(y)))
		default:
			diffs = append(diffs, fmt.Sprintf("differs: %q: overboot %s, by hand %s", p, x, y))
		}
	}
	if dirSizes > 0 {
		known = append(known, fmt.Sprintf("%d directories' sizes (squashfs's directory encoding, by inode order)", dirSizes))
	}
	fmt.Fprintf(env.Out, "file lists: %d entries overboot, %d by hand, %d differ\n", len(a), len(b), len(diffs))
	for i, d := range diffs {
		if i == 20 {
			fmt.Fprintf(env.Out, "  ... %d more\n", len(diffs)-i)
			break
		}
		fmt.Fprintln(env.Out, " ", d)
	}
	for _, k := range known {
		fmt.Fprintln(env.Out, "  not counted:", k)
	}
	return len(diffs), known, nil
}

// withoutFields is a listing's attributes ("mode uid/gid size date time
// [-> target]") without the fields numbered drop (0 the mode).
func withoutFields(attrs string, drop ...int) string {
	var keep []string
	for i, f := range strings.Fields(attrs) {
		if !slices.Contains(drop, i) {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

func timeOf(attrs string) string {
	f := strings.Fields(attrs)
	if len(f) < 5 {
		return ""
	}
	return f[3] + " " + f[4]
}
