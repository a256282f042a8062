package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage"
)

// runMkimageRoot is "overboot mkimage root".
func runMkimageRoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage root", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out     = fs.String("o", "", "write the image to this `file`")
		dir     = fs.String("store", "", "store `directory` to add the image to (with -name), e.g. the server's data directory")
		name    = fs.String("name", "", "`name` to publish the image under in the store")
		comp    = fs.String("comp", mkimage.DefaultCompression, "compressor: gzip, xz, zstd, lz4 or lzo")
		level   = fs.Int("level", 0, "compression `level` (0: mksquashfs's default for the compressor)")
		block   = fs.Int("block-size", 0, "squashfs block size in `bytes`, a power of two from 4096 to 1048576 (0: 128 KiB)")
		procs   = fs.Int("processors", 0, "compression threads (0: all processors)")
		noFix   = fs.Bool("no-fixups", false, "build the tree as it is: keep root and swap entries in /etc/fstab")
		quiet   = fs.Bool("q", false, "no progress lines")
		jsonOut = fs.Bool("json", false, "print the result as JSON")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: overboot mkimage root [flags] SOURCE

Builds a squashfs root image with mksquashfs (squashfs-tools) from SOURCE, a
directory or a tar archive (plain, gzip, zstd, xz or bzip2). Ownership, modes,
xattrs, hardlinks and device nodes are kept. Netboot fix-up, in the image only
(the source is never changed): /etc/fstab loses its root and swap entries, which
would otherwise make systemd wait for disks a diskless machine does not have.

Output: -o FILE, or -store DIR -name NAME: the image goes into the data
directory DIR by its sha256 and NAME is published in DIR's state store
(publishing again moves NAME to the new image atomically; a running server
gives it to the next machine that boots).

flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{"mkimage root: " + err.Error()}
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageError{"mkimage root: want exactly one SOURCE (a directory or a tar archive)"}
	}
	if (*out == "") == (*dir == "") {
		return usageError{"mkimage root: give either -o FILE or -store DIR -name NAME"}
	}
	if *dir != "" && *name == "" {
		return usageError{"mkimage root: -store needs -name"}
	}
	if *out != "" && *name != "" {
		return usageError{"mkimage root: -name goes with -store, not -o"}
	}
	opt := mkimage.RootOptions{
		Source: pos[0], Compression: *comp, Level: *level, BlockSize: *block,
		Processors: *procs, NoFixups: *noFix, Progress: stderr,
	}
	if *quiet {
		opt.Progress = nil
	}
	if err := opt.Validate(); err != nil {
		return usageError{"mkimage root: " + err.Error()}
	}
	var result any
	if *out != "" {
		res, err := mkimage.BuildRoot(ctx, *out, opt)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		result = struct {
			File string `json:"file"`
			mkimage.RootResult
		}{*out, res}
		if !*jsonOut {
			fmt.Fprintf(stdout, "%s %s %d bytes, %d entries\n", *out, res.Digest, res.Size, res.Entries)
		}
	} else {
		st, err := blobstore.Open(*dir)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		if err := blobstore.CheckName(*name); err != nil {
			return usageError{"mkimage root: " + err.Error()}
		}
		m, err := mkimage.BuildRootToStore(ctx, st, opt)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		im, err := publishLocal(ctx, *dir, *name, m)
		if err != nil {
			return fmt.Errorf("mkimage root: %w", err)
		}
		result = im
		if !*jsonOut {
			fmt.Fprintf(stdout, "%s version %d: %s %d bytes (%s)\n", im.Name, im.Version, im.Digest, im.Size, im.Compression)
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(result)
	}
	return nil
}
