package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// runMkimageInitramfs is "overboot mkimage initramfs".
func runMkimageInitramfs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage initramfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		agent   = fs.String("agent", "build/overboot-init", "the static agent `binary` (make build makes it)")
		shell   = fs.Bool("rescue-shell", true, "make /bin/sh a link to the agent, which is a POSIX shell when called sh (for overboot.onfail=shell)")
		release = fs.String("kernel-release", "", "kernel `release` whose modules to ship (default: the newest in /lib/modules)")
		modDir  = fs.String("modules-dir", "/lib/modules", "where the kernels' module trees are")
		mods    = fs.String("modules", strings.Join(initramfs.DefaultModules, ","), "comma-separated `modules` to load at boot (dependencies are added)")
		add     = fs.String("add-modules", "", "comma-separated `modules` to load in addition to -modules")
		generic = fs.Bool("generic", false, "add every wired network driver of the kernel ("+strings.Join(initramfs.NetworkDriverDirs, ", ")+") and their firmware: for machines that boot without iPXE, which cannot get a driver segment from the server")
		fw      = fs.Bool("firmware", false, "add the firmware files the shipped modules name, from -firmware-dir (implied by -generic)")
		fwDir   = fs.String("firmware-dir", initramfs.DefaultFirmwareDir, "where the firmware files are")
		comp    = fs.String("comp", "zstd", "compression: "+strings.Join(initramfs.Compressions, ", "))
		out     = fs.String("o", "", "write the initramfs to this `file`")
		dir     = fs.String("store", "", "store `directory` to add it to (with -name)")
		name    = fs.String("name", "", "`name` to publish it under in the store")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: overboot mkimage initramfs [flags] (-o FILE | -store DIR -name NAME)

Builds the overboot initramfs: the agent as /init (and, called as /bin/sh, the
rescue shell), and the kernel modules the agent loads at boot with everything they
depend on (modules.dep of the kernel release), as a compressed newc cpio.

flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{"mkimage initramfs: " + err.Error()}
	}
	if len(pos) != 0 {
		return usageError{fmt.Sprintf("mkimage initramfs: unexpected argument %q", pos[0])}
	}
	if (*out == "") == (*dir == "") || (*dir != "" && *name == "") || (*out != "" && *name != "") {
		return usageError{"mkimage initramfs: give either -o FILE or -store DIR -name NAME"}
	}
	o := initramfs.Options{Agent: *agent, NoRescueShell: !*shell, KernelRelease: *release, ModulesDir: *modDir, Compression: *comp,
		Firmware: *fw || *generic, FirmwareDir: *fwDir}
	o.Modules = splitList(*mods)
	o.Modules = append(o.Modules, splitList(*add)...)
	if o.Modules == nil {
		o.Modules = []string{}
	}
	if o.KernelRelease == "" && (len(o.Modules) > 0 || *generic) {
		if o.KernelRelease, err = newestRelease(*modDir); err != nil {
			return err
		}
	}
	if *generic {
		mt, err := initramfs.OpenModuleTree(*modDir, o.KernelRelease)
		if err != nil {
			return fmt.Errorf("mkimage initramfs: %w", err)
		}
		nets, err := mt.NetworkDrivers()
		if err != nil {
			return fmt.Errorf("mkimage initramfs: -generic: %w", err)
		}
		for _, n := range nets {
			if !slices.Contains(o.Modules, n) {
				o.Modules = append(o.Modules, n)
			}
		}
	}
	if *out != "" {
		f, err := os.CreateTemp(filepath.Dir(*out), ".initramfs-*")
		if err != nil {
			return fmt.Errorf("mkimage initramfs: %w", err)
		}
		defer os.Remove(f.Name())
		bw := bufio.NewWriterSize(f, 1<<20)
		sum, err := initramfs.Build(ctx, bw, o)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(f.Name(), 0o644)
		}
		if err == nil {
			err = os.Rename(f.Name(), *out)
		}
		if err != nil {
			return fmt.Errorf("mkimage initramfs: %w", err)
		}
		fmt.Fprintf(stdout, "%s %s %d bytes (%s; %d bytes uncompressed), %d files, %d module files for %s\n",
			*out, sum.Digest, sum.Compressed, o.Compression, sum.Uncompressed, sum.Files, len(sum.Modules), o.KernelRelease)
		firmwareNote(stdout, o, sum)
		return nil
	}
	st, err := blobstore.Open(*dir)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	if err := blobstore.CheckName(*name); err != nil {
		return usageError{"mkimage initramfs: " + err.Error()}
	}
	m, err := initramfs.BuildToStore(ctx, st, o)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	im, err := publishLocal(ctx, *dir, *name, m)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	fmt.Fprintf(stdout, "%s version %d: %s %d bytes (%s) for %s\n", im.Name, im.Version, im.Digest, im.Size, im.Compression, im.KernelRelease)
	return nil
}

// firmwareNote says which firmware went in and which the modules name
// but -firmware-dir lacks.
func firmwareNote(w io.Writer, o initramfs.Options, sum initramfs.Summary) {
	if !o.Firmware {
		return
	}
	fmt.Fprintf(w, "firmware: %d files from %s", len(sum.Firmware), o.FirmwareDir)
	if n := len(sum.MissingFirmware); n > 0 {
		fmt.Fprintf(w, "; %d named by the modules are not there (install the firmware packages for the NICs that need them): %s", n, strings.Join(sum.MissingFirmware, " "))
	}
	fmt.Fprintln(w)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// newestRelease picks the last kernel release with a modules.dep in dir.
func newestRelease(dir string) (string, error) {
	deps, _ := filepath.Glob(filepath.Join(dir, "*", "modules.dep"))
	if len(deps) == 0 {
		return "", fmt.Errorf("mkimage initramfs: no kernel modules in %s: install a kernel (linux-image-amd64) or give -kernel-release and -modules-dir", dir)
	}
	// Glob sorts; version order matters only with several kernels, and
	// then -kernel-release says which.
	if len(deps) > 1 {
		return "", fmt.Errorf("mkimage initramfs: several kernels in %s: choose one with -kernel-release", dir)
	}
	return filepath.Base(filepath.Dir(deps[0])), nil
}
