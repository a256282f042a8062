package main

import (
	"context"
	"errors"
	"io"
)

// runMkimageInitramfs is not built yet.
func runMkimageInitramfs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("mkimage_initramfs: not implemented yet")
}
