package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ent is one entry of a test layer.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattr            map[string]string
}

var layerTime = time.Unix(1_700_000_000, 0)

// layerTar is a layer's tar, from its entries.
func layerTar(t *testing.T, es []ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Devmajor: e.major, Devminor: e.minor, ModTime: layerTime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattr {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// image builds an image (gzip layers, lowest first) for os/arch.
func image(t *testing.T, platform string, layers ...[]ent) v1.Image {
	t.Helper()
	img := empty.Image
	for _, es := range layers {
		l, err := tarball.LayerFromReader(bytes.NewReader(layerTar(t, es)))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// capV2 is a security.capability value (VFS_CAP_REVISION_2, cap_net_raw
// permitted and effective), as a PAX record carries it: raw bytes.
var capV2 = string([]byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: revision 2, effective
	0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // permitted, inheritable (low word): cap_net_raw (13)
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // high words
})

const fstabIn = "UUID=1234 / ext4 errors=remount-ro 0 1\nproc /proc proc defaults 0 0\n/dev/sda3 none swap sw 0 0\n"

// awkwardLayers has each case the flattening must get right, spread over
// three layers.
func awkwardLayers() [][]ent {
	return [][]ent{
		{ // 1: a base
			{name: "etc/", typ: tar.TypeDir},
			{name: "etc/fstab", body: fstabIn},
			{name: "bin/", typ: tar.TypeDir},
			{name: "bin/sh", body: "shell", mode: 0o755},
			{name: "bin/gone", body: "deleted above"},
			{name: "bin/ping", body: "ping", mode: 0o4755},
			{name: "opt/", typ: tar.TypeDir, mode: 0o700},
			{name: "opt/old/", typ: tar.TypeDir},
			{name: "opt/old/x", body: "hidden by an opaque dir above"},
			{name: "opt/keep", body: "hidden too"},
			{name: "usr/", typ: tar.TypeDir},
			{name: "usr/lib/", typ: tar.TypeDir},
			{name: "usr/lib/data", body: "linked across layers"},
			{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			{name: "home/", typ: tar.TypeDir},
			{name: "home/user/", typ: tar.TypeDir, uid: 1000, gid: 1000},
			{name: "home/user/.profile", body: "PS1=$ ", uid: 1000, gid: 1000, mode: 0o600},
		},
		{ // 2: deletions, links, devices, capabilities
			{name: "bin/.wh.gone", body: ""},
			{name: "opt/", typ: tar.TypeDir, mode: 0o750},
			{name: "opt/.wh..wh..opq", body: ""},
			{name: "opt/new", body: "only this in opt"},
			{name: "usr/bin/", typ: tar.TypeDir},
			{name: "usr/bin/datalink", typ: tar.TypeLink, link: "usr/lib/data"},
			{name: "dev/", typ: tar.TypeDir},
			{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
			{name: "bin/cap", body: "cap", mode: 0o755, xattr: map[string]string{"security.capability": capV2}},
			{name: "/abs/made/relative", body: "abs"},
		},
		{ // 3: more of a user's files, a whiteout for nothing
			{name: "home/user/notes", body: "n", uid: 1000, gid: 1000},
			{name: "etc/.wh.not-there", body: ""},
		},
	}
}

// flat is a flattened tar read back: headers by name, bodies, order.
type flat struct {
	h     map[string]*tar.Header
	body  map[string]string
	order []string
}

func readFlat(t *testing.T, b []byte) flat {
	t.Helper()
	f := flat{h: map[string]*tar.Header{}, body: map[string]string{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return f
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := f.h[h.Name]; dup {
			t.Errorf("%s appears twice", h.Name)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f.h[h.Name], f.body[h.Name] = h, string(data)
		f.order = append(f.order, h.Name)
	}
}

// flatten opens ref and returns its flattened tar.
func flatten(t *testing.T, ref string, o Options) ([]byte, *Image) {
	t.Helper()
	im, err := openRef(t, ref, o)
	if err != nil {
		t.Fatalf("open %s: %v", ref, err)
	}
	var b bytes.Buffer
	if err := im.WriteTar(context.Background(), &b); err != nil {
		t.Fatalf("flatten %s: %v", ref, err)
	}
	return b.Bytes(), im
}

func openRef(t *testing.T, ref string, o Options) (*Image, error) {
	t.Helper()
	r, err := ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	if o.WorkDir == "" {
		o.WorkDir = t.TempDir()
	}
	return Open(context.Background(), r, o)
}

// startRegistry runs go-containerregistry's registry on loopback and
// returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(startRegistryHandler())
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func startRegistryHandler() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// push writes img (or an index) to the registry at host as repo:tag.
func push(t *testing.T, host, repo string, img any) string {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	switch x := img.(type) {
	case v1.Image:
		err = remote.Write(ref, x)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, x)
	}
	if err != nil {
		t.Fatal(err)
	}
	return "docker://" + host + "/" + repo
}
