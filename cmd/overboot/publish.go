package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/state"
)

// publishLocal publishes a blob built into the data directory dir under
// name in the state store there (DIR/state.db), the way the server's
// image publish does: the next boot that asks for the name gets it, with
// no restart. It opens the store file directly (a running server shares
// it; SQLite serialises the writers), so it needs write access to dir.
func publishLocal(ctx context.Context, dir, name string, m blobstore.Manifest) (state.Image, error) {
	if err := blobstore.CheckName(name); err != nil {
		return state.Image{}, err
	}
	db, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		return state.Image{}, err
	}
	defer db.Close()
	im, err := db.PublishImage(ctx, state.Image{Name: name, Digest: m.Digest.String(), Size: m.Size, Kind: string(m.Kind),
		Compression: m.Compression, KernelRelease: m.KernelRelease, Note: "overboot mkimage"})
	if err != nil {
		return state.Image{}, fmt.Errorf("publish %s: %w", name, err)
	}
	return im, nil
}
