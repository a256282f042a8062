package main

import "github.com/spf13/cobra"

// mkimageCmd is "overboot mkimage root|initramfs|verity".
func mkimageCmd(sio stdio) *cobra.Command {
	c := group("mkimage", "build a root image or an initramfs into a data directory")
	c.Long = `Builds images, one kind per subcommand: root (a squashfs root image from
a directory or a tar archive), initramfs (the overboot agent and the kernel
modules it needs) and verity (the dm-verity tree of a root image, for
reading it on demand). Run 'overboot mkimage KIND --help' for its flags.`
	c.AddCommand(mkimageRootCmd(sio), mkimageInitramfsCmd(sio), mkimageVerityCmd(sio))
	return c
}
