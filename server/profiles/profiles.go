package profiles

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// Artifact is a resolved reference.
type Artifact struct {
	Digest boot.Digest
	Size   int64
}

// Artifacts is what a kernel-booting profile resolves to now.
type Artifacts struct {
	Kernel, Initramfs, Root Artifact
}

// Names resolves published image names (server/state).
type Names interface {
	Image(ctx context.Context, name string) (state.Image, error)
}

// Set is a configuration's profiles, ready to resolve.
type Set struct {
	cfg   *config.Config
	blobs *blobstore.Store
	names Names
	files map[string]Artifact // absolute paths, copied into the blob store at New

	mu    sync.Mutex // guards kinds
	kinds map[boot.Digest]string
}

// New checks that every profile resolves now (a reference that does not
// is an error naming the profile's line) and copies file references into
// the blob store.
func New(ctx context.Context, cfg *config.Config, blobs *blobstore.Store, names Names) (*Set, error) {
	s := &Set{cfg: cfg, blobs: blobs, names: names, files: map[string]Artifact{}, kinds: map[boot.Digest]string{}}
	var errs []error
	for _, name := range sortedNames(cfg.Profiles) {
		p := cfg.Profiles[name]
		if p.Sanboot != "" {
			if err := checkDisk(p.Sanboot); err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: sanboot %w", name, err)})
			}
			continue
		}
		for _, ref := range [][2]string{{"kernel", p.Kernel}, {"initramfs", p.Initramfs}, {"root", p.Root}} {
			if filepath.IsAbs(ref[1]) {
				if err := s.ingest(ref[1]); err != nil {
					errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: %s %s: %w", name, ref[0], ref[1], err)})
				}
			}
		}
		if _, err := s.Resolve(ctx, p); err != nil {
			errList := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errList = j.Unwrap()
			}
			for _, e := range errList {
				if pe, ok := e.(*refError); ok && filepath.IsAbs(pe.ref) {
					continue // reported above
				}
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: %w", name, e)})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Set) ingest(path string) error {
	if _, ok := s.files[path]; ok {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, n, err := s.blobs.Ingest(f)
	if err != nil {
		return err
	}
	s.files[path] = Artifact{Digest: d, Size: n}
	return nil
}

// Config is the configuration the set was made from.
func (s *Set) Config() *config.Config { return s.cfg }

// Profile returns a profile by name, or nil.
func (s *Set) Profile(name string) *config.Profile { return s.cfg.Profiles[name] }

// Select returns the profile of the machine with this MAC: its own, else
// the default profile. m is its [machine] section, if any.
func (s *Set) Select(mac net.HardwareAddr) (p *config.Profile, m *config.Machine, err error) {
	p, m = s.cfg.ProfileFor(mac)
	if p == nil {
		return nil, nil, fmt.Errorf("no profile for %s and no [profile %s] in %s", mac, config.DefaultProfile, s.cfg.File)
	}
	return p, m, nil
}

type refError struct {
	what, ref string
	err       error
}

func (e *refError) Error() string { return fmt.Sprintf("%s %s: %v", e.what, e.ref, e.err) }
func (e *refError) Unwrap() error { return e.err }

// Resolve returns what p's references point to now.
func (s *Set) Resolve(ctx context.Context, p *config.Profile) (Artifacts, error) {
	var a Artifacts
	var errs []error
	for _, ref := range []struct {
		kind, val string
		dst       *Artifact
	}{{"kernel", p.Kernel, &a.Kernel}, {"initramfs", p.Initramfs, &a.Initramfs}, {"root", p.Root, &a.Root}} {
		art, err := s.resolve(ctx, ref.kind, ref.val)
		if err != nil {
			errs = append(errs, &refError{ref.kind, ref.val, err})
			continue
		}
		*ref.dst = art
		s.mu.Lock()
		s.kinds[art.Digest] = ref.kind
		s.mu.Unlock()
	}
	return a, errors.Join(errs...)
}

func (s *Set) resolve(ctx context.Context, kind, ref string) (Artifact, error) {
	switch {
	case filepath.IsAbs(ref):
		a, ok := s.files[ref]
		if !ok {
			return Artifact{}, errors.New("not read at start")
		}
		return a, nil
	case strings.HasPrefix(ref, boot.DigestAlgorithm+":"):
		d, err := boot.ParseDigest(ref)
		if err != nil {
			return Artifact{}, err
		}
		fi, err := os.Stat(s.blobs.BlobPath(d))
		if err != nil {
			return Artifact{}, fmt.Errorf("blob %s: %w", d, blobstore.ErrNotFound)
		}
		return Artifact{Digest: d, Size: fi.Size()}, nil
	}
	im, err := s.names.Image(ctx, ref)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return Artifact{}, fmt.Errorf("no image of that name (publish one: overboot image publish %s FILE, or overboot mkimage ... -name %s)", ref, ref)
		}
		return Artifact{}, err
	}
	if im.Kind != kind {
		return Artifact{}, fmt.Errorf("image %s (version %d) is a %s, not a %s", ref, im.Version, im.Kind, kind)
	}
	d, err := boot.ParseDigest(im.Digest)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Digest: d, Size: im.Size}, nil
}

// Kind says what a digest was last resolved as (kernel, initramfs, root),
// or "".
func (s *Set) Kind(d boot.Digest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kinds[d]
}

// Digests lists the blobs the configuration references by path or digest
// (names are the state store's): blobs a collection must keep.
func (s *Set) Digests() map[boot.Digest]bool {
	out := map[boot.Digest]bool{}
	for _, a := range s.files {
		out[a.Digest] = true
	}
	for _, p := range s.cfg.Profiles {
		for _, ref := range []string{p.Kernel, p.Initramfs, p.Root} {
			if d, err := boot.ParseDigest(ref); err == nil {
				out[d] = true
			}
		}
	}
	return out
}

// checkDisk checks that a sanboot base disk is a readable file of whole
// 512-byte blocks.
func checkDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file (a raw disk image)", path)
	case fi.Size() == 0 || fi.Size()%512 != 0:
		return fmt.Errorf("%s: %d bytes, not a whole number of 512-byte blocks", path, fi.Size())
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
