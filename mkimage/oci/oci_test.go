package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
	}{
		{"docker://registry.example:5000/team/root:v1", Ref{Transport: Docker, Name: "registry.example:5000/team/root:v1"}},
		{"docker://registry.example/root@sha256:" + strings.Repeat("a", 64), Ref{Transport: Docker, Name: "registry.example/root@sha256:" + strings.Repeat("a", 64)}},
		{"oci:/srv/layout:v2", Ref{Transport: Layout, Name: "/srv/layout", Tag: "v2"}},
		{"oci:/srv/lay:out/dir", Ref{Transport: Layout, Name: "/srv/lay:out/dir"}},
		{"oci:layout", Ref{Transport: Layout, Name: "layout"}},
		{"oci-archive:/tmp/img.tar", Ref{Transport: OCIArchive, Name: "/tmp/img.tar"}},
		{"docker-archive:/tmp/save.tar", Ref{Transport: DockerArchive, Name: "/tmp/save.tar"}},
		{"/srv/root.tar.zst", Ref{Transport: Path, Name: "/srv/root.tar.zst"}},
		{"./tree", Ref{Transport: Path, Name: "./tree"}},
	} {
		got, err := ParseRef(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"docker:registry/x", "docker://UPPER/Case:tag", "oci:", "oci:dir:", "oci-archive:", "docker-archive:"} {
		if _, err := ParseRef(bad); !errors.Is(err, ErrRef) {
			t.Errorf("ParseRef(%q): %v, want ErrRef", bad, err)
		}
	}
}

// TestFlattenRegistryImageLikeARuntime pulls a three-layer image from an
// in-process registry and checks each awkward case in the flattened tar.
func TestFlattenRegistryImageLikeARuntime(t *testing.T) {
	img := image(t, "linux/amd64", awkwardLayers()...)
	ref := push(t, startRegistry(t), "awkward:1", img)
	b, im := flatten(t, ref, Options{})
	f := readFlat(t, b)

	want, _ := img.Digest()
	if im.Digest != want.String() || im.Platform != "linux/amd64" {
		t.Errorf("image %s %s, want %s linux/amd64", im.Digest, im.Platform, want)
	}
	for _, gone := range []string{"bin/gone", "opt/old", "opt/old/x", "opt/keep", "etc/not-there"} {
		if _, ok := f.h[gone]; ok {
			t.Errorf("%s is in the flattened tree, want it deleted", gone)
		}
	}
	for n := range f.h {
		if strings.Contains(n, ".wh.") {
			t.Errorf("whiteout %s written", n)
		}
	}
	check := func(n string, ok func(h *tar.Header) bool, what string) {
		t.Helper()
		h := f.h[n]
		if h == nil {
			t.Errorf("%s: missing (%s)", n, what)
			return
		}
		if !ok(h) {
			t.Errorf("%s: %+v: want %s", n, *h, what)
		}
	}
	check("opt/new", func(h *tar.Header) bool { return f.body["opt/new"] == "only this in opt" }, "the opaque dir's new content")
	check("opt", func(h *tar.Header) bool { return h.Mode&0o7777 == 0o750 }, "the upper layer's mode 0750")
	check("lib", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "usr/lib" }, "a symlink to usr/lib")
	check("dev/null", func(h *tar.Header) bool {
		return h.Typeflag == tar.TypeChar && h.Devmajor == 1 && h.Devminor == 3 && h.Mode&0o777 == 0o666
	}, "char device 1,3 0666")
	check("bin/ping", func(h *tar.Header) bool { return h.Mode&0o7777 == 0o4755 }, "setuid 04755")
	check("bin/cap", func(h *tar.Header) bool { return h.PAXRecords["SCHILY.xattr.security.capability"] == capV2 }, "its security.capability")
	for _, n := range []string{"home/user", "home/user/.profile", "home/user/notes"} {
		check(n, func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1000 }, "owned by 1000:1000")
	}
	check("abs/made/relative", func(h *tar.Header) bool { return f.body["abs/made/relative"] == "abs" }, "an absolute name made relative")
	// The hard link made in layer 2 to layer 1's file: one carries the
	// data (the first name in order), the other links to it, after it.
	check("usr/bin/datalink", func(h *tar.Header) bool {
		return h.Typeflag == tar.TypeReg && f.body["usr/bin/datalink"] == "linked across layers"
	}, "the data of the hard-linked pair")
	check("usr/lib/data", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "usr/bin/datalink" }, "a hard link to usr/bin/datalink")
	// Every entry comes after its parent directory.
	pos := map[string]int{}
	for i, n := range f.order {
		pos[n] = i
	}
	for i, n := range f.order {
		if d := path.Dir(n); d != "." {
			if p, ok := pos[d]; !ok || p > i {
				t.Errorf("%s (at %d) before its directory %s (at %d, present %v)", n, i, d, p, ok)
			}
		}
		if h := f.h[n]; h.Typeflag == tar.TypeLink && pos[h.Linkname] > i {
			t.Errorf("hard link %s before its target %s", n, h.Linkname)
		}
	}
}

