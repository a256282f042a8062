package initagent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadModuleList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules")
	os.WriteFile(p, []byte("virtio_net\n# comment\n\n  squashfs  # trailing\noverlay"), 0o644)
	got, err := readModuleList(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"virtio_net", "squashfs", "overlay"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got, err := readModuleList(filepath.Join(t.TempDir(), "absent")); err != nil || got != nil {
		t.Errorf("missing file: %v, %v", got, err)
	}
}
