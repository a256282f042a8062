package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/sitetls"
)

// mkimageInitramfsOptions are mkimage initramfs's flags.
type mkimageInitramfsOptions struct {
	agent, release, modDir, mods, add, fwDir, comp, out, dir, name, ca string
	shell, generic, fw, noCA                                           bool
}

func mkimageInitramfsCmd(sio stdio) *cobra.Command {
	var f mkimageInitramfsOptions
	c := &cobra.Command{
		Use:   "initramfs (-o FILE | --store DIR --name NAME)",
		Short: "initramfs with the overboot agent and the kernel modules it needs",
		Long: `Builds the overboot initramfs: the agent as /init (and, called as /bin/sh, the
rescue shell), and the kernel modules the agent loads at boot with everything they
depend on (modules.dep of the kernel release), as a compressed newc cpio.

Output: -o FILE, or --store DIR --name NAME: the initramfs goes into the
data directory DIR by its sha256 and NAME is published in DIR's state store.

The site CA: --ca FILE, or with --store DIR the CA the server made in DIR
(DIR/tls/ca.pem, when it is there; --no-ca leaves it out), goes in at
/` + initramfs.SiteCAPath + `. The agent trusts that CA, and nothing else (no
system roots), for https URLs: the document, the reports and, with
lower-tls, the image, when the server has tls-listen. Rebuild the
initramfs when the CA changes.`,
		Args: exactArgs(0, "no arguments (flags only)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMkimageInitramfs(cmd.Context(), cmd, f, sio.out)
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.agent, "agent", defaultAgent(), "the static agent `binary` (make build makes build/overboot-init; the Debian package installs "+installedAgent+")")
	fs.BoolVar(&f.shell, "rescue-shell", true, "make /bin/sh a link to the agent, which is a POSIX shell when called sh (for overboot.onfail=shell); --rescue-shell=false leaves it out")
	fs.StringVar(&f.release, "kernel-release", "", "kernel `release` whose modules to ship (default: the newest in /lib/modules)")
	fs.StringVar(&f.modDir, "modules-dir", "/lib/modules", "where the kernels' module trees are")
	fs.StringVar(&f.mods, "modules", strings.Join(initramfs.DefaultModules, ","), "comma-separated `modules` to load at boot (dependencies are added)")
	fs.StringVar(&f.add, "add-modules", "", "comma-separated `modules` to load in addition to --modules")
	fs.BoolVar(&f.generic, "generic", false, "add every wired network driver of the kernel ("+strings.Join(initramfs.NetworkDriverDirs, ", ")+") and their firmware: for machines that boot without iPXE, which cannot get a driver segment from the server")
	fs.BoolVar(&f.fw, "firmware", false, "add the firmware files the shipped modules name, from --firmware-dir (implied by --generic)")
	fs.StringVar(&f.fwDir, "firmware-dir", initramfs.DefaultFirmwareDir, "where the firmware files are")
	fs.StringVar(&f.comp, "comp", "zstd", "compression: "+strings.Join(initramfs.Compressions, ", "))
	fs.StringVarP(&f.out, "out", "o", "", "write the initramfs to this `file`")
	fs.StringVar(&f.dir, "store", "", "store `directory` to add it to (with --name)")
	fs.StringVar(&f.name, "name", "", "`name` to publish it under in the store")
	fs.StringVar(&f.ca, "ca", "", "the site CA `file` (PEM) the agent trusts for https (default with --store: DIR/tls/ca.pem when the server made one)")
	fs.BoolVar(&f.noCA, "no-ca", false, "no site CA, even with --store (the agent then fetches over HTTP only)")
	c.MarkFlagFilename("ca", "pem", "crt")
	c.MarkFlagFilename("agent")
	c.MarkFlagDirname("modules-dir")
	c.MarkFlagDirname("firmware-dir")
	c.MarkFlagDirname("store")
	return c
}

// runMkimageInitramfs is "overboot mkimage initramfs".
func runMkimageInitramfs(ctx context.Context, c *cobra.Command, fl mkimageInitramfsOptions, stdout io.Writer) error {
	if (fl.out == "") == (fl.dir == "") || (fl.dir != "" && fl.name == "") || (fl.out != "" && fl.name != "") {
		return usagef(c, "give either -o FILE or --store DIR --name NAME")
	}
	if fl.noCA && fl.ca != "" {
		return usagef(c, "--ca and --no-ca: give one")
	}
	var err error
	o := initramfs.Options{Agent: fl.agent, SiteCA: siteCA(fl), NoRescueShell: !fl.shell, KernelRelease: fl.release, ModulesDir: fl.modDir, Compression: fl.comp,
		Firmware: fl.fw || fl.generic, FirmwareDir: fl.fwDir}
	o.Modules = splitList(fl.mods)
	o.Modules = append(o.Modules, splitList(fl.add)...)
	if o.Modules == nil {
		o.Modules = []string{}
	}
	if o.KernelRelease == "" && (len(o.Modules) > 0 || fl.generic) {
		if o.KernelRelease, err = newestRelease(fl.modDir); err != nil {
			return err
		}
	}
	if fl.generic {
		mt, err := initramfs.OpenModuleTree(fl.modDir, o.KernelRelease)
		if err != nil {
			return fmt.Errorf("mkimage initramfs: %w", err)
		}
		nets, err := mt.NetworkDrivers()
		if err != nil {
			return fmt.Errorf("mkimage initramfs: --generic: %w", err)
		}
		for _, n := range nets {
			if !slices.Contains(o.Modules, n) {
				o.Modules = append(o.Modules, n)
			}
		}
	}
	if fl.out != "" {
		f, err := os.CreateTemp(filepath.Dir(fl.out), ".initramfs-*")
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
			err = os.Rename(f.Name(), fl.out)
		}
		if err != nil {
			return fmt.Errorf("mkimage initramfs: %w", err)
		}
		fmt.Fprintf(stdout, "%s %s %d bytes (%s; %d bytes uncompressed), %d files, %d module files for %s\n",
			fl.out, sum.Digest, sum.Compressed, o.Compression, sum.Uncompressed, sum.Files, len(sum.Modules), o.KernelRelease)
		firmwareNote(stdout, o, sum)
		caNote(stdout, o)
		return nil
	}
	st, err := blobstore.Open(fl.dir)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	if err := blobstore.CheckName(fl.name); err != nil {
		return usagef(c, "%v", err)
	}
	m, err := initramfs.BuildToStore(ctx, st, o)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	im, err := publishLocal(ctx, fl.dir, fl.name, m)
	if err != nil {
		return fmt.Errorf("mkimage initramfs: %w", err)
	}
	fmt.Fprintf(stdout, "%s version %d: %s %d bytes (%s) for %s\n", im.Name, im.Version, im.Digest, im.Size, im.Compression, im.KernelRelease)
	caNote(stdout, o)
	return nil
}

