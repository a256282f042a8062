package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage"
)

// mkimageRootOptions are mkimage root's flags.
type mkimageRootOptions struct {
	out, dir, name, comp  string
	level, block, procs   int
	noFixups, quiet, json bool
}

func mkimageRootCmd(sio stdio) *cobra.Command {
	var o mkimageRootOptions
	c := &cobra.Command{
		Use:   "root SOURCE (-o FILE | --store DIR --name NAME)",
		Short: "squashfs root image from a directory or a tar archive",
		Long: `Builds a squashfs root image with mksquashfs (squashfs-tools) from SOURCE, a
directory or a tar archive (plain, gzip, zstd, xz or bzip2). Ownership, modes,
xattrs, hardlinks and device nodes are kept. Netboot fix-up, in the image only
(the source is never changed): /etc/fstab loses its root and swap entries, which
would otherwise make systemd wait for disks a diskless machine does not have.

Output: -o FILE, or --store DIR --name NAME: the image goes into the data
directory DIR by its sha256 and NAME is published in DIR's state store
(publishing again moves NAME to the new image atomically; a running server
gives it to the next machine that boots).`,
		Args: exactArgs(1, "exactly one SOURCE (a directory or a tar archive)"),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	var result any
	if o.out != "" {
		res, err := mkimage.BuildRoot(ctx, o.out, opt)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		result = struct {
			File string `json:"file"`
			mkimage.RootResult
		}{o.out, res}
		if !o.json {
			fmt.Fprintf(stdout, "%s %s %d bytes, %d entries\n", o.out, res.Digest, res.Size, res.Entries)
		}
	} else {
		st, err := blobstore.Open(o.dir)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		if err := blobstore.CheckName(o.name); err != nil {
			return usagef(c, "%v", err)
		}
		m, err := mkimage.BuildRootToStore(ctx, st, opt)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		im, err := publishLocal(ctx, o.dir, o.name, m)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
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
