package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/internal/verity"
)

func mkimageVerityCmd(sio stdio) *cobra.Command {
	var out, base string
	c := &cobra.Command{
		Use:   "verity IMAGE",
		Short: "dm-verity tree of a root image, for reading it on demand",
		Long: `Builds the dm-verity hash tree of a root image for reading it on demand
(overboot.lower.mode=lazy or fill on a static kernel command line; an
overboot server makes its own), as veritysetup format writes it (format 1,
sha256, 4 KiB blocks, superblock first), with a salt derived from the image,
and prints the kernel parameters that name it: overboot.verity.root is the
trust anchor, so the command line must come from somewhere trusted. IMAGE
must be a multiple of 4096 bytes (mksquashfs pads to 4 KiB unless -nopad).`,
		Args: exactArgs(1, "exactly one IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMkimageVerity(args[0], out, base, sio.out)
		},
	}
	c.Flags().StringVarP(&out, "out", "o", "", "write the tree to this `file` (default IMAGE.verity)")
	c.Flags().StringVar(&base, "url", "", "`URL` the image and the tree will be served under (http://HOST/DIR), to print complete kernel parameters")
	return c
}

// runMkimageVerity is "overboot mkimage verity".
func runMkimageVerity(img, out, base string, stdout io.Writer) error {
	if out == "" {
		out = img + ".verity"
	}
	f, err := os.Open(img)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	digest := hex.EncodeToString(h.Sum(nil))
	tmp, err := os.CreateTemp(filepath.Dir(out), ".verity-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	th := sha256.New()
	tr, err := verity.Build(f, fi.Size(), io.MultiWriter(tmp, th), verity.ParamsFor(digest))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", img, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	if err := durable.Sync(filepath.Dir(out)); err != nil {
		return err
	}
	u := strings.TrimSuffix(base, "/")
	if u == "" {
		u = "http://HOST"
	}
	fmt.Fprintf(stdout, "overboot.lower=%s/%s overboot.digest=sha256:%s overboot.size=%d overboot.lower.mode=lazy overboot.verity=%s/%s overboot.verity.digest=sha256:%x overboot.verity.size=%d overboot.verity.root=%x\n",
		u, filepath.Base(img), digest, fi.Size(), u, filepath.Base(out), th.Sum(nil), tr.HashSize, tr.RootHash)
	return nil
}
