package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/internal/verity"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/vmtest"
)

// benchInit is the bench image's /sbin/init, the first program for every
// tool: it prints a marker (the kernel exec'd it and its interpreter, the
// root's /bin/sh), execs one binary from the root and prints a second
// marker once it returns, then shows the root mount and powers off. Only
// shell builtins apart from /bin/true, so the markers time the root's
// first program and its first exec and nothing else.
const benchInit = `#!/bin/sh
read up idle < /proc/uptime
echo "` + markerProgram + ` uptime=$up"
/bin/true
read up idle < /proc/uptime
echo "` + markerExec + ` uptime=$up"
while read k v unit; do case $k in MemTotal:) total=$v ;; MemAvailable:) avail=$v ;; esac; done < /proc/meminfo
echo "` + markerMem + ` used_kb=$((total - avail))"
while read dev dir type rest; do [ "$dir" = / ] && echo "` + markerRoot + ` $dev $type"; done < /proc/mounts
[ -n "$OVERBOOT_BENCH_SEQ" ] && /bin/bash ` + seqScriptPath + `
[ -n "$OVERBOOT_BENCH_STAY" ] && sleep "$OVERBOOT_BENCH_STAY"
echo o > /proc/sysrq-trigger
sleep 30
`

// seqScript is the bench image's sequential read, run by benchInit after
// its markers when the command line has OVERBOOT_BENCH_SEQ=PATH (the
// image's path on the server, http://10.0.2.100 in the guest) and
// OVERBOOT_BENCH_SEQ_FIRST (http or dev): in the same guest, one after the
// other with the page cache dropped, dd reads the image as an HTTP
// download (bash's /dev/tcp, HTTP/1.0) and the root's block device (the
// agent's /run/overboot/lower.dev: NBD through dm-verity on a lazy root),
// each to /dev/null in 1 MiB reads, and prints what dd says of each; then
// the NBD device under dm-verity alone, to show what the checks cost.
const seqScript = `#!/bin/bash
dev=$(readlink -f /run/overboot/lower.dev) || exit 1
http() {
	exec 3<>/dev/tcp/10.0.2.100/80 || return
	printf 'GET %s HTTP/1.0\r\nHost: 10.0.2.100\r\n\r\n' "$OVERBOOT_BENCH_SEQ" >&3
	echo "` + markerSeq + ` http $(dd of=/dev/null bs=1M <&3 2>&1 | tail -n 1)"
	exec 3<&-
}
device() { echo "` + markerSeq + ` dev $(dd if=$dev of=/dev/null bs=1M 2>&1 | tail -n 1)"; }
# The same bytes from the NBD device under dm-verity, unchecked: where the
# time goes.
raw() {
	nbd=$(ls /sys/block/${dev#/dev/}/slaves | head -n 1)
	echo "` + markerSeq + ` raw $(dd if=/dev/$nbd of=/dev/null bs=1M count=$(blockdev --getsize64 $dev) iflag=count_bytes 2>&1 | tail -n 1)"
}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
drop
if [ "$OVERBOOT_BENCH_SEQ_FIRST" = dev ]; then device; drop; http
else http; drop; device; fi
drop; raw
`

// seqScriptPath is where seqScript lives in the bench image.
const seqScriptPath = "/sbin/overboot-bench-seq"

// bootRounds is how many times each tool boots each image, interleaved.
const bootRounds = 3

