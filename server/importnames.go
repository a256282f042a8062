package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/state"
)

// importLegacyNames moves the image names that older versions (and
// blobstore.Publish) kept as DIR/names/NAME.json into the state store: a
// name whose current version there has another digest gets a new version
// with this one. The file is renamed NAME.json.imported once its row is
// committed, so it is read once.
func importLegacyNames(ctx context.Context, blobs *blobstore.Store, db *state.DB, log *slog.Logger) error {
	ms, err := blobs.List()
	if err != nil {
		return err
	}
	for _, m := range ms {
		cur, err := db.Image(ctx, m.Name)
		switch {
		case errors.Is(err, state.ErrNotFound) || (err == nil && cur.Digest != m.Digest.String()):
			if _, err := db.PublishImage(ctx, state.Image{Name: m.Name, Digest: m.Digest.String(), Size: m.Size, Kind: string(m.Kind),
				Compression: m.Compression, KernelRelease: m.KernelRelease, Note: "imported from names/" + m.Name + ".json"}); err != nil {
				return err
			}
			log.Info("image name imported into the state store", "name", m.Name, "digest", m.Digest.String())
		case err != nil:
			return err
		}
		p := filepath.Join(blobs.Dir(), "names", m.Name+".json")
		if err := os.Rename(p, p+".imported"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
