package main

import "github.com/spf13/cobra"

// mkimageCmd is "overboot mkimage root|initramfs|verity".
func mkimageCmd(sio stdio) *cobra.Command {
	c := group("mkimage", "build a root image or an initramfs into a data directory")
	c.Long = `Builds images: each kind is a subcommand.

  root       squashfs root image from a directory or a tar archive
  initramfs  initramfs with the overboot agent and the kernel modules it needs
  verity     dm-verity tree of a root image, for reading it on demand

Run 'overboot mkimage KIND --help' for its flags.`
	c.AddCommand(mkimageRootCmd(sio), mkimageInitramfsCmd(sio), mkimageVerityCmd(sio))
	return c
}
