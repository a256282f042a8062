package drivers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/blobstore"
)

// TestOrphanTrees: a tree whose modules blob is gone is listed (and, not
// in a dry run, removed); a tree whose blob is there, and an unpacking
// under way, stay.
func TestOrphanTrees(t *testing.T) {
	blobs, err := blobstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := blobs.Ingest(strings.NewReader("modules of a kernel still published"))
	if err != nil {
		t.Fatal(err)
	}
	gone := "sha256:" + strings.Repeat("ab", 32)
	trees := filepath.Join(blobs.Dir(), "drivers", "trees")
	for _, d := range []string{kept.Hex(), strings.TrimPrefix(gone, "sha256:"), ".unpack-123"} {
		if err := os.MkdirAll(filepath.Join(trees, d, "6.1.0-57-amd64"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(trees, name))
		return err == nil
	}
	got, err := OrphanTrees(blobs, true)
	if err != nil || !slices.Equal(got, []string{gone}) || !exists(strings.TrimPrefix(gone, "sha256:")) {
		t.Fatalf("dry run: %v %v", got, err)
	}
	got, err = OrphanTrees(blobs, false)
	if err != nil || !slices.Equal(got, []string{gone}) {
		t.Fatalf("collect: %v %v", got, err)
	}
	if exists(strings.TrimPrefix(gone, "sha256:")) || !exists(kept.Hex()) || !exists(".unpack-123") {
		t.Errorf("after: gone %v, kept %v, unpacking %v", exists(strings.TrimPrefix(gone, "sha256:")), exists(kept.Hex()), exists(".unpack-123"))
	}
	// No trees directory at all: nothing to do.
	empty, _ := blobstore.Open(t.TempDir())
	if got, err := OrphanTrees(empty, false); err != nil || got != nil {
		t.Errorf("no trees: %v %v", got, err)
	}
}
