package main

import (
	"context"
	"errors"
	"io"
)

// runInspect is not built yet.
func runInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("inspect: not implemented yet")
}
