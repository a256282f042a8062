package drivers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/imagekernel"
	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/pci"
)

// Segment is a built driver segment, as its index records it.
type Segment struct {
	Release         string      `json:"release"`
	Name            string      `json:"name"`    // the drivers joined by "+", e.g. "8139cp+8139too"
	Drivers         []string    `json:"drivers"` // module names
	Digest          boot.Digest `json:"digest"`
	Size            int64       `json:"size_bytes"`
	Modules         []string    `json:"modules"` // files, in load order
	Firmware        []string    `json:"firmware,omitempty"`
	MissingFirmware []string    `json:"missing_firmware,omitempty"`
	BuildSeconds    float64     `json:"build_seconds"`
	// Inputs: modules.dep's size and modification time when built.
	DepSize  int64     `json:"modules_dep_size"`
	DepMTime time.Time `json:"modules_dep_mtime"`
}

// Choice is what a machine gets: a segment, or none and why.
type Choice struct {
	Segment *Segment // nil: no segment
	Built   bool     // built for this request (not found in the cache)
	Why     string   // for the log, e.g. "e1000e is in the base initramfs"
}

// Segments builds and caches driver segments. Its zero value (with Blobs
// set) is ready to use, and it is safe for concurrent use.
type Segments struct {
	Blobs       *blobstore.Store
	ModulesDir  string       // default initramfs.DefaultModulesDir
	FirmwareDir string       // default initramfs.DefaultFirmwareDir
	Log         *slog.Logger // nil: discard

	mu       sync.Mutex // guards the maps below
	bases    map[boot.Digest]*base
	trees    map[string]*initramfs.ModuleTree // by release
	segs     map[string]*Segment              // by release + "/" + name
	building map[string]chan struct{}         // closed when that build ends
	nics     map[string]pci.ID                // by MAC: the NIC it last booted from
	matches  map[string][]string              // by release + "/" + PCI id: Match's answer
}

// base is what a base initramfs ships: its kernel release and modules.
type base struct {
	release    string
	modules    map[string]bool // names
	own        boot.Digest     // the modules blob an image's own initramfs names (mkimage/imagekernel); "" for others
	ownRelease string          // the release the marker names
	err        error
}

// Seen remembers the NIC a machine booted from (its bootstrap query), for
// its later requests that carry no query (a menu's choice, a login).
func (s *Segments) Seen(mac string, id pci.ID) {
	if id.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nics == nil {
		s.nics = map[string]pci.ID{}
	}
	s.nics[mac] = id
}

// NIC returns the NIC a machine last booted from, or zero.
func (s *Segments) NIC(mac string) pci.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nics[mac]
}

func (s *Segments) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Segments) firmwareDir() string {
	if s.FirmwareDir == "" {
		return initramfs.DefaultFirmwareDir
	}
	return s.FirmwareDir
}

func (s *Segments) modulesDir() string {
	if s.ModulesDir == "" {
		return initramfs.DefaultModulesDir
	}
	return s.ModulesDir
}

// For decides what a machine booting baseDigest with a NIC of this PCI ID
// needs: nothing (its driver is in the base, or no network driver matches)
// or a segment, built now when the cache has none. An error means the
// server could not decide: the machine can still try the base alone.
func (s *Segments) For(ctx context.Context, baseDigest boot.Digest, id pci.ID) (Choice, error) {
	if id.IsZero() {
		return Choice{Why: "the query did not report the NIC"}, nil
	}
	b := s.base(baseDigest)
	if b.err != nil {
		return Choice{}, b.err
	}
	if b.release == "" {
		return Choice{Why: "the base initramfs ships no kernel modules, so its kernel release is unknown"}, nil
	}
	mt, err := s.treeOf(ctx, b)
	if err != nil {
		return Choice{}, err
	}
	drivers, err := s.match(s.treeKey(mt), mt, id)
	if err != nil {
		return Choice{}, err
	}
	if len(drivers) == 0 {
		return Choice{Why: fmt.Sprintf("no network driver of kernel %s matches %s", b.release, id)}, nil
	}
	var lack []string
	for _, d := range drivers {
		if !b.modules[d] && !mt.Builtin(d) {
			lack = append(lack, d)
		}
	}
	if len(lack) == 0 {
		return Choice{Why: fmt.Sprintf("%s in the base initramfs", strings.Join(drivers, ", "))}, nil
	}
	seg, built, err := s.segment(ctx, mt, lack, id)
	if err != nil {
		return Choice{}, err
	}
	return Choice{Segment: seg, Built: built, Why: fmt.Sprintf("%s not in the base initramfs", strings.Join(lack, ", "))}, nil
}

