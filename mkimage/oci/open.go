package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultPlatform is the platform picked from an index when none is asked.
const DefaultPlatform = "linux/amd64"

// ErrPlatform: the image, or no image of the index, is for the asked platform.
var ErrPlatform = errors.New("no image for the platform")

// Options say how Open finds and reads an image.
type Options struct {
	Platform string // OS/ARCH[/VARIANT]; "" = DefaultPlatform
	// WorkDir holds what Open writes: a registry image's layers (pulled
	// once, then read from there) and an oci-archive's unpacked layout.
	// Needed for docker:// and oci-archive:; the caller removes it.
	WorkDir   string
	Keychain  authn.Keychain    // registry credentials; nil = authn.DefaultKeychain (docker's config.json)
	Transport http.RoundTripper // nil = go-containerregistry's default
	Epoch     *time.Time        // clamp the image's times to it (SOURCE_DATE_EPOCH); nil = the layers' own
	Limits    Limits
}

// Image is an opened container image, ready to flatten: WriteTar makes it
// a mkimage.TarSource.
type Image struct {
	Ref      Ref
	Digest   string // sha256:HEX of the image manifest (docker-archive: the image ID, its config's digest)
	Platform string // the image's OS/ARCH, when its config says
	*Flattener
}

// Open resolves ref (not a Path) to one image for o.Platform and checks
// its layers' sizes against o.Limits. A registry image's layers are
// downloaded into o.WorkDir and checked against their digests.
func Open(ctx context.Context, ref Ref, o Options) (*Image, error) {
	want, err := v1.ParsePlatform(cmpOrString(o.Platform, DefaultPlatform))
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", o.Platform, err)
	}
	var img v1.Image
	var digest v1.Hash
	switch ref.Transport {
	case Docker:
		img, digest, err = openRemote(ctx, ref, *want, o)
	case Layout:
		img, digest, err = openLayout(ref.Name, ref.Tag, *want)
	case OCIArchive:
		if o.WorkDir == "" {
			return nil, errors.New("oci-archive: no work directory to unpack it in")
		}
		dir := filepath.Join(o.WorkDir, "layout")
		if err = unpackLayout(ref.Name, dir, o.Limits); err == nil {
			img, digest, err = openLayout(dir, "", *want)
		}
	case DockerArchive:
		img, err = tarball.ImageFromPath(ref.Name, nil)
		if err == nil {
			digest, err = img.ConfigName()
		}
	default:
		return nil, fmt.Errorf("%s: not a container image reference: %w", ref, ErrRef)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	got := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if cfg.OS != "" && !matches(got, *want) {
		return nil, fmt.Errorf("%s: the image is for %s, not %s (--platform): %w", ref, got, want, ErrPlatform)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: layers: %w", ref, err)
	}
	f := &Flattener{Epoch: o.Epoch, Limits: o.Limits}
	if o.WorkDir != "" {
		f.Cache = filepath.Join(o.WorkDir, "layers")
	}
	var sizes []int64
	if ref.Transport != DockerArchive {
		// docker save does not record compressed sizes: only the bytes read
		// are bounded there.
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("%s: manifest: %w", ref, err)
		}
		if len(m.Layers) != len(ls) {
			return nil, fmt.Errorf("%s: %d layers in the manifest, %d in the image: %w", ref, len(m.Layers), len(ls), ErrBadLayer)
		}
		for _, d := range m.Layers {
			sizes = append(sizes, d.Size)
		}
	}
	if len(cfg.RootFS.DiffIDs) != len(ls) {
		return nil, fmt.Errorf("%s: %d layers, %d diff_ids in the config: %w", ref, len(ls), len(cfg.RootFS.DiffIDs), ErrBadLayer)
	}
	for i, l := range ls {
		layer := Layer{Name: fmt.Sprint("diff_id ", cfg.RootFS.DiffIDs[i]), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: -1, Open: l.Uncompressed}
		if sizes != nil {
			layer.Size = sizes[i]
			if d, err := l.Digest(); err == nil {
				layer.Name = d.String()
			}
		}
		f.Layers = append(f.Layers, layer)
	}
	if err := f.checkSizes(); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if ref.Transport == Docker {
		if err := pull(ctx, f, ls, o.WorkDir); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	return &Image{Ref: ref, Digest: digest.String(), Platform: got.String(), Flattener: f}, nil
}

func cmpOrString(v, d string) string {
	if v != "" {
		return v
	}
	return d
}