// For working on one contender (development only: the ratios need the
// anchors, and the goals three rounds): OVERBOOT_BENCH_BOOT_ONLY names the
// contenders to boot (comma-separated: overboot, lazy, live-boot, ...,
// and wset for the working set's document boots; the anchors are not
// built when none is named),
// OVERBOOT_BENCH_BOOT_ROUNDS the rounds.
func bootOnly() []string {
	if v := os.Getenv("OVERBOOT_BENCH_BOOT_ONLY"); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("OVERBOOT_BENCH_BOOT_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return bootRounds
}

// bootCmdline is the start of every kernel command line of the section:
// the serial console, no "quiet", no randomness hints, and a reboot on
// panic (QEMU's -no-reboot then ends the boot at once).
var bootCmdline = []string{"console=ttyS0", "panic=-1"}

// bootSection boots a Debian minbase squashfs root over HTTP with overboot
// and with the reference initramfs generators (see anchors.go), all on the
// same QEMU machine (TCG, direct kernel boot of the same kernel, one vCPU,
// QEMU's default CPU model, no virtio-rng, 2 GiB), in interleaved rounds,
// and compares the time from QEMU's start to the root's first program and
// to its first exec of a binary. Then again with an image 4x as large.
// Needs root (debootstrap, chroot) and Debian's mirror the first time.
// OVERBOOT_BENCH_INITRAMFS_COMP (zstd, gzip, xz, none) picks the
// compression of overboot's initramfs.
func bootSection() Section {
	return Section{Name: "boot", Run: runBoot}
}

// benchImage is one root image the section boots.
type benchImage struct {
	Label string // "55 MB"
	Path  string
	File  string // its name on the anchors' file server
	Hex   string // sha256
	Size  int64
	// The dm-verity tree overboot's server makes of it (lower-mode lazy):
	// the same bytes verity.ParamsFor gives here.
	TreeHex, TreeRoot string
	TreeSize          int64
}

// contender is one way of booting the bench image: overboot (a variant of
// its command line) or an anchor.
type contender struct {
	Name     string // overboot, dracut-lean, ...
	Ref      string // the table's "ref tool" column (anchors)
	Initrd   string
	Server   string // the host end of the guest's http://10.0.2.100/
	Args     func(im benchImage) []string
	Big      bool // also boots the large image
	Huge     bool // also boots the image larger than the guest's RAM
	Overboot bool
}

func (c contender) cmdline(im benchImage) string {
	return strings.Join(append(append([]string{}, bootCmdline...), c.Args(im)...), " ")
}

// overbootVariant is one overboot command line. Its rows compare it with
// every anchor; a second variant (the agent's lazy mode) adds its own rows
// by joining the list in overbootVariants.
type overbootVariant struct {
	Name string // "overboot" for the default; others name their rows
	Args func(im benchImage) []string
	// Goals against the fastest anchor, for the first program and the
	// first exec ("" for none).
	ProgramGoal, ExecGoal string
	Huge                  bool // boots the image larger than RAM too
}

func overbootVariants() []overbootVariant {
	return []overbootVariant{
		{Name: "overboot", Args: overbootEager, ProgramGoal: "<= 0.3x"},
		{Name: "lazy", Args: overbootLazy, ProgramGoal: "<= 0.25x", ExecGoal: "<= 0.15x", Huge: true},
	}
}

// overbootLazy is overboot's static command line reading the image on
// demand through the keeper and dm-verity, the tree from overboot's
// server (made at start for the profiles with lower-mode lazy).
func overbootLazy(im benchImage) []string {
	return append(overbootEager(im),
		"overboot.lower.mode=lazy",
		"overboot.verity=http://"+vmtest.GuestServer+server.TreePrefix+im.Hex,
		"overboot.verity.digest=sha256:"+im.TreeHex,
		fmt.Sprintf("overboot.verity.size=%d", im.TreeSize),
		"overboot.verity.root="+im.TreeRoot)
}

// overbootEager is overboot's static command line (no boot document):
// download the image into RAM, check its digest, overlay on tmpfs.
func overbootEager(im benchImage) []string {
	return []string{
		"overboot.lower=http://" + vmtest.GuestServer + server.BlobPrefix + im.Hex,
		"overboot.digest=sha256:" + im.Hex, fmt.Sprintf("overboot.size=%d", im.Size),
		"overboot.onfail=poweroff", "overboot.onfail.delay=1s",
	}
}

// minbase makes (once) a Debian minbase tree with debootstrap from the apt
// mirror, puts the bench init in it as /sbin/init, and builds its squashfs.
func minbase(ctx context.Context, env *Env) (string, error) {
	tree := minbaseTree(env)
	if _, err := os.Stat(filepath.Join(tree, "usr/bin/apt")); err != nil {
		fmt.Fprintln(env.Out, "debootstrap --variant=minbase bookworm (once; kept in", tree+")")
		os.RemoveAll(tree)
		cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "bookworm", tree, "http://deb.debian.org/debian")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("debootstrap (install it with apt-get install debootstrap): %w\n%s", err, tail(string(out), 20))
		}
		debs, _ := filepath.Glob(filepath.Join(tree, "var/cache/apt/archives/*.deb"))
		for _, d := range debs {
			os.Remove(d)
		}
	}
	// Minbase has no /sbin/init: the bench init is every tool's default.
	// Written only when it changed: its mtime is in the image, and the
	// image's digest keys the large image's cache.
	for path, text := range map[string]string{"sbin/init": benchInit, seqScriptPath[1:]: seqScript} {
		p := filepath.Join(tree, path)
		if got, err := os.ReadFile(p); err != nil || string(got) != text {
			if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
				return "", err
			}
		}
	}
	// Left by earlier versions of this section, which named it instead.
	if err := os.Remove(filepath.Join(tree, "sbin/overboot-bench-init")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	img := filepath.Join(env.WorkDir, "minbase.squashfs")
	src, err := filepath.EvalSymlinks(tree)
	if err != nil {
		return "", err
	}
	if _, err := mkimage.BuildRoot(ctx, img, mkimage.RootOptions{Source: src}); err != nil {
		return "", err
	}
	return img, nil
}

