package profiles

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/identity"
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

// Remote brings a blob the store lacks from elsewhere (other overboot
// servers: package server/peers), checked against its digest and size
// (-1: unknown).
type Remote interface {
	// Sourced reports whether there is anywhere to fetch from.
	Sourced() bool
	Fetch(ctx context.Context, d boot.Digest, size int64) error
}

// ErrElsewhere says that a blob is not in the store yet but may be had
// from a Remote: Resolve fetches it.
var ErrElsewhere = errors.New("not here yet: fetched from a peer or the origin at first use")

// Set is a configuration's profiles, ready to resolve.
type Set struct {
	cfg    *config.Config
	blobs  *blobstore.Store
	names  Names
	remote Remote              // nil: none
	files  map[string]Artifact // absolute paths, copied into the blob store at New

	templates map[string]*identity.Templates // by profile, for those with files = DIR

	mu    sync.Mutex // guards kinds
	kinds map[boot.Digest]string
}

// New checks that every profile resolves now (a reference that does not
// is an error naming the profile's line) and copies file references into
// the blob store. A blob remote can bring (ErrElsewhere) is no error: it
// is fetched when a machine first needs it. remote may be nil.
func New(ctx context.Context, cfg *config.Config, blobs *blobstore.Store, names Names, remote Remote) (*Set, error) {
	s := &Set{cfg: cfg, blobs: blobs, names: names, remote: remote, files: map[string]Artifact{}, kinds: map[boot.Digest]string{}, templates: map[string]*identity.Templates{}}
	var errs []error
	for _, name := range sortedNames(cfg.Profiles) {
		p := cfg.Profiles[name]
		if p.Sanboot != "" {
			if err := checkDisk(p.Sanboot); err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: p.LineOf("sanboot"), Err: fmt.Errorf("profile %s: sanboot %w", name, err)})
			}
			continue
		}
		if p.Files != "" {
			ts, err := identity.LoadTemplates(p.Files)
			if err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: p.LineOf("files"), Err: fmt.Errorf("profile %s: files: %w", name, err)})
			}
			s.templates[name] = ts
		}
		for _, ref := range [][2]string{{"kernel", p.Kernel}, {"initramfs", p.Initramfs}, {"root", p.Root}} {
			if filepath.IsAbs(ref[1]) {
				if err := s.ingest(ref[1]); err != nil {
					errs = append(errs, &config.Error{File: cfg.File, Line: p.LineOf(ref[0]), Err: fmt.Errorf("profile %s: %s %s: %w", name, ref[0], ref[1], err)})
				}
			}
		}
		if _, err := s.Peek(ctx, p); err != nil {
			errList := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errList = j.Unwrap()
			}
			for _, e := range errList {
				if errors.Is(e, ErrElsewhere) {
					continue
				}
				line := p.Line
				if pe, ok := e.(*refError); ok {
					if filepath.IsAbs(pe.ref) {
						continue // reported above
					}
					line = p.LineOf(pe.what)
				}
				errs = append(errs, &config.Error{File: cfg.File, Line: line, Err: fmt.Errorf("profile %s: %w", name, e)})
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

// Templates are a profile's files to render per machine, or nil.
func (s *Set) Templates(profile string) *identity.Templates { return s.templates[profile] }

// Config is the configuration the set was made from.
func (s *Set) Config() *config.Config { return s.cfg }

// Profile returns a profile by name, or nil.
func (s *Set) Profile(name string) *config.Profile { return s.cfg.Profiles[name] }

// Who is what a request says about a machine: names, not proofs (they
// choose a profile; the profile's enrolment policy decides what it gets).
type Who struct {
	MAC      net.HardwareAddr // of the NIC that booted
	UUID     string           // SMBIOS UUID, lowercase; "" or all zeros = unknown
	Hostname string
	Arch     string // iPXE's ${buildarch}
	Platform string // iPXE's ${platform}
	IP       netip.Addr
}

// Reason says which rule chose a profile and where it is written.
type Reason struct {
	Rule string // e.g. "machine 52:54:00:12:34:56", "subnet 192.0.2.0/24", "select gpu", "default"
	File string
	Line int
}

func (r Reason) String() string {
	if r.Line == 0 {
		return r.Rule
	}
	return fmt.Sprintf("%s at %s:%d", r.Rule, r.File, r.Line)
}

const zeroUUID = "00000000-0000-0000-0000-000000000000"

// Machine is the [machine] section naming w: by MAC, else by UUID.
func (s *Set) Machine(w Who) *config.Machine {
	if w.MAC != nil {
		if m := s.cfg.Machines[w.MAC.String()]; m != nil {
			return m
		}
	}
	if w.UUID != "" && w.UUID != zeroUUID {
		return s.cfg.UUIDs[w.UUID]
	}
	return nil
}

// Select chooses w's profile, in this order (pxelinux's, with selectors):
//  1. its [machine MAC] section's profile;
//  2. its [machine UUID] section's profile (iPXE reports ${uuid}: all
//     zeros when the firmware has none, which matches nothing);
//  3. the longest [subnet CIDR] holding its address;
//  4. the first [select NAME] in the file whose keys all match (a key's
//     values are alternatives; labels are its [machine] section's);
//  5. [profile default].
//
// m is w's [machine] section, if any (its hostname and labels).
func (s *Set) Select(w Who) (p *config.Profile, m *config.Machine, why Reason, err error) {
	file := s.cfg.File
	m = s.Machine(w)
	if w.MAC != nil {
		if mm := s.cfg.Machines[w.MAC.String()]; mm != nil && mm.Profile != "" {
			return s.cfg.Profiles[mm.Profile], m, Reason{"machine " + mm.Name(), file, mm.Line}, nil
		}
	}
	if w.UUID != "" && w.UUID != zeroUUID {
		if mm := s.cfg.UUIDs[w.UUID]; mm != nil && mm.Profile != "" {
			return s.cfg.Profiles[mm.Profile], m, Reason{"machine " + mm.Name(), file, mm.Line}, nil
		}
	}
	if w.IP.IsValid() {
		var best *config.Subnet
		for _, sn := range s.cfg.Subnets {
			if sn.Prefix.Contains(w.IP.Unmap()) && (best == nil || sn.Prefix.Bits() > best.Prefix.Bits()) {
				best = sn
			}
		}
		if best != nil {
			return s.cfg.Profiles[best.Profile], m, Reason{"subnet " + best.Prefix.String(), file, best.Line}, nil
		}
	}
	var labels []string
	if m != nil {
		labels = m.Labels
	}
	hostname := strings.ToLower(w.Hostname)
	if m != nil && m.Hostname != "" {
		hostname = strings.ToLower(m.Hostname)
	}
	for _, sl := range s.cfg.Selects {
		if matchAny(sl.Arch, w.Arch, eq) && matchAny(sl.Platform, w.Platform, eq) &&
			matchAny(sl.Hostname, hostname, glob) && matchLabels(sl.Label, labels) {
			return s.cfg.Profiles[sl.Profile], m, Reason{"select " + sl.Name, file, sl.Line}, nil
		}
	}
	if p := s.cfg.Profiles[config.DefaultProfile]; p != nil {
		return p, m, Reason{"default", file, p.Line}, nil
	}
	who := "this machine"
	if w.MAC != nil {
		who = w.MAC.String()
	}
	return nil, m, Reason{}, fmt.Errorf("no profile for %s and no [profile %s] in %s", who, config.DefaultProfile, file)
}

func eq(pattern, v string) bool { return pattern == strings.ToLower(v) }

func glob(pattern, v string) bool {
	ok, _ := path.Match(pattern, v)
	return ok
}

// matchAny: an absent key matches; a present one needs one of its values.
func matchAny(values []string, v string, match func(pattern, v string) bool) bool {
	if len(values) == 0 {
		return true
	}
	if v == "" {
		return false
	}
	for _, p := range values {
		if match(p, v) {
			return true
		}
	}
	return false
}

func matchLabels(want, have []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

type refError struct {
	what, ref string
	err       error
}

func (e *refError) Error() string { return fmt.Sprintf("%s %s: %v", e.what, e.ref, e.err) }
func (e *refError) Unwrap() error { return e.err }

// Resolve returns what p's references point to now, fetching from the
// Remote a blob that is not in the store yet (it waits for the transfer).
func (s *Set) Resolve(ctx context.Context, p *config.Profile) (Artifacts, error) {
	return s.resolveAll(ctx, p, true)
}

// Peek is Resolve without fetching: a blob the Remote could bring is an
// error that Is ErrElsewhere.
func (s *Set) Peek(ctx context.Context, p *config.Profile) (Artifacts, error) {
	return s.resolveAll(ctx, p, false)
}

func (s *Set) resolveAll(ctx context.Context, p *config.Profile, fetch bool) (Artifacts, error) {
	var a Artifacts
	var errs []error
	// With kernel = image, the root's name is read once: its kernel,
	// initramfs and root are then of one version, even while a publish
	// moves the name.
	var root *state.Image
	if p.Kernel == config.ImageRef || p.Initramfs == config.ImageRef {
		im, err := s.image(ctx, "root", p.Root)
		if err != nil {
			return a, &refError{"root", p.Root, err}
		}
		root = &im
	}
	for _, ref := range []struct {
		kind, val string
		dst       *Artifact
	}{{"kernel", p.Kernel, &a.Kernel}, {"initramfs", p.Initramfs, &a.Initramfs}, {"root", p.Root, &a.Root}} {
		if ref.kind == "root" && p.RootNFS != nil {
			continue // root = nfs://...: no image (a.Root stays zero)
		}
		var art Artifact
		var err error
		switch {
		case ref.val == config.ImageRef:
			art, err = s.own(ctx, ref.kind, root, fetch)
		case ref.kind == "root" && root != nil:
			art, err = s.blob(ctx, *root, fetch)
		default:
			art, err = s.resolve(ctx, ref.kind, ref.val, fetch)
		}
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

// own resolves kernel = image or initramfs = image: the blob recorded with
// the root image's version.
func (s *Set) own(ctx context.Context, kind string, root *state.Image, fetch bool) (Artifact, error) {
	ref := root.OwnKernel
	if kind == "initramfs" {
		ref = root.OwnInitramfs
	}
	if ref == "" {
		return Artifact{}, fmt.Errorf("image %s (version %d) has no %s of its own: build it from a tree with /boot/vmlinuz-* and /lib/modules/* (overboot image import, mkimage root --store)", root.Name, root.Version, kind)
	}
	d, err := boot.ParseDigest(ref)
	if err != nil {
		return Artifact{}, fmt.Errorf("image %s (version %d): its %s: %w", root.Name, root.Version, kind, err)
	}
	fi, err := s.here(ctx, d, -1, fetch)
	if err != nil {
		return Artifact{}, fmt.Errorf("image %s (version %d): its %s, blob %s: %w", root.Name, root.Version, kind, d, err)
	}
	return Artifact{Digest: d, Size: fi.Size()}, nil
}

func (s *Set) resolve(ctx context.Context, kind, ref string, fetch bool) (Artifact, error) {
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
		fi, err := s.here(ctx, d, -1, fetch)
		if err != nil {
			return Artifact{}, fmt.Errorf("blob %s: %w", d, err)
		}
		return Artifact{Digest: d, Size: fi.Size()}, nil
	}
	im, err := s.image(ctx, kind, ref)
	if err != nil {
		return Artifact{}, err
	}
	return s.blob(ctx, im, fetch)
}

// image reads a name's current version, which must be of kind.
func (s *Set) image(ctx context.Context, kind, ref string) (state.Image, error) {
	im, err := s.names.Image(ctx, ref)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return state.Image{}, fmt.Errorf("no image of that name (publish one: overboot image publish %s FILE, or overboot mkimage ... --name %s)", ref, ref)
		}
		return state.Image{}, err
	}
	if im.Kind != kind {
		return state.Image{}, fmt.Errorf("image %s (version %d) is a %s, not a %s", ref, im.Version, im.Kind, kind)
	}
	return im, nil
}

// blob finds an image version's blob.
func (s *Set) blob(ctx context.Context, im state.Image, fetch bool) (Artifact, error) {
	d, err := boot.ParseDigest(im.Digest)
	if err != nil {
		return Artifact{}, err
	}
	// The name's blob must be there: a machine sent to a missing one
	// fails at its download, far from the cause.
	if _, err := s.here(ctx, d, im.Size, fetch); err != nil {
		if errors.Is(err, ErrElsewhere) {
			return Artifact{}, fmt.Errorf("image %s (version %d): blob %s: %w", im.Name, im.Version, d, err)
		}
		return Artifact{}, fmt.Errorf("image %s (version %d): blob %s: %w (restore it, or roll the name back: overboot image rollback %s)", im.Name, im.Version, d, err, im.Name)
	}
	return Artifact{Digest: d, Size: im.Size}, nil
}

// here finds the blob d in the store; when it is not there and a Remote
// is sourced, it is ErrElsewhere, or with fetch, fetched (size bytes, -1:
// unknown). An error that is not the Remote's Is blobstore.ErrNotFound.
func (s *Set) here(ctx context.Context, d boot.Digest, size int64, fetch bool) (os.FileInfo, error) {
	fi, err := os.Stat(s.blobs.BlobPath(d))
	if err == nil {
		return fi, nil
	}
	if s.remote == nil || !s.remote.Sourced() {
		return nil, blobstore.ErrNotFound
	}
	if !fetch {
		return nil, ErrElsewhere
	}
	if err := s.remote.Fetch(ctx, d, size); err != nil {
		return nil, fmt.Errorf("%w: %w", blobstore.ErrNotFound, err)
	}
	return os.Stat(s.blobs.BlobPath(d))
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
