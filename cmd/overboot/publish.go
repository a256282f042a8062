package main

import (
	"context"
	"fmt"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/state"
)

// publishLocal publishes a blob built into the data directory dir under
// name in the server's state store (DIR/state.db, or the PostgreSQL store
// of the server's configuration when its data directory is dir: see
// localStore), the way the server's image publish does: the next boot
// that asks for the name gets it, with no restart. It opens the store
// directly (a running server shares it: SQLite serialises the writers,
// PostgreSQL's transactions are serializable), so it needs write access.
func publishLocal(ctx context.Context, dir, name string, m blobstore.Manifest) (state.Image, error) {
	if err := blobstore.CheckName(name); err != nil {
		return state.Image{}, err
	}
	db, err := localStore(ctx, dir, "")
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
