package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/overboot/overboot/internal/testneed"
)

// testImage is a one-layer linux/amd64 image: an etc/fstab with a root
// entry, and a file.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range map[string]string{"etc/fstab": "UUID=1 / ext4 defaults 0 1\n", "hello": "hi"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: mustDiffIDs(t, img)}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// ociLayout writes testImage as an OCI layout tagged v1, and returns its
// manifest digest.
func ociLayout(t *testing.T, dir string) string {
	t.Helper()
	img := testImage(t)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func mustDiffIDs(t *testing.T, img v1.Image) []v1.Hash {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.RootFS.DiffIDs
}

// TestImageImportHistoryShowsSource: image import publishes an OCI layout's
// image with its source and manifest digest in image history; a bad
// reference publishes nothing and leaves nothing in the store's tmp.
func TestImageImportHistoryShowsSource(t *testing.T) {
	testneed.Tool(t, "mksquashfs")
	_, data, _ := testServer(t)
	adminToken(t, data)
	lay := filepath.Join(t.TempDir(), "layout")
	digest := ociLayout(t, lay)
	ref := "oci:" + lay + ":v1"
	out, err := cli(t, "", "image", "import", ref, "--name", "web", "--store", data, "-q")
	if err != nil || !strings.Contains(out, "web version 1: sha256:") {
		t.Fatalf("image import: %q %v", out, err)
	}
	out, err = cli(t, "", "image", "history", "web")
	if err != nil || !strings.Contains(out, "from "+ref+" ("+digest+")") {
		t.Errorf("image history: %q %v, want the source %s and %s", out, err, ref, digest)
	}
	out, err = cli(t, "", "image", "history", "web", "--json")
	if err != nil || !strings.Contains(out, `"source": "`+ref+`"`) || !strings.Contains(out, `"source_digest": "`+digest+`"`) {
		t.Errorf("image history --json: %q %v", out, err)
	}
	// mkimage root --from to a file.
	img := filepath.Join(t.TempDir(), "root.sqfs")
	if out, err := cli(t, "", "mkimage", "root", "--from", ref, "-o", img, "-q"); err != nil || !strings.Contains(out, img+" sha256:") {
		t.Errorf("mkimage root --from: %q %v", out, err)
	}

	// Bad input: nothing published, nothing left behind.
	for _, c := range []struct{ ref, says string }{
		{"oci:" + lay + ":v2", `no image tagged "v2"`},
		{ref, "no linux/arm64 image"},
	} {
		args := []string{"image", "import", c.ref, "--name", "web", "--store", data, "-q"}
		if c.says == "no linux/arm64 image" {
			args = append(args, "--platform", "linux/arm64")
		}
		_, err := cli(t, "", args...)
		if err == nil || (!strings.Contains(err.Error(), c.says) && !strings.Contains(err.Error(), "not linux/arm64")) {
			t.Errorf("import %v: %v, want %q", args, err, c.says)
		}
	}
	out, _ = cli(t, "", "image", "history", "web")
	if strings.Contains(out, "\nweb  2") || strings.Count(out, "\n") != 2 {
		t.Errorf("history after refused imports: %q, want version 1 only", out)
	}
	// The store's tmp holds this process's (empty) work directory only.
	filepath.WalkDir(filepath.Join(data, "tmp"), func(p string, d os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(filepath.Join(data, "tmp"), p); err == nil && strings.Count(rel, string(filepath.Separator)) > 0 {
			t.Errorf("left in the store's tmp: %s", rel)
		}
		return nil
	})
}

// TestImageImportStoreFromConfig: without --store, image import adds the
// image to the data directory the server's configuration names; without
// a configuration it says to give --store, and publishes nothing.
func TestImageImportStoreFromConfig(t *testing.T) {
	testneed.Tool(t, "mksquashfs")
	_, data, _ := testServer(t)
	adminToken(t, data)
	lay := filepath.Join(t.TempDir(), "layout")
	ociLayout(t, lay)
	ref := "oci:" + lay + ":v1"
	// Neither default configuration exists, whatever this machine has.
	oldDefault, oldPackage := defaultConfig, packageConfig
	defaultConfig, packageConfig = filepath.Join(t.TempDir(), "none.conf"), filepath.Join(t.TempDir(), "none-either.conf")
	t.Cleanup(func() { defaultConfig, packageConfig = oldDefault, oldPackage })
	if _, err := cli(t, "", "image", "import", ref, "--name", "web", "-q"); err == nil || !strings.Contains(err.Error(), "give --store DIR") {
		t.Errorf("no --store, no configuration: %v", err)
	}
	conf := filepath.Join(t.TempDir(), "overboot.conf")
	if err := os.WriteFile(conf, []byte("[server]\ndata = "+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "", "image", "import", ref, "--name", "web", "--config", conf, "-q")
	if err != nil || !strings.Contains(out, "web version 1: sha256:") {
		t.Fatalf("image import --config: %q %v", out, err)
	}
	if out, err := cli(t, "", "image", "history", "web"); err != nil || !strings.Contains(out, "from "+ref) {
		t.Errorf("the running server does not see the import: %q %v", out, err)
	}
}
