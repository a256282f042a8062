package main

import (
	"context"
	"errors"
	"io"
)

// runMkimageRoot is not built yet.
func runMkimageRoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("mkimage_root: not implemented yet")
}
