package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/mkimage/imagekernel"
	"github.com/overboot/overboot/mkimage/oci"
	"github.com/overboot/overboot/server/state"
)

// mkimageRootOptions are mkimage root's flags.
type mkimageRootOptions struct {
	out, dir, name, comp  string
	conf                  string // the server's configuration, for its store (image import --config)
	level, block, procs   int
	noFixups, quiet, json bool
	importOptions
	kernelOptions
}

// kernelOptions are the flags of the image's own kernel.
type kernelOptions struct {
	noKernel             bool
	kernelVersion, agent string
}

func (o *kernelOptions) addFlags(c *cobra.Command) {
	fs := c.Flags()
	fs.BoolVar(&o.noKernel, "no-kernel", false, "do not take the image's own kernel (/boot/vmlinuz-* with /lib/modules/*)")
	fs.StringVar(&o.kernelVersion, "kernel-version", "", "of several kernels in the image, take this `release` (default: the newest)")
	fs.StringVar(&o.agent, "agent", defaultAgent(), "the static agent `binary` for the initramfs of the image's own kernel")
	c.MarkFlagFilename("agent")
}

func mkimageRootCmd(sio stdio) *cobra.Command {
	var o mkimageRootOptions
	c := &cobra.Command{
		Use:   "root (SOURCE | --from REF) (-o FILE | --store DIR --name NAME)",
		Short: "squashfs root image from a directory, a tar archive or a container image",
		Long: `Builds a squashfs root image with mksquashfs (squashfs-tools) from SOURCE, a
directory or a tar archive (plain, gzip, zstd, xz or bzip2). Ownership, modes,
xattrs, hardlinks and device nodes are kept. Netboot fix-up, in the image only
(the source is never changed): /etc/fstab loses its root and swap entries, which
would otherwise make systemd wait for disks a diskless machine does not have.

--from REF builds from a container image instead: ` + importRefHelp + `

Output: -o FILE, or --store DIR --name NAME: the image goes into the data
directory DIR by its sha256 and NAME is published in DIR's state store
(publishing again moves NAME to the new image atomically; a running server
gives it to the next machine that boots).

` + kernelHelp,
		Args: func(c *cobra.Command, args []string) error {
			if (len(args) == 1) == (o.from != "") || len(args) > 1 {
				return errArgs(c, "exactly one SOURCE (a directory or a tar archive), or --from REF")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.from != "" {
				args = []string{o.from}
			}
			return runMkimageRoot(cmd.Context(), cmd, args[0], o, sio.out, sio.errOut)
		},
	}
	fs := c.Flags()
	fs.StringVarP(&o.out, "out", "o", "", "write the image to this `file`")
	fs.StringVar(&o.dir, "store", "", "store `directory` to add the image to (with --name), e.g. the server's data directory")
	fs.StringVar(&o.name, "name", "", "`name` to publish the image under in the store")
	fs.StringVar(&o.comp, "comp", mkimage.DefaultCompression, "compressor: gzip, xz, zstd, lz4 or lzo")
	fs.IntVar(&o.level, "level", 0, "compression `level` (0: mksquashfs's default for the compressor)")
	fs.IntVar(&o.block, "block-size", 0, "squashfs block size in `bytes`, a power of two from 4096 to 1048576 (0: 128 KiB)")
	fs.IntVar(&o.procs, "processors", 0, "compression threads (0: all processors)")
	fs.BoolVar(&o.noFixups, "no-fixups", false, "build the tree as it is: keep root and swap entries in /etc/fstab")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.StringVar(&o.from, "from", "", "build from this container image `REF` (docker://, oci:, oci-archive:, docker-archive:)")
	o.importOptions.addFlags(c)
	o.kernelOptions.addFlags(c)
	c.MarkFlagDirname("store")
	return c
}

// runMkimageRoot is "overboot mkimage root".
func runMkimageRoot(ctx context.Context, c *cobra.Command, source string, o mkimageRootOptions, stdout, stderr io.Writer) error {
	if (o.out == "") == (o.dir == "") {
		return usagef(c, "give either -o FILE or --store DIR --name NAME")
	}
	if o.dir != "" && o.name == "" {
		return usagef(c, "--store needs --name")
	}
	if o.out != "" && o.name != "" {
		return usagef(c, "--name goes with --store, not -o")
	}
	if o.out != "" && o.kernelVersion != "" {
		return usagef(c, "--kernel-version goes with --store: the image's own kernel is published with it")
	}
	opt := mkimage.RootOptions{
		Source: source, Compression: o.comp, Level: o.level, BlockSize: o.block,
		Processors: o.procs, NoFixups: o.noFixups, Progress: stderr,
	}
	if o.quiet {
		opt.Progress = nil
	}
	if err := opt.Validate(); err != nil {
		return usagef(c, "%v", err)
	}
	ref, err := oci.ParseRef(source)
	if err != nil {
		return usagef(c, "%v", err)
	}
	var from *oci.Image
	var st *blobstore.Store
	if o.dir != "" {
		if err := blobstore.CheckName(o.name); err != nil {
			return usagef(c, "%v", err)
		}
		if st, err = blobstore.Open(o.dir); err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
	}
	if ref.Transport != oci.Path {
		// The image's pulled layers go in a work directory beside the
		// output, removed at the end; in a store, inside this process's
		// work directory there, which a server starting clears if this
		// process dies.
		var parent string
		if st != nil {
			f, err := st.TempFile("import-*")
			if err != nil {
				return fmt.Errorf("%s: %w", cmdPath(c), err)
			}
			f.Close()
			os.Remove(f.Name())
			parent = filepath.Dir(f.Name())
		} else {
			abs, err := filepath.Abs(o.out)
			if err != nil {
				return err
			}
			parent = filepath.Dir(abs)
		}
		work, err := os.MkdirTemp(parent, ".overboot-import-*")
		if err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		defer os.RemoveAll(work)
		iopt, err := o.importOptions.options(c, work)
		if err != nil {
			return err
		}
		if from, err = oci.Open(ctx, ref, iopt); err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		opt.Source, opt.Tar = ref.String(), from
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "%s: image %s (%s), %d layers\n", ref, from.Digest, from.Platform, len(from.Layers))
		}
	}
	// The image's own kernel: copied out of the tar stream as it is
	// built, or out of the directory, into a work directory in the store.
	var kwork string
	if st != nil && !o.noKernel {
		if kwork, err = storeWorkDir(st, ".overboot-kernel-*"); err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		defer os.RemoveAll(kwork)
		if fi, err := os.Stat(source); from == nil && err == nil && fi.IsDir() {
			if err := imagekernel.Collect(source, kwork); err != nil {
				return fmt.Errorf("%s: the image's kernel: %w", cmdPath(c), err)
			}
		} else {
			opt.Capture = &imagekernel.Capture{Dir: kwork}
		}
	}
	var result any
	if o.out != "" {
		res, err := mkimage.BuildRoot(ctx, o.out, opt)
		if err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		result = struct {
			File string `json:"file"`
			mkimage.RootResult
		}{o.out, res}
		if !o.json {
			fmt.Fprintf(stdout, "%s %s %d bytes, %d entries\n", o.out, res.Digest, res.Size, res.Entries)
		}
	} else {
		m, err := mkimage.BuildRootToStore(ctx, st, opt)
		if err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		var own *imagekernel.Result
		if kwork != "" {
			if own, err = buildOwnKernel(ctx, st, kwork, o, opt.Progress); err != nil {
				return fmt.Errorf("%s: %w", cmdPath(c), err)
			}
		}
		var im state.Image
		if from != nil {
			im, err = publishImported(ctx, o.dir, o.conf, o.name, m, from, cmdPath(c), own)
		} else {
			im, err = publishRoot(ctx, o.dir, o.name, m, own)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		result = im
		if !o.json {
			fmt.Fprintf(stdout, "%s version %d: %s %d bytes (%s)\n", im.Name, im.Version, im.Digest, im.Size, im.Compression)
			if own != nil {
				fmt.Fprintf(stdout, "%s: its own kernel %s: kernel %s, initramfs %s, modules %s (profiles: kernel = image)\n",
					im.Name, own.Release, own.Kernel.Digest, own.Initramfs.Digest, own.Modules.Digest)
			}
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(result)
	}
	return nil
}

// kernelHelp says what happens to a kernel in the image, for --help.
const kernelHelp = `The image's own kernel: with --store, when the tree holds
/boot/vmlinuz-RELEASE and /lib/modules/RELEASE (or /usr/lib/modules/RELEASE),
that kernel, an overboot initramfs made from the image's own modules (the
agent from --agent) and the modules tree go into DIR too and are published
with the image: a profile boots them with kernel = image. Of several
kernels, the newest (or --kernel-version). A tree without a kernel is
built as before; --no-kernel skips this.`

// storeWorkDir makes a work directory inside the store's own (which a
// server starting clears if this process dies).
func storeWorkDir(st *blobstore.Store, pattern string) (string, error) {
	f, err := st.TempFile("work-*")
	if err != nil {
		return "", err
	}
	f.Close()
	os.Remove(f.Name())
	return os.MkdirTemp(filepath.Dir(f.Name()), pattern)
}

// buildOwnKernel stores the kernel found in kwork, if any, with its
// initramfs and modules.
func buildOwnKernel(ctx context.Context, st *blobstore.Store, kwork string, o mkimageRootOptions, progress io.Writer) (*imagekernel.Result, error) {
	k, err := imagekernel.Find(kwork, o.kernelVersion)
	if errors.Is(err, imagekernel.ErrNoKernel) && o.kernelVersion == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the image's kernel: %w", err)
	}
	if _, err := os.Stat(o.agent); err != nil {
		return nil, fmt.Errorf("the image has its own kernel %s, and its initramfs needs the agent: %w (give --agent FILE, make build, or --no-kernel)", k.Release, err)
	}
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "the image's own kernel: %s (initramfs from its modules)\n", k.Release)
	if len(k.Others) > 0 {
		fmt.Fprintf(progress, "note: the image also has kernel %s (--kernel-version chooses)\n", strings.Join(k.Others, ", "))
	}
	res, err := imagekernel.Build(ctx, st, k, imagekernel.Options{Agent: o.agent, SiteCA: siteCA(mkimageInitramfsOptions{dir: o.dir})})
	if err != nil {
		return nil, err
	}
	if len(res.LeftOut) > 0 {
		fmt.Fprintf(progress, "note: kernel %s has no %s: left out of its initramfs\n", k.Release, strings.Join(res.LeftOut, ", "))
	}
	return &res, nil
}

// publishRoot publishes a root image built here, with its own kernel if
// it has one.
func publishRoot(ctx context.Context, dir, name string, m blobstore.Manifest, own *imagekernel.Result) (state.Image, error) {
	if own == nil {
		return publishLocal(ctx, dir, name, m)
	}
	db, err := localStore(ctx, dir, "")
	if err != nil {
		return state.Image{}, err
	}
	defer db.Close()
	im := state.Image{Name: name, Digest: m.Digest.String(), Size: m.Size, Kind: string(m.Kind),
		Compression: m.Compression, Note: "overboot mkimage"}
	withOwnKernel(&im, own)
	if im, err = db.PublishImage(ctx, im); err != nil {
		return state.Image{}, fmt.Errorf("publish %s: %w", name, err)
	}
	return im, nil
}

// withOwnKernel records own with im.
func withOwnKernel(im *state.Image, own *imagekernel.Result) {
	if own == nil {
		return
	}
	im.KernelRelease = own.Release
	im.OwnKernel, im.OwnInitramfs, im.OwnModules = own.Kernel.Digest.String(), own.Initramfs.Digest.String(), own.Modules.Digest.String()
}