// matches says whether an image for have runs as want (a variant only
// counts when asked).
func matches(have, want v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture && (want.Variant == "" || have.Variant == want.Variant)
}

// pickImage picks the image for want from an index.
func pickImage(idx v1.ImageIndex, want v1.Platform) (v1.Image, v1.Hash, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index: %w", err)
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
			continue // attestations, nested indexes
		}
		if matches(*d.Platform, want) {
			img, err := idx.Image(d.Digest)
			return img, d.Digest, err
		}
		have = append(have, d.Platform.String())
	}
	if len(have) == 0 {
		have = []string{"no platform-specific images"}
	}
	return nil, v1.Hash{}, fmt.Errorf("no %s image in the index; it has: %s: %w", want, strings.Join(have, ", "), ErrPlatform)
}

func openRemote(ctx context.Context, ref Ref, want v1.Platform, o Options) (v1.Image, v1.Hash, error) {
	if o.WorkDir == "" {
		return nil, v1.Hash{}, errors.New("no work directory to pull the layers into")
	}
	r, err := name.ParseReference(ref.Name)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, v1.Hash{}, authError(ctx, r, kc, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, v1.Hash{}, err
		}
		return pickImage(idx, want)
	}
	img, err := desc.Image()
	return img, desc.Digest, err
}

// authError says, for a registry's 401 or 403, whether the keychain had
// credentials for it (refused) or none (missing); other errors are
// returned as they are. The credentials themselves are never in it.
func authError(ctx context.Context, r name.Reference, kc authn.Keychain, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) || (te.StatusCode != http.StatusUnauthorized && te.StatusCode != http.StatusForbidden) {
		return err
	}
	reg := r.Context().RegistryStr()
	a, kerr := authn.Resolve(ctx, kc, r.Context())
	switch {
	case kerr != nil:
		return fmt.Errorf("registry %s wants credentials, and reading them failed (%v): %w", reg, kerr, err)
	case a == authn.Anonymous:
		return fmt.Errorf("registry %s wants credentials, and docker's config.json ($DOCKER_CONFIG, or ~/.docker) has none for it (docker login %s): %w", reg, reg, err)
	}
	return fmt.Errorf("registry %s refused the credentials for it from docker's config.json ($DOCKER_CONFIG, or ~/.docker): %w", reg, err)
}

// openLayout opens the image tagged tag (its only image when tag is "")
// of the layout in dir.
func openLayout(dir, tag string, want v1.Platform) (v1.Image, v1.Hash, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	var found []v1.Descriptor
	var tags []string
	for _, d := range im.Manifests {
		t := d.Annotations["org.opencontainers.image.ref.name"]
		tags = append(tags, cmpOrString(t, "(untagged "+d.Digest.String()+")"))
		if tag == "" || t == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return nil, v1.Hash{}, fmt.Errorf("no image tagged %q in the layout; it has: %s", tag, strings.Join(tags, ", "))
	case len(found) == 0:
		return nil, v1.Hash{}, errors.New("the layout holds no image")
	case len(found) > 1:
		return nil, v1.Hash{}, fmt.Errorf("the layout holds %d images: name one (oci:DIR:TAG); it has: %s", len(found), strings.Join(tags, ", "))
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		sub, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, v1.Hash{}, err
		}
		return pickImage(sub, want)
	}
	img, err := idx.Image(d.Digest)
	return img, d.Digest, err
}

// pull downloads the layers of a registry image into dir once, each
// checked against its digest and size, and points f's layers at the files.
func pull(ctx context.Context, f *Flattener, ls []v1.Layer, dir string) error {
	for i, l := range ls {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		file := filepath.Join(dir, fmt.Sprintf("layer-%d.blob", i+1))
		if err := download(l, file, d, f.Layers[i].Size); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, d, err)
		}
		f.Layers[i].Open = func() (io.ReadCloser, error) {
			tl, err := tarball.LayerFromFile(file)
			if err != nil {
				return nil, err
			}
			return tl.Uncompressed()
		}
	}
	return nil
}

func download(l v1.Layer, file string, want v1.Hash, size int64) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(rc, size+1))
	if err != nil {
		return fmt.Errorf("download: %v: %w", err, ErrBadLayer)
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	switch {
	case n != size:
		return fmt.Errorf("the registry sent %d bytes, the manifest says %d: %w", n, size, ErrBadLayer)
	case got != want:
		return fmt.Errorf("the registry sent content with digest %s: corrupted: %w", got, ErrBadLayer)
	}
	return out.Close()
}