// minbaseTree is the directory minbase keeps its tree in.
func minbaseTree(env *Env) string { return filepath.Join(env.WorkDir, "minbase") }

// padDir is where the large image keeps its padding: a directory the
// bench init never reads.
const padDir = "overboot-bench-pad"

// padFileBytes is the size of each padding file.
const padFileBytes = 16 << 20

// bigMinbase builds the large image: the minbase tree (hard links) plus
// incompressible padding of 3x the small image's size, so the squashfs is
// about 4x. The padding is a fixed pseudo-random stream (the image is the
// same from run to run), and the image is rebuilt only when the small one
// changed.
func bigMinbase(ctx context.Context, env *Env, tree string, small benchImage) (string, error) {
	return paddedMinbase(ctx, env, tree, small, "minbase-big", int((3*small.Size+padFileBytes-1)/padFileBytes))
}

// hugeMinbase is the minbase image padded past the guest's RAM (2 GiB):
// only a root read on demand can boot it.
func hugeMinbase(ctx context.Context, env *Env, tree string, small benchImage) (string, error) {
	return paddedMinbase(ctx, env, tree, small, "minbase-huge", int((int64(guestRAMBytes)+256<<20-small.Size)/padFileBytes)+1)
}

// guestRAMBytes is the bench machine's RAM (machine.Argv's -m).
const guestRAMBytes = 2 << 30

// paddedMinbase is the minbase tree with files padding files of fixed
// pseudo-random data, as NAME.squashfs in the work dir, made once.
func paddedMinbase(ctx context.Context, env *Env, tree string, small benchImage, name string, files int) (string, error) {
	img := filepath.Join(env.WorkDir, name+".squashfs")
	key := fmt.Sprintf("small sha256:%s, %d padding files of %d bytes\n", small.Hex, files, padFileBytes)
	if got, err := os.ReadFile(img + ".key"); err == nil && string(got) == key && fileSize(img) > 0 {
		return img, nil
	}
	pads := filepath.Join(env.WorkDir, "minbase-pad")
	if err := os.MkdirAll(pads, 0o755); err != nil {
		return "", err
	}
	big := filepath.Join(env.WorkDir, name)
	if err := os.RemoveAll(big); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--link", tree, big).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp -a --link %s %s: %w\n%s", tree, big, err, out)
	}
	if err := os.Mkdir(filepath.Join(big, padDir), 0o755); err != nil {
		return "", err
	}
	for i := range files {
		name := fmt.Sprintf("pad-%02d", i)
		p := filepath.Join(pads, name)
		if fileSize(p) != padFileBytes {
			if err := writeRandom(p, uint64(i), padFileBytes); err != nil {
				return "", err
			}
		}
		if err := os.Link(p, filepath.Join(big, padDir, name)); err != nil {
			return "", err
		}
	}
	if _, err := mkimage.BuildRoot(ctx, img, mkimage.RootOptions{Source: big}); err != nil {
		return "", err
	}
	os.RemoveAll(big) // hard links: the padding stays in minbase-pad
	return img, os.WriteFile(img+".key", []byte(key), 0o644)
}

// writeRandom writes n bytes of the ChaCha8 stream seeded by seed.
func writeRandom(path string, seed uint64, n int) error {
	var s [32]byte
	s[0] = byte(seed)
	buf := make([]byte, n)
	rand.NewChaCha8(s).Read(buf)
	return os.WriteFile(path, buf, 0o644)
}

