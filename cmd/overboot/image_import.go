package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage"
	"github.com/overboot/overboot/mkimage/imagekernel"
	"github.com/overboot/overboot/mkimage/oci"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// importRefHelp says what a container image reference is, for --help.
const importRefHelp = `REF is docker://REGISTRY/REPO:TAG or
docker://REGISTRY/REPO@sha256:HEX (credentials from docker's config.json,
$DOCKER_CONFIG or ~/.docker), oci:DIR[:TAG] (an OCI image layout),
oci-archive:FILE (a tar of one), docker-archive:FILE (docker save's tar), or
a plain tar archive or a directory (built as mkimage root SOURCE). From an index, the image for
--platform is taken (default linux/amd64). The layers are flattened the way
container runtimes apply them (whiteouts, opaque directories, hard links
across layers; ownership, modes, device nodes and xattrs such as
security.capability kept) and streamed into mksquashfs: no root needed, and
nothing is unpacked on disk (a registry image's layers are downloaded once
into a work directory beside the output, removed at the end). A layer whose
content does not match its digest, a path escaping the root or written
through a symbolic link, and a layer over --max-layer-size are refused.
With SOURCE_DATE_EPOCH set, no time in the image is later than it: the
same image then gives the same digest. With --store, the image's history
records REF and its manifest digest (overboot image history NAME).`

// importOptions are the flags of a build from a container image.
type importOptions struct {
	from               string
	platform           string
	maxLayer, maxTotal int64
}

func (o *importOptions) addFlags(c *cobra.Command) {
	fs := c.Flags()
	fs.StringVar(&o.platform, "platform", oci.DefaultPlatform, "`OS/ARCH[/VARIANT]` of the image to take from an index")
	fs.Int64Var(&o.maxLayer, "max-layer-size", oci.DefaultMaxLayerSize, "refuse a layer over this many `bytes` (its claimed size, and uncompressed)")
	fs.Int64Var(&o.maxTotal, "max-total-size", oci.DefaultMaxTotalSize, "refuse an image whose layers add up to more `bytes`")
}

// options are the oci.Options of these flags, with the pulled layers in
// work and the times clamped to $SOURCE_DATE_EPOCH when it is set.
func (o importOptions) options(c *cobra.Command, work string) (oci.Options, error) {
	opt := oci.Options{Platform: o.platform, WorkDir: work, Limits: oci.Limits{MaxLayerSize: o.maxLayer, MaxTotalSize: o.maxTotal}}
	if o.maxLayer <= 0 || o.maxTotal <= 0 {
		return opt, usagef(c, "--max-layer-size and --max-total-size want a number of bytes above 0")
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return opt, usagef(c, "SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
		}
		e := time.Unix(n, 0)
		opt.Epoch = &e
	}
	return opt, nil
}

func imageImportCmd(sio stdio, f *clientFlags) *cobra.Command {
	o := mkimageRootOptions{comp: mkimage.DefaultCompression}
	c := &cobra.Command{
		Use:   "import REF --name NAME [--store DIR]",
		Short: "import a container image as a root image and publish it under NAME",
		Long: `Builds a squashfs root image from a container image, as mkimage root --from
does, adds it to the data directory DIR and publishes it under NAME in DIR's
state store (publishing again moves NAME to the new image atomically; a
running server gives it to the next machine that boots). It works on the
server's files directly, without a running server. Without --store, DIR is
the data directory of the server's configuration (--config FILE, default
` + defaultConfig + ` when it exists), and so is its store (PostgreSQL when
the configuration says so).

` + importRefHelp + `

` + kernelHelp,
		Args: exactArgs(1, "exactly one REF"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.name == "" {
				return usagef(cmd, "give --name NAME")
			}
			if o.dir == "" {
				dir, err := configData(f.config)
				if err != nil {
					return usagef(cmd, "%v", err)
				}
				o.dir = dir
			}
			o.from, o.conf = args[0], f.config
			return runMkimageRoot(cmd.Context(), cmd, args[0], o, sio.out, sio.errOut)
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.dir, "store", "", "the server's data `directory` to add the image to (default: the configuration's data)")
	fs.StringVar(&o.name, "name", "", "`name` to publish the image under")
	fs.StringVar(&o.comp, "comp", mkimage.DefaultCompression, "compressor: gzip, xz, zstd, lz4 or lzo")
	fs.BoolVar(&o.noFixups, "no-fixups", false, "build the tree as it is: keep root and swap entries in /etc/fstab")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.importOptions.addFlags(c)
	o.kernelOptions.addFlags(c)
	c.MarkFlagDirname("store")
	return c
}

// configData is the data directory of the server's configuration file
// path (default defaultConfig, else packageConfig, when one exists).
func configData(path string) (string, error) {
	for _, p := range []string{defaultConfig, packageConfig} {
		if path != "" {
			break
		}
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path == "" {
		return "", fmt.Errorf("give --store DIR: no --config FILE, and neither %s nor %s exists to say the server's data directory", defaultConfig, packageConfig)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return "", fmt.Errorf("the server's data directory: %w (or give --store DIR)", err)
	}
	return cfg.Data, nil
}

// publishImported publishes m under name like publishLocal, with where it
// came from in the history, in dir's store (conf: the configuration that
// may say it is PostgreSQL; "" the default one).
func publishImported(ctx context.Context, dir, conf, name string, m blobstore.Manifest, from *oci.Image, by string, own *imagekernel.Result) (state.Image, error) {
	db, err := localStore(ctx, dir, conf)
	if err != nil {
		return state.Image{}, err
	}
	defer db.Close()
	im := state.Image{Name: name, Digest: m.Digest.String(), Size: m.Size, Kind: string(m.Kind),
		Compression: m.Compression, Note: fmt.Sprintf("overboot %s from %s (%s)", by, from.Ref, from.Digest),
		Source: from.Ref.String(), SourceDigest: from.Digest}
	withOwnKernel(&im, own)
	im, err = db.PublishImage(ctx, im)
	if err != nil {
		return state.Image{}, fmt.Errorf("publish %s: %w", name, err)
	}
	return im, nil
}
