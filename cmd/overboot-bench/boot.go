package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/internal/bench"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/vmtest"
)

// Reference figures from ENV.md (same machine class, TCG, Debian 6.1,
// 52 MiB minbase image over HTTP): not measured in this run, because
// installing dracut replaces the host's initramfs-tools.
const (
	dracutLeanSeconds = 28.0
	dracutLeanBytes   = 33e6
)

const benchInitMarker = "OVERBOOT-BENCH-INIT"

// benchInit is the minbase image's first program for the measurement: it
// prints the marker and powers off at once.
const benchInit = `#!/bin/sh
read up idle < /proc/uptime
echo "` + benchInitMarker + ` uptime=$up"
echo o > /proc/sysrq-trigger
sleep 30
`

// bootSection measures the time from QEMU's start to the first program of
// a Debian minbase image served by the overboot server (direct kernel
// boot, TCG). Knobs for experiments, all optional: OVERBOOT_BENCH_CPUS
// (guest CPUs, default 2), OVERBOOT_BENCH_CPU (QEMU -cpu model, default
// max), OVERBOOT_BENCH_INITRAMFS_COMP (zstd, gzip, xz, none) and
// OVERBOOT_BENCH_APPEND (extra kernel arguments).
func bootSection() bench.Section {
	return bench.Section{Name: "boot", Run: runBoot}
}

// minbase makes (once) a Debian minbase tree with debootstrap from the apt
// mirror and builds its squashfs.
func minbase(ctx context.Context, env *bench.Env) (string, error) {
	tree := filepath.Join(env.WorkDir, "minbase")
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
	if err := os.WriteFile(filepath.Join(tree, "sbin/overboot-bench-init"), []byte(benchInit), 0o755); err != nil {
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

var timingRE = regexp.MustCompile(`overboot: timing: (.*)`)

func runBoot(ctx context.Context, env *bench.Env) ([]bench.Result, error) {
	img, err := minbase(ctx, env)
	if err != nil {
		return nil, err
	}
	a, err := vmtest.Build(ctx, filepath.Join(env.WorkDir, "boot"), vmtest.BuildOptions{InitramfsCompression: os.Getenv("OVERBOOT_BENCH_INITRAMFS_COMP")})
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\n", a.Kernel, a.Initramfs, img)
	cfg, err := config.Parse("bench.conf", strings.NewReader(conf))
	if err != nil {
		return nil, err
	}
	cfg.Data = filepath.Join(env.WorkDir, "boot", "store")
	srv, err := server.Open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Serve(sctx, ln)
	imgRes, err := fileDigest(img)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Out, "image %s: %.1f MB; initramfs %.1f MB\n", img, float64(imgRes.size)/1e6, float64(fileSize(a.Initramfs))/1e6)

	const runs = 3
	var total []float64
	for i := range runs {
		vm, err := vmtest.Start(ctx, vmtest.Options{
			Kernel: a.Kernel, Initrd: a.Initramfs, MemoryMB: 2048, CPUs: benchCPUs, CPU: os.Getenv("OVERBOOT_BENCH_CPU"), Relay: a.Relay,
			Append: strings.Join([]string{"console=ttyS0", "quiet", "random.trust_cpu=on", "panic=-1",
				"overboot.lower=http://" + vmtest.GuestServer + server.BlobPrefix + imgRes.hex,
				"overboot.digest=sha256:" + imgRes.hex, fmt.Sprintf("overboot.size=%d", imgRes.size),
				"overboot.init=/sbin/overboot-bench-init", "overboot.onfail=poweroff", "overboot.onfail.delay=1s", os.Getenv("OVERBOOT_BENCH_APPEND")}, " "),
			Forwards: []vmtest.Forward{{GuestPort: 80, HostAddr: ln.Addr().String()}},
		}, nil)
		if err != nil {
			return nil, err
		}
		l, idx, err := vm.ExpectAny(3*time.Minute, benchInitMarker, "overboot: BOOT FAILED")
		vm.Kill()
		if err != nil || idx != 0 {
			return nil, fmt.Errorf("boot %d did not reach the image's init: %v\n%s", i+1, err, vm.Tail(30))
		}
		total = append(total, l.At.Seconds())
		timing := ""
		for _, x := range vm.Lines() {
			if m := timingRE.FindStringSubmatch(x.Text); m != nil {
				timing = m[1]
			}
			if strings.Contains(x.Text, ": ok in ") {
				fmt.Fprintf(env.Out, "  %s\n", x)
			}
		}
		fmt.Fprintf(env.Out, "boot %d: QEMU start to the image's init %.2fs; agent: %s\n", i+1, l.At.Seconds(), timing)
	}
	sort.Float64s(total)
	med := total[len(total)/2]
	return []bench.Result{
		{Section: "boot", Metric: "QEMU start to image init, s (median of 3)", Ours: med, Ref: dracutLeanSeconds, RefName: "dracut", Better: "lower", Goal: "<= 0.3x", Note: "ref: ENV.md figure, not measured"},
		{Section: "boot", Metric: "initramfs size, MB", Ours: float64(fileSize(a.Initramfs)) / 1e6, Ref: dracutLeanBytes / 1e6, RefName: "dracut", Better: "lower", Goal: "<= 6 MB", Note: "ref: ENV.md figure"},
	}, nil
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

// benchCPUs is the guest's CPU count (default 2, as many as the host has;
// the agent hashes the image while it receives it); OVERBOOT_BENCH_CPUS
// overrides it.
var benchCPUs = func() int {
	if n, err := strconv.Atoi(os.Getenv("OVERBOOT_BENCH_CPUS")); err == nil && n > 0 {
		return n
	}
	return 2
}()