func imageInfo(path, label, file string) (benchImage, error) {
	d, err := fileDigest(path)
	if err != nil {
		return benchImage{}, err
	}
	if label == "" {
		label = fmt.Sprintf("%.0f MB", float64(d.size)/1e6)
	}
	im := benchImage{Label: label, Path: path, File: file, Hex: d.hex, Size: d.size}
	f, err := os.Open(path)
	if err != nil {
		return im, err
	}
	defer f.Close()
	h := sha256.New()
	tr, err := verity.Build(f, d.size, h, verity.ParamsFor(d.hex))
	if err != nil {
		return im, fmt.Errorf("%s: %w", path, err)
	}
	im.TreeHex, im.TreeRoot, im.TreeSize = hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(tr.RootHash), tr.HashSize
	return im, nil
}

var timingRE = regexp.MustCompile(`overboot: timing: (.*)`)

func runBoot(ctx context.Context, env *Env) ([]Result, error) {
	t0 := time.Now()
	smallPath, err := minbase(ctx, env)
	if err != nil {
		return nil, err
	}
	small, err := imageInfo(smallPath, "", "minbase.squashfs")
	if err != nil {
		return nil, err
	}
	bigPath, err := bigMinbase(ctx, env, minbaseTree(env), small)
	if err != nil {
		return nil, fmt.Errorf("large image: %w", err)
	}
	big, err := imageInfo(bigPath, "", "minbase-big.squashfs")
	if err != nil {
		return nil, err
	}
	hugePath, err := hugeMinbase(ctx, env, minbaseTree(env), small)
	if err != nil {
		return nil, fmt.Errorf("image larger than RAM: %w", err)
	}
	huge, err := imageInfo(hugePath, "", "minbase-huge.squashfs")
	if err != nil {
		return nil, err
	}
	images := []benchImage{small, big, huge}

	a, err := vmtest.Build(ctx, filepath.Join(env.WorkDir, "boot"), vmtest.BuildOptions{InitramfsCompression: os.Getenv("OVERBOOT_BENCH_INITRAMFS_COMP")})
	if err != nil {
		return nil, err
	}

	// overboot: its own server, both images in its store.
	// lower-mode lazy makes the server build and serve each image's tree.
	conf := fmt.Sprintf("[profile default]\nkernel = %[1]s\ninitramfs = %[2]s\nroot = %[3]s\nlower-mode = lazy\n\n[profile big]\nkernel = %[1]s\ninitramfs = %[2]s\nroot = %[4]s\nlower-mode = lazy\n\n[profile huge]\nkernel = %[1]s\ninitramfs = %[2]s\nroot = %[5]s\nlower-mode = lazy\n",
		a.Kernel, a.Initramfs, small.Path, big.Path, huge.Path)
	cfg, err := config.Parse("conf", strings.NewReader(conf))
	if err != nil {
		return nil, err
	}
	cfg.Data = filepath.Join(env.WorkDir, "boot", "store")
	srv, err := server.Open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(sctx, ln)

	// The anchors: a plain file server with both images.
	www := filepath.Join(env.WorkDir, "anchors", "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, err
	}
	for _, im := range images[:2] {
		l := filepath.Join(www, im.File)
		os.Remove(l)
		if err := os.Symlink(im.Path, l); err != nil {
			return nil, err
		}
	}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fsrv := &http.Server{Handler: http.FileServer(http.Dir(www))}
	go fsrv.Serve(fln)
	defer fsrv.Close()

	var contenders []contender
	var errs []error
	if only := bootOnly(); only == nil || slices.ContainsFunc(only, func(n string) bool { return n != "overboot" && n != "lazy" && n != "wset" }) {
		contenders, errs = anchorContenders(ctx, env, a.Release, fln.Addr().String())
	}
	variants := overbootVariants()
	for _, v := range variants {
		contenders = append(contenders, contender{Name: v.Name, Initrd: a.Initramfs, Server: ln.Addr().String(), Args: v.Args, Big: true, Huge: v.Huge, Overboot: true})
	}
	if only := bootOnly(); only != nil {
		contenders = slices.DeleteFunc(contenders, func(c contender) bool { return !slices.Contains(only, c.Name) })
		fmt.Fprintf(env.Out, "OVERBOOT_BENCH_BOOT_ONLY: booting %d contenders only (development: no ratio without the anchors)\n", len(contenders))
	}

	fmt.Fprintf(env.Out, "images: %s (%s), %s (%s, %.1fx), %s (%s, larger than the guest's %d MiB RAM: lazy only); kernel %s\n", small.Label, small.Path, big.Label, big.Path, float64(big.Size)/float64(small.Size), huge.Label, huge.Path, guestRAMBytes>>20, a.Kernel)
	fmt.Fprintf(env.Out, "QEMU: %s\n", strings.Join(mustArgv(machine{Kernel: a.Kernel, Initrd: "INITRD", Cmdline: "CMDLINE", Relay: a.Relay, Server: "127.0.0.1:PORT"}), " "))
	for _, c := range contenders {
		fmt.Fprintf(env.Out, "%-15s initramfs %5.1f MB; cmdline: %s\n", c.Name, float64(fileSize(c.Initrd))/1e6, c.cmdline(small))
	}

	logs := filepath.Join(env.WorkDir, "boot", "consoles")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	// times[contender][image] holds each successful boot.
	times := map[string]map[string][]bootTimes{}
	boots := 0
	for round := 1; round <= rounds(); round++ {
		for _, im := range images {
			for _, c := range contenders {
				if im.Path == big.Path && !c.Big || im.Path == huge.Path && !c.Huge {
					continue
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				boots++
				t, err := bootOne(ctx, env, a, c, im, filepath.Join(logs, fmt.Sprintf("%s-%s-%d.log", c.Name, strings.ReplaceAll(im.Label, " ", ""), round)))
				if err != nil {
					errs = append(errs, fmt.Errorf("round %d, %s, %s image: %w", round, c.Name, im.Label, err))
					continue
				}
				fmt.Fprintf(env.Out, "round %d  %-15s %7s: kernel runs /init %5.1fs, first program %5.1fs, first exec %5.1fs; root %s\n",
					round, c.Name, im.Label, t.Kernel.Seconds(), t.Program.Seconds(), t.Exec.Seconds(), t.Root)
				if times[c.Name] == nil {
					times[c.Name] = map[string][]bootTimes{}
				}
				times[c.Name][im.Label] = append(times[c.Name][im.Label], t)
			}
		}
	}
	rs := bootResults(contenders, variants, images, times, float64(fileSize(a.Initramfs))/1e6)
	if only := bootOnly(); only == nil || slices.Contains(only, "wset") {
		ws, err := runWorkingSet(ctx, env, a, small, logs)
		if err != nil {
			errs = append(errs, err)
		}
		rs = append(rs, ws...)
	}
	for _, c := range contenders {
		if c.Name == "lazy" {
			seq, err := runSeqReads(ctx, env, a, c, big, logs)
			if err != nil {
				errs = append(errs, err)
			}
			rs = append(rs, seq...)
		}
	}
	fmt.Fprintf(env.Out, "boot section: %d boots, %.1f min in all (builds included)\n", boots, time.Since(t0).Minutes())
	return rs, errors.Join(errs...)
}

// bootOne boots c with image im once.
func bootOne(ctx context.Context, env *Env, a *vmtest.Artifacts, c contender, im benchImage, logPath string) (bootTimes, error) {
	argv, err := machine{Kernel: a.Kernel, Initrd: c.Initrd, Cmdline: c.cmdline(im), Relay: a.Relay, Server: c.Server}.Argv()
	if err != nil {
		return bootTimes{}, err
	}
	lines, err := bootLog(ctx, argv, logPath)
	if err != nil {
		return bootTimes{}, fmt.Errorf("%w (console %s):\n%s", err, logPath, consoleTail(lines, 15))
	}
	t, err := parseBoot(lines)
	if err != nil {
		return t, fmt.Errorf("%w (console %s):\n%s", err, logPath, consoleTail(lines, 15))
	}
	if c.Overboot {
		for _, l := range lines {
			if m := timingRE.FindStringSubmatch(l.Text); m != nil {
				fmt.Fprintf(env.Out, "  overboot agent: %s\n", m[1])
			}
		}
	}
	return t, nil
}

// bootLog is bootConsole with the console written to logPath.
func bootLog(ctx context.Context, argv []string, logPath string) ([]vmtest.Line, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bootConsole(ctx, argv, bootTimeout, f)
}

// bootResults turns the boots into rows: for each overboot variant and
// each anchor, the medians of the time to the first program and to the
// first exec, for each image both booted; then the initramfs sizes.
func bootResults(cs []contender, variants []overbootVariant, images []benchImage, times map[string]map[string][]bootTimes, ourInitramfsMB float64) []Result {
	var rs []Result
	for _, v := range variants {
		prefix := ""
		if v.Name != "overboot" {
			prefix = v.Name + ": "
		}
		for _, im := range images {
			ours := times[v.Name][im.Label]
			if len(ours) == 0 {
				continue
			}
			program := func(t bootTimes) time.Duration { return t.Program }
			exec := func(t bootTimes) time.Duration { return t.Exec }
			// The goals are against the fastest anchor on this image.
			fastest := ""
			for _, c := range cs {
				if ref := times[c.Name][im.Label]; !c.Overboot && len(ref) > 0 && (fastest == "" || bootMedian(ref, program) < bootMedian(times[fastest][im.Label], program)) {
					fastest = c.Name
				}
			}
			anchored := false
			for _, c := range cs {
				if c.Overboot {
					continue
				}
				ref := times[c.Name][im.Label]
				if len(ref) == 0 {
					continue
				}
				anchored = true
				pGoal, eGoal := "", ""
				if c.Name == fastest {
					pGoal, eGoal = v.ProgramGoal, v.ExecGoal
				}
				note := medianNote(len(ours), len(ref))
				rs = append(rs,
					Result{Section: "boot", Metric: fmt.Sprintf("%sfirst program, %s image, s", prefix, im.Label),
						Ours: bootMedian(ours, program), Ref: bootMedian(ref, program),
						RefName: c.Ref, Better: "lower", Goal: pGoal, Note: note},
					Result{Section: "boot", Metric: fmt.Sprintf("%sfirst exec, %s image, s", prefix, im.Label),
						Ours: bootMedian(ours, exec), Ref: bootMedian(ref, exec),
						RefName: c.Ref, Better: "lower", Goal: eGoal, Note: note},
				)
			}
			if !anchored {
				note := fmt.Sprintf("median of %d; no anchor can boot an image larger than RAM", len(ours))
				if !slices.ContainsFunc(cs, func(c contender) bool { return !c.Overboot }) {
					note = fmt.Sprintf("median of %d; no anchor booted (OVERBOOT_BENCH_BOOT_ONLY)", len(ours))
				}
				rs = append(rs,
					Result{Section: "boot", Metric: fmt.Sprintf("%sfirst program, %s image, s", prefix, im.Label), Ours: bootMedian(ours, program), Better: "lower", Note: note},
					Result{Section: "boot", Metric: fmt.Sprintf("%sfirst exec, %s image, s", prefix, im.Label), Ours: bootMedian(ours, exec), Better: "lower", Note: note})
			}
			used := make([]time.Duration, len(ours))
			for i, t := range ours {
				used[i] = time.Duration(t.UsedKB)
			}
			rs = append(rs, Result{Section: "boot", Metric: fmt.Sprintf("%sRAM used at first exec, %s image, MB", prefix, im.Label),
				Ours: float64(median(used)) * 1024 / 1e6, Better: "lower", Note: "MemTotal - MemAvailable"})
		}
	}
	for i, c := range cs {
		if c.Overboot {
			continue
		}
		goal := ""
		if i == 0 {
			goal = "<= 6 MB"
		}
		rs = append(rs, Result{Section: "boot", Metric: "initramfs, MB", Ours: ourInitramfsMB, Ref: float64(fileSize(c.Initrd)) / 1e6, RefName: c.Ref, Better: "lower", Goal: goal})
	}
	return rs
}

// bootMedian is the median of field over boots, in seconds.
func bootMedian(boots []bootTimes, field func(bootTimes) time.Duration) float64 {
	ds := make([]time.Duration, len(boots))
	for i, b := range boots {
		ds[i] = field(b)
	}
	return median(ds).Seconds()
}

func medianNote(ours, ref int) string {
	if ours == rounds() && ref == rounds() {
		return fmt.Sprintf("median of %d", ours)
	}
	return fmt.Sprintf("median of %d and %d boots (of %d)", ours, ref, rounds())
}

func mustArgv(m machine) []string {
	argv, err := m.Argv()
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	return argv
}

type digestInfo struct {
	hex  string
	size int64
}

func fileDigest(path string) (digestInfo, error) {
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		return digestInfo{}, err
	}
	return digestInfo{hex: strings.Fields(string(out))[0], size: fileSize(path)}, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
