package drivers

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
)

// OrphanTrees lists the modules trees unpacked under DATA/drivers/trees
// whose modules blob is no longer in blobs (a collection removed it), and
// removes them unless dryRun. A tree is only ever a copy of its blob's
// contents: without the blob no boot can ask for it.
func OrphanTrees(blobs *blobstore.Store, dryRun bool) (removed []string, err error) {
	dir := filepath.Join(blobs.Dir(), "drivers", "trees")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		d, err := boot.ParseDigest("sha256:" + e.Name())
		if !e.IsDir() || err != nil {
			continue // not a tree (an unpacking's .unpack-* directory is its own)
		}
		if _, err := os.Stat(blobs.BlobPath(d)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if !dryRun {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return removed, err
			}
		}
		removed = append(removed, d.String())
	}
	return removed, nil
}