// TestFlattenDeterministicAndClamped: the same image flattens to the same
// bytes; with an epoch no time is later than it.
func TestFlattenDeterministicAndClamped(t *testing.T) {
	ref := push(t, startRegistry(t), "awkward:1", image(t, "linux/amd64", awkwardLayers()...))
	a, _ := flatten(t, ref, Options{})
	b, _ := flatten(t, ref, Options{})
	if !bytes.Equal(a, b) {
		t.Error("two flattenings of one image differ")
	}
	for n, h := range readFlat(t, a).h {
		if !h.ModTime.Equal(layerTime) && n != "abs" && n != "abs/made" && n != "dev" && n != "usr/bin" {
			t.Errorf("%s: time %v, want the layer's %v", n, h.ModTime, layerTime)
		}
	}
	epoch := time.Unix(1_600_000_000, 0)
	c, _ := flatten(t, ref, Options{Epoch: &epoch})
	for n, h := range readFlat(t, c).h {
		if h.ModTime.After(epoch) {
			t.Errorf("%s: time %v after SOURCE_DATE_EPOCH %v", n, h.ModTime, epoch)
		}
	}
}

// TestOpenLayoutAndArchives: oci:DIR:TAG, oci-archive:FILE and
// docker-archive:FILE of one image flatten to what the registry gives.
func TestOpenLayoutAndArchives(t *testing.T) {
	img := image(t, "linux/amd64", awkwardLayers()...)
	fromRegistry, _ := flatten(t, push(t, startRegistry(t), "awkward:1", img), Options{})

	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(empty.Image, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "other"})); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(dir, "img.oci.tar")
	tarDir(t, lay, ociArchive)
	dockerArchive := filepath.Join(dir, "save.tar")
	tag, _ := name.NewTag("example/awkward:1")
	if err := tarball.WriteToFile(dockerArchive, tag, img); err != nil {
		t.Fatal(err)
	}
	// An archive of a layout with only the one image.
	one := filepath.Join(dir, "one")
	p1, _ := layout.Write(one, empty.Index)
	if err := p1.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	tarDir(t, one, filepath.Join(dir, "one.tar"))

	for _, ref := range []string{"oci:" + lay + ":v1", "oci-archive:" + filepath.Join(dir, "one.tar"), "docker-archive:" + dockerArchive} {
		t.Run(strings.SplitN(ref, ":", 2)[0], func(t *testing.T) {
			got, _ := flatten(t, ref, Options{})
			if !bytes.Equal(got, fromRegistry) {
				t.Errorf("%s flattens to other bytes than the registry's copy", ref)
			}
		})
	}
	if _, err := openRef(t, "oci:"+lay, Options{}); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("layout of two images without a tag: %v", err)
	}
	if _, err := openRef(t, "oci:"+lay+":nope", Options{}); err == nil || !strings.Contains(err.Error(), `no image tagged "nope"`) {
		t.Errorf("unknown tag: %v", err)
	}
	if _, err := openRef(t, "oci-archive:"+ociArchive, Options{}); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("oci-archive of two images: %v", err)
	}
}