// siteCA is the site CA file the initramfs gets: --ca, or the store's.
func siteCA(fl mkimageInitramfsOptions) string {
	if fl.ca != "" || fl.noCA || fl.dir == "" {
		return fl.ca
	}
	if p := sitetls.CAPath(fl.dir); fileExists(p) {
		return p
	}
	return ""
}

// caNote says which site CA went in.
func caNote(w io.Writer, o initramfs.Options) {
	if o.SiteCA != "" {
		fmt.Fprintf(w, "site CA: %s (at /%s: the agent trusts it alone for https)\n", o.SiteCA, initramfs.SiteCAPath)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// firmwareNote says which firmware went in and which the modules name
// but --firmware-dir lacks.
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
		return "", fmt.Errorf("mkimage initramfs: no kernel modules in %s: install a kernel (linux-image-amd64) or give --kernel-release and --modules-dir", dir)
	}
	// Glob sorts; version order matters only with several kernels, and
	// then --kernel-release says which.
	if len(deps) > 1 {
		return "", fmt.Errorf("mkimage initramfs: several kernels in %s: choose one with --kernel-release", dir)
	}
	return filepath.Base(filepath.Dir(deps[0])), nil
}

// installedAgent is where the Debian package puts the agent.
const installedAgent = "/usr/lib/overboot/overboot-init"

// defaultAgent is the agent of a source tree's build when there is one,
// else the installed one.
func defaultAgent() string {
	if _, err := os.Stat("build/overboot-init"); err != nil {
		if _, err := os.Stat(installedAgent); err == nil {
			return installedAgent
		}
	}
	return "build/overboot-init"
}
