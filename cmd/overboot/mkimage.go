package main

import (
	"context"
	"fmt"
	"io"
)

// runMkimage dispatches "overboot mkimage root|initramfs".
func runMkimage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: overboot mkimage <kind> [flags]

kinds:
  root       squashfs root image from a directory or a tar archive
  initramfs  initramfs with the overboot agent and the kernel modules it needs
  verity     dm-verity tree of a root image, for reading it on demand

Run 'overboot mkimage <kind> -h' for its flags.`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, usage)
		if len(args) == 0 {
			return usageError{"mkimage: which kind? root, initramfs or verity"}
		}
		return nil
	}
	switch args[0] {
	case "root":
		return runMkimageRoot(ctx, args[1:], stdout, stderr)
	case "initramfs":
		return runMkimageInitramfs(ctx, args[1:], stdout, stderr)
	case "verity":
		return runMkimageVerity(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return usageError{fmt.Sprintf("mkimage: unknown kind %q", args[0])}
}