// tarDir writes dir's files as a tar at file (an oci-archive).
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPlatformFromIndex: an index of arm64 and amd64 gives amd64 unless
// asked; a platform it lacks is an error listing what it has.
func TestPlatformFromIndex(t *testing.T) {
	arch := func(a string) v1.Image {
		return image(t, "linux/"+a, []ent{{name: "arch", body: a}})
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arch("arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: arch("amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	host := startRegistry(t)
	ref := push(t, host, "multi:1", idx)
	for _, c := range []struct{ platform, want string }{{"", "amd64"}, {"linux/arm64", "arm64"}, {"linux/amd64", "amd64"}} {
		b, im := flatten(t, ref, Options{Platform: c.platform})
		if got := readFlat(t, b).body["arch"]; got != c.want || im.Platform != "linux/"+c.want {
			t.Errorf("platform %q: got the %s image (%s), want %s", c.platform, got, im.Platform, c.want)
		}
	}
	_, err := openRef(t, ref, Options{Platform: "linux/s390x"})
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "no linux/s390x image in the index; it has: linux/arm64, linux/amd64") {
		t.Errorf("absent platform: %v", err)
	}
	single := push(t, host, "armonly:1", arch("arm64"))
	if _, err := openRef(t, single, Options{}); !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "the image is for linux/arm64, not linux/amd64") {
		t.Errorf("an arm64 image asked for amd64: %v", err)
	}
}

// rawManifest puts a hand-made manifest (remote.Taggable).
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error) { return r, nil }

// TestBadInputRefused: each bad input is an error naming what was wrong.
func TestBadInputRefused(t *testing.T) {
	flat := func(layers ...[]ent) error {
		host := startRegistry(t)
		ref := push(t, host, "bad:1", image(t, "linux/amd64", layers...))
		im, err := openRef(t, ref, Options{})
		if err != nil {
			return err
		}
		return im.WriteTar(context.Background(), io.Discard)
	}
	for _, c := range []struct {
		name   string
		layers [][]ent
		is     error
		says   string
	}{
		{"dotdot", [][]ent{{{name: "ok", body: "x"}}, {{name: "../escape", body: "x"}}}, ErrUnsafe, `"../escape": a ".." component`},
		{"dotdot inside", [][]ent{{{name: "a/../../b", body: "x"}}}, ErrUnsafe, `".." component`},
		{"write through an absolute symlink", [][]ent{{{name: "etc", typ: tar.TypeSymlink, link: "/tmp"}}, {{name: "etc/passwd", body: "root::0:0::/:/bin/sh\n"}}}, ErrUnsafe, `its parent etc is a symbolic link (to "/tmp")`},
		{"write through a relative symlink", [][]ent{{{name: "d", typ: tar.TypeSymlink, link: "../../.."}, {name: "d/x", body: "x"}}}, ErrUnsafe, "symbolic link"},
		{"hard link to nothing", [][]ent{{{name: "l", typ: tar.TypeLink, link: "absent"}}}, ErrBadLayer, `hard link to "absent"`},
		{"hard link escaping", [][]ent{{{name: "l", typ: tar.TypeLink, link: "../etc/shadow"}}}, ErrUnsafe, `".." component`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := flat(c.layers...)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want %v saying %q", err, c.is, c.says)
			}
		})
	}

	t.Run("10 GB claimed layer", func(t *testing.T) {
		host := startRegistry(t)
		img := image(t, "linux/amd64", []ent{{name: "x", body: "x"}})
		push(t, host, "big:ok", img)
		m, _ := img.Manifest()
		m = m.DeepCopy()
		m.Layers[0].Size = 10 << 30
		raw, _ := json.Marshal(m)
		r, _ := name.ParseReference(host + "/big:1")
		if err := remote.Put(r, rawManifest(raw)); err != nil {
			t.Fatal(err)
		}
		work := t.TempDir()
		_, err := openRef(t, "docker://"+host+"/big:1", Options{WorkDir: work})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "claims 10737418240 bytes") {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
		if ents, _ := os.ReadDir(work); len(ents) != 0 {
			t.Errorf("work directory has %d files after a refused image, want none (nothing downloaded)", len(ents))
		}
		f := &Flattener{Layers: []Layer{{Name: "huge", Size: 10 << 30, Open: func() (io.ReadCloser, error) {
			t.Error("a layer over the limit was opened")
			return nil, errors.New("no")
		}}}}
		if err := f.WriteTar(context.Background(), io.Discard); !errors.Is(err, ErrTooLarge) {
			t.Errorf("flattener: %v", err)
		}
	})

	t.Run("layers over the total", func(t *testing.T) {
		host := startRegistry(t)
		ref := push(t, host, "t:1", image(t, "linux/amd64", []ent{{name: "x", body: strings.Repeat("x", 4096)}}))
		im, err := openRef(t, ref, Options{Limits: Limits{MaxTotalSize: 1024}})
		if err == nil {
			err = im.WriteTar(context.Background(), io.Discard)
		}
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
	})

	t.Run("corrupted layer from the registry", func(t *testing.T) {
		img := image(t, "linux/amd64", []ent{{name: "x", body: "the real content"}})
		ls, _ := img.Layers()
		bad, _ := ls[0].Digest()
		s := httptest.NewServer(corrupting(t, bad.String()))
		t.Cleanup(s.Close)
		host := strings.TrimPrefix(s.URL, "http://")
		ref := push(t, host, "c:1", img)
		_, err := openRef(t, ref, Options{})
		if !errors.Is(err, ErrBadLayer) || !strings.Contains(err.Error(), bad.String()) {
			t.Errorf("got %v, want ErrBadLayer naming %s", err, bad)
		}
	})

	t.Run("corrupted layer in a layout", func(t *testing.T) {
		img := image(t, "linux/amd64", []ent{{name: "x", body: "the real content"}})
		lay := filepath.Join(t.TempDir(), "layout")
		p, _ := layout.Write(lay, empty.Index)
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		d, _ := ls[0].Digest()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(layerTar(t, []ent{{name: "x", body: "something else"}}))
		zw.Close()
		if err := os.WriteFile(filepath.Join(lay, "blobs", "sha256", d.Hex), gz.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := openRef(t, "oci:"+lay, Options{})
		if err == nil {
			err = im.WriteTar(context.Background(), io.Discard)
		}
		if !errors.Is(err, ErrBadLayer) || !strings.Contains(err.Error(), "corrupted") {
			t.Errorf("got %v, want ErrBadLayer", err)
		}
	})

	t.Run("oci-archive with a link", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "evil.tar")
		out, _ := os.Create(file)
		tw := tar.NewWriter(out)
		tw.WriteHeader(&tar.Header{Name: "index.json", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
		tw.Close()
		out.Close()
		work := t.TempDir()
		_, err := openRef(t, "oci-archive:"+file, Options{WorkDir: work})
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("got %v, want ErrUnsafe", err)
		}
	})
}

