package main

import (
	"context"
	"errors"
	"io"
)

// runMkimage is not built yet.
func runMkimage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("mkimage: not implemented yet")
}
