package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// Artifacts are everything a test boot needs, built once and shared by the
// tests (and by the boot benchmark).
type Artifacts struct {
	Dir       string
	Kernel    string // /boot/vmlinuz-RELEASE
	Release   string
	Agent     string // static overboot-init
	Relay     string // qemurelay, for Options.Relay
	Overboot  string // the overboot command, for tests of `overboot serve` itself
	Initramfs string
	Root      string // the test root squashfs
	RootSum   boot.Digest
	RootSize  int64
}

// BuildOptions shape Build.
type BuildOptions struct {
	PadBytes int64 // size of the incompressible /pad in the test root
	// InitramfsCompression: zstd (default), gzip, xz or none.
	InitramfsCompression string
	Log                  io.Writer // progress (nil: discard)
}

// Build compiles the agent and the shell, and makes the initramfs and the
// test root in dir.
func Build(ctx context.Context, dir string, o BuildOptions) (*Artifacts, error) {
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	a := &Artifacts{Dir: dir}
	var err error
	if a.Kernel, a.Release, err = FindKernel(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	modRoot, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	a.Agent = filepath.Join(dir, "overboot-init")
	a.Relay = filepath.Join(dir, "qemurelay")
	a.Overboot = filepath.Join(dir, "overboot")
	for _, b := range []struct{ out, pkg string }{
		{a.Agent, "./cmd/overboot-init"},
		{a.Relay, "./vmtest/qemurelay"},
		{a.Overboot, "./cmd/overboot"},
	} {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", b.out, b.pkg)
		cmd.Dir = modRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
		fmt.Fprintf(log, "vmtest: built %s in %.1fs\n", b.pkg, time.Since(t0).Seconds())
	}

	t0 := time.Now()
	a.Initramfs = filepath.Join(dir, "initramfs.img")
	f, err := os.Create(a.Initramfs)
	if err != nil {
		return nil, err
	}
	sum, err := initramfs.Build(ctx, f, initramfs.Options{Agent: a.Agent, KernelRelease: a.Release, Compression: o.InitramfsCompression})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	fmt.Fprintf(log, "vmtest: initramfs %d bytes, %d modules, in %.1fs\n", sum.Compressed, len(sum.Modules), time.Since(t0).Seconds())

	t0 = time.Now()
	tree := filepath.Join(dir, "testroot")
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	if err := BuildTestRoot(tree, TestRootOptions{PadBytes: o.PadBytes}); err != nil {
		return nil, err
	}
	a.Root = filepath.Join(dir, "root.squashfs")
	res, err := mkimage.BuildRoot(ctx, a.Root, mkimage.RootOptions{Source: tree})
	if err != nil {
		return nil, fmt.Errorf("test root: %w", err)
	}
	a.RootSum, a.RootSize = res.Digest, res.Size
	fmt.Fprintf(log, "vmtest: test root %d bytes (%s) in %.1fs\n", a.RootSize, a.RootSum.Short(), time.Since(t0).Seconds())
	return a, nil
}

// moduleRoot finds the directory holding go.mod, from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}