// corrupting is a registry that flips a byte of the blob named digest.
func corrupting(t *testing.T, digest string) http.Handler {
	reg := startRegistryHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 20 {
			b[len(b)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(b)
	})
}

// TestGGCRExtractInThisVersion records what go-containerregistry v0.22.1's
// mutate.Extract does, and why Flattener exists: the opaque-whiteout bug
// (ggcr#1897) is fixed in this version (PR #2372), but Extract writes the
// top layer first, so a hard link to a lower layer's file comes before the
// file, which mksquashfs -tar (and mkimage's tar check) refuse.
func TestGGCRExtractInThisVersion(t *testing.T) {
	img := image(t, "linux/amd64",
		[]ent{{name: "a/", typ: tar.TypeDir}, {name: "a/b/", typ: tar.TypeDir}, {name: "a/b/foo", body: "foo"}, {name: "data", body: "d"}},
		[]ent{{name: "a/", typ: tar.TypeDir}, {name: "a/.wh..wh..opq"}, {name: "link", typ: tar.TypeLink, link: "data"}},
	)
	rc := mutate.Extract(img)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	f := readFlat(t, b)
	if _, ok := f.h["a/b/foo"]; ok {
		t.Error("mutate.Extract kept a/b/foo under an opaque a/: ggcr#1897 is back; Flattener does not depend on it")
	}
	pos := map[string]int{}
	for i, n := range f.order {
		pos[n] = i
	}
	if pos["link"] > pos["data"] {
		t.Error("mutate.Extract now writes a hard link after its target: reconsider Flattener's comment")
	}
	ours, _ := flatten(t, push(t, startRegistry(t), "x:1", img), Options{})
	g := readFlat(t, ours)
	if _, ok := g.h["a/b/foo"]; ok || g.h["link"].Typeflag != tar.TypeLink || g.h["link"].Linkname != "data" {
		t.Errorf("Flattener: a/b/foo present %v, link %+v", ok, g.h["link"])
	}
}

// FuzzParseRef: any string parses or errors without panicking, and a
// parsed reference parses again to itself from its String.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"docker://r.example/x:1", "oci:/d:t", "oci-archive:f", "docker-archive:f", "/a/b", "oci:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		r2, err := ParseRef(r.String())
		if err != nil || r2 != r {
			t.Errorf("ParseRef(%q) = %+v; its String %q parses to %+v, %v", s, r, r.String(), r2, err)
		}
	})
}
