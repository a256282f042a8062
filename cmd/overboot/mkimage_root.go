package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/mkimage/oci"
	"github.com/overboot/overboot/server/state"
)

// mkimageRootOptions are mkimage root's flags.
type mkimageRootOptions struct {
	out, dir, name, comp  string
	level, block, procs   int
	noFixups, quiet, json bool
	importOptions
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
gives it to the next machine that boots).`,
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
		var im state.Image
		if from != nil {
			im, err = publishImported(ctx, o.dir, o.name, m, from, cmdPath(c))
		} else {
			im, err = publishLocal(ctx, o.dir, o.name, m)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", cmdPath(c), err)
		}
		result = im
		if !o.json {
			fmt.Fprintf(stdout, "%s version %d: %s %d bytes (%s)\n", im.Name, im.Version, im.Digest, im.Size, im.Compression)
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(result)
	}
	return nil
}
