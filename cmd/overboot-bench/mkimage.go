package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/overboot/overboot/mkimage"
)

func mkimageSection() Section {
	return Section{Name: "mkimage", Run: runMkimage}
}

// runMkimage builds the same Debian minbase tree with mksquashfs and with
// overboot's mkimage (zstd, mksquashfs's default level, all processors),
// alternating, three times each.
func runMkimage(ctx context.Context, env *Env) ([]Result, error) {
	if _, err := minbase(ctx, env); err != nil {
		return nil, err
	}
	tree, err := filepath.EvalSymlinks(filepath.Join(env.WorkDir, "minbase"))
	if err != nil {
		return nil, err
	}
	refOut := filepath.Join(env.WorkDir, "mksquashfs.sqfs")
	ourOut := filepath.Join(env.WorkDir, "mkimage.sqfs")
	var refT, ourT []float64
	var refSize, ourSize int64
	for i := range 3 {
		os.Remove(refOut)
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "mksquashfs", tree, refOut, "-noappend", "-comp", "zstd", "-quiet", "-no-progress")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mksquashfs: %w\n%s", err, out)
		}
		refT = append(refT, time.Since(t0).Seconds())
		refSize = fileSize(refOut)

		t0 = time.Now()
		res, err := mkimage.BuildRoot(ctx, ourOut, mkimage.RootOptions{Source: tree, Compression: "zstd"})
		if err != nil {
			return nil, err
		}
		ourT = append(ourT, time.Since(t0).Seconds())
		ourSize = res.Size
		fmt.Fprintf(env.Out, "run %d: mksquashfs %.2fs %d bytes; mkimage %.2fs %d bytes (%d entries)\n", i+1, refT[i], refSize, ourT[i], ourSize, res.Entries)
	}
	sort.Float64s(refT)
	sort.Float64s(ourT)
	return []Result{
		{Section: "mkimage", Metric: "minbase tree to squashfs (zstd), s (median)", Ours: ourT[1], Ref: refT[1], RefName: "mksquashfs", Better: "lower", Goal: "<= 1.05x"},
		{Section: "mkimage", Metric: "image size, MB", Ours: float64(ourSize) / 1e6, Ref: float64(refSize) / 1e6, RefName: "mksquashfs", Better: "lower", Goal: "<= 1.05x"},
	}, nil
}