// match is Match, remembered per release and PCI id: it runs every
// network driver's alias patterns (about 2 ms), and each machine's script
// asks again.
func (s *Segments) match(tree string, mt *initramfs.ModuleTree, id pci.ID) ([]string, error) {
	key := tree + "/" + id.String()
	s.mu.Lock()
	d, ok := s.matches[key]
	s.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := Match(mt, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.matches == nil {
		s.matches = map[string][]string{}
	}
	s.matches[key] = d
	s.mu.Unlock()
	return d, nil
}

// base reads a base initramfs's listing, once per digest.
func (s *Segments) base(d boot.Digest) *base {
	s.mu.Lock()
	b, ok := s.bases[d]
	s.mu.Unlock()
	if ok {
		return b
	}
	b = readBase(s.Blobs, d)
	if b.err != nil {
		return b // not cached: the blob may come back
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bases == nil {
		s.bases = map[boot.Digest]*base{}
	}
	s.bases[d] = b
	return b
}

func readBase(st *blobstore.Store, d boot.Digest) *base {
	f, err := st.OpenBlob(d)
	if err != nil {
		return &base{err: fmt.Errorf("base initramfs: %w", err)}
	}
	defer f.Close()
	segs, err := initramfs.List(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return &base{err: fmt.Errorf("base initramfs %s: %w", d.Short(), err)}
	}
	b := &base{modules: map[string]bool{}}
	for _, sg := range segs {
		for _, e := range sg.Entries {
			if rel, own, ok := imagekernel.ParseMarker(e.Name); ok {
				if b.own != "" && b.own != own {
					return &base{err: fmt.Errorf("base initramfs %s: names two modules blobs (%s, %s)", d.Short(), b.own.Short(), own.Short())}
				}
				b.own, b.ownRelease = own, rel
				continue
			}
			rest, ok := strings.CutPrefix(e.Name, "lib/modules/")
			if !ok {
				continue
			}
			release, file, _ := strings.Cut(rest, "/")
			switch {
			case file == "modules.dep":
				if b.release != "" && b.release != release {
					return &base{err: fmt.Errorf("base initramfs %s: modules of two kernels (%s, %s)", d.Short(), b.release, release)}
				}
				b.release = release
			case e.Type() == '-' && strings.Contains(path.Base(file), ".ko"):
				b.modules[initramfs.ModuleName(file)] = true
			}
		}
	}
	if b.own != "" && b.ownRelease != b.release {
		return &base{err: fmt.Errorf("base initramfs %s: modules of kernel %s, but it names the modules blob of %s", d.Short(), b.release, b.ownRelease)}
	}
	return b
}

// treeOf is the modules tree segments for b are built from: the image's
// own (its modules blob, unpacked once under DATA/drivers/trees/HEX), or
// the server's ModulesDir/RELEASE.
func (s *Segments) treeOf(ctx context.Context, b *base) (*initramfs.ModuleTree, error) {
	if b.own == "" {
		return s.tree(b.release)
	}
	key := "own:" + b.own.String()
	s.mu.Lock()
	mt, ok := s.trees[key]
	s.mu.Unlock()
	if ok {
		return mt, nil
	}
	dir := filepath.Join(s.treesDir(), b.own.Hex())
	if _, err := os.Stat(filepath.Join(dir, b.release, "modules.dep")); err != nil {
		if err := s.unpack(ctx, b.own, b.release, dir); err != nil {
			return nil, fmt.Errorf("driver segments for kernel %s: the image's modules %s: %w", b.release, b.own.Short(), err)
		}
	}
	mt, err := initramfs.OpenModuleTree(dir, b.release)
	if err != nil {
		return nil, fmt.Errorf("driver segments for kernel %s: the image's modules: %w", b.release, err)
	}
	if _, err := mt.Aliases(); err != nil {
		return nil, fmt.Errorf("driver segments for kernel %s: %w", b.release, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trees == nil {
		s.trees = map[string]*initramfs.ModuleTree{}
	}
	s.trees[key] = mt
	return mt, nil
}

func (s *Segments) treesDir() string { return filepath.Join(s.Blobs.Dir(), "drivers", "trees") }

// unpack unpacks the modules blob d into dir, atomically (a directory
// beside it, renamed); two servers doing it at once both succeed.
func (s *Segments) unpack(ctx context.Context, d boot.Digest, release, dir string) error {
	f, err := s.Blobs.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	got, err := imagekernel.UnpackModules(bufio.NewReaderSize(f, 1<<20), tmp)
	if err != nil {
		return err
	}
	if got != release {
		return fmt.Errorf("it holds kernel %s, not %s", got, release)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, release, "modules.dep")); serr == nil {
			return nil // unpacked meanwhile
		}
		return err
	}
	s.log().Info("image modules unpacked for driver segments", "release", release, "modules", d.Short(), "dir", dir)
	return nil
}

// treeKey names a modules tree in the segment caches and index: its
// release, with the modules blob for an image's own tree (an image's
// kernel may share its release with the server's and differ).
func (s *Segments) treeKey(mt *initramfs.ModuleTree) string {
	parent := filepath.Dir(mt.Dir)
	if filepath.Dir(parent) == s.treesDir() {
		hex := filepath.Base(parent)
		return mt.Release + "@" + hex[:min(len(hex), 16)]
	}
	return mt.Release
}

// tree opens a release's modules tree, once.
func (s *Segments) tree(release string) (*initramfs.ModuleTree, error) {
	s.mu.Lock()
	mt, ok := s.trees[release]
	s.mu.Unlock()
	if ok {
		return mt, nil
	}
	mt, err := initramfs.OpenModuleTree(s.modulesDir(), release)
	if err != nil {
		return nil, fmt.Errorf("driver segments for kernel %s: %w: install that kernel's modules on the server", release, err)
	}
	if _, err := mt.Aliases(); err != nil {
		return nil, fmt.Errorf("driver segments for kernel %s: %w", release, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trees == nil {
		s.trees = map[string]*initramfs.ModuleTree{}
	}
	s.trees[release] = mt
	return mt, nil
}

// segment returns the cached segment of these drivers, or builds it; one
// build per key at a time, others wait for it.
func (s *Segments) segment(ctx context.Context, mt *initramfs.ModuleTree, drivers []string, id pci.ID) (*Segment, bool, error) {
	name := strings.Join(drivers, "+")
	key := s.treeKey(mt) + "/" + name
	for {
		s.mu.Lock()
		if seg, ok := s.segs[key]; ok && s.fresh(mt, seg) {
			s.mu.Unlock()
			return seg, false, nil
		}
		wait, busy := s.building[key]
		if !busy {
			if s.building == nil {
				s.building = map[string]chan struct{}{}
			}
			wait = make(chan struct{})
			s.building[key] = wait
		}
		s.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		seg, built, err := s.load(ctx, mt, name, drivers, id)
		s.mu.Lock()
		delete(s.building, key)
		close(wait)
		if err == nil {
			if s.segs == nil {
				s.segs = map[string]*Segment{}
			}
			s.segs[key] = seg
		}
		s.mu.Unlock()
		return seg, built, err
	}
}

// fresh reports whether a cached segment still stands: its blob is there,
// modules.dep has not changed and no firmware it lacked has appeared.
func (s *Segments) fresh(mt *initramfs.ModuleTree, seg *Segment) bool {
	if _, err := os.Stat(s.Blobs.BlobPath(seg.Digest)); err != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(mt.Dir, "modules.dep"))
	if err != nil || fi.Size() != seg.DepSize || !fi.ModTime().Equal(seg.DepMTime) {
		return false
	}
	fw := s.firmwareDir()
	for _, m := range seg.MissingFirmware {
		for _, n := range []string{m, m + ".xz"} {
			if _, err := os.Stat(filepath.Join(fw, n)); err == nil {
				return false
			}
		}
	}
	return true
}

func (s *Segments) indexPath(tree, name string) string {
	return filepath.Join(s.Blobs.Dir(), "drivers", tree, name+".json")
}

// load reads the segment's index entry, or builds the segment and writes
// the entry.
func (s *Segments) load(ctx context.Context, mt *initramfs.ModuleTree, name string, drivers []string, id pci.ID) (*Segment, bool, error) {
	if b, err := os.ReadFile(s.indexPath(s.treeKey(mt), name)); err == nil {
		var seg Segment
		if json.Unmarshal(b, &seg) == nil && seg.Name == name && slices.Equal(seg.Drivers, drivers) && s.fresh(mt, &seg) {
			return &seg, false, nil
		}
	}
	seg, err := s.build(ctx, mt, name, drivers, id)
	if err != nil {
		return nil, false, err
	}
	return seg, true, nil
}

func (s *Segments) build(ctx context.Context, mt *initramfs.ModuleTree, name string, drivers []string, id pci.ID) (*Segment, error) {
	t0 := time.Now()
	fi, err := os.Stat(filepath.Join(mt.Dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	f, err := s.Blobs.TempFile("segment-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	sum, err := initramfs.BuildSegment(ctx, bw, initramfs.SegmentOptions{
		Tree: mt, Drivers: drivers, Name: name, FirmwareDir: s.firmwareDir(),
		Comment: fmt.Sprintf("overboot driver segment %s for PCI %s, kernel %s", name, id, mt.Release),
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("driver segment %s for kernel %s: %w", name, mt.Release, err)
	}
	d, size, err := s.Blobs.Commit(f.Name())
	if err != nil {
		return nil, err
	}
	if d != sum.Digest {
		return nil, fmt.Errorf("driver segment %s: changed while being stored", name)
	}
	seg := &Segment{Release: mt.Release, Name: name, Drivers: drivers, Digest: d, Size: size,
		Modules: sum.Load, Firmware: sum.Firmware, MissingFirmware: sum.MissingFirmware,
		BuildSeconds: time.Since(t0).Seconds(), DepSize: fi.Size(), DepMTime: fi.ModTime()}
	if err := writeIndex(s.indexPath(s.treeKey(mt), name), seg); err != nil {
		// The segment is good; only the next start will build it again.
		s.log().Warn("driver segment index not written", "segment", name, "err", err)
	}
	s.log().Info("driver segment built", "segment", name, "release", mt.Release, "pci", id.String(),
		"bytes", size, "modules", len(seg.Modules), "firmware", len(seg.Firmware), "seconds", seg.BuildSeconds)
	if len(seg.MissingFirmware) > 0 {
		s.log().Warn("driver segment lacks firmware files its drivers name (install the firmware package on the server if the NIC needs them)",
			"segment", name, "dir", s.firmwareDir(), "missing", strings.Join(seg.MissingFirmware, " "))
	}
	return seg, nil
}

// writeIndex writes an index entry atomically.
func writeIndex(p string, seg *Segment) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(seg, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".index-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	return err
}
