package initramfs

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/overboot/overboot/boot"
)

// SegmentOptions say what goes into a driver segment: an extra initramfs
// the boot loader hands the kernel after the base one (the kernel unpacks
// both into the same rootfs, in order). It holds the drivers' module
// files with their dependencies, at the base's lib/modules/RELEASE paths,
// the firmware files they name, and their list in
// boot.InitramfsExtraModulesDir for the agent to load. It depends on the
// kernel release only, not on the base it goes with.
type SegmentOptions struct {
	Tree        *ModuleTree // the kernel's modules (required)
	Drivers     []string    // module names (required)
	Name        string      // the list's name in boot.InitramfsExtraModulesDir; "" = the sorted drivers joined by "+"
	Comment     string      // first line of the list, e.g. what the segment is for
	FirmwareDir string      // default DefaultFirmwareDir
	Compression string      // zstd (default), gzip, xz or none
}

// SegmentSummary describes a built segment.
type SegmentSummary struct {
	Summary                  // Modules: the module files, sorted
	Name            string   // the list's name
	Load            []string // module files in load order (as the list has them, under lib/modules/RELEASE)
	Firmware        []string // firmware files shipped, under lib/firmware
	MissingFirmware []string // firmware the modules name that FirmwareDir lacks
}

// BuildSegment writes a driver segment to w. The output depends only on
// the options and the files they name.
func BuildSegment(ctx context.Context, w io.Writer, o SegmentOptions) (SegmentSummary, error) {
	comp := o.Compression
	if comp == "" {
		comp = "zstd"
	}
	if !contains(Compressions, comp) {
		return SegmentSummary{}, fmt.Errorf("compression %q: want one of %s: %w", comp, strings.Join(Compressions, ", "), ErrOption)
	}
	if o.Tree == nil || len(o.Drivers) == 0 {
		return SegmentSummary{}, fmt.Errorf("segment: no drivers or no module tree: %w", ErrOption)
	}
	name := o.Name
	if name == "" {
		ds := append([]string(nil), o.Drivers...)
		sort.Strings(ds)
		name = strings.Join(ds, "+")
	}
	if name != path.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, " \t\r\n\x00") {
		return SegmentSummary{}, fmt.Errorf("segment name %q: want one file name: %w", name, ErrOption)
	}
	files, err := o.Tree.LoadOrder(o.Drivers)
	if err != nil {
		return SegmentSummary{}, err
	}
	if len(files) == 0 {
		return SegmentSummary{}, fmt.Errorf("segment %s: every driver is built into the kernel: %w", name, ErrOption)
	}
	sum := SegmentSummary{Name: name}
	tree := map[string]*node{}
	base := path.Join(boot.InitramfsModulesDir, o.Tree.Release)
	for _, rel := range files {
		dst := path.Join(base, rel)
		mkdirs(tree, path.Dir(dst))
		tree[dst] = &node{mode: modeFile | 0o644, src: filepath.Join(o.Tree.Dir, rel)}
		sum.Load = append(sum.Load, dst)
	}
	if sum.Firmware, sum.MissingFirmware, err = addFirmware(tree, o.Tree.Dir, files, o.FirmwareDir); err != nil {
		return SegmentSummary{}, err
	}
	list, err := boot.FormatModuleFiles(o.Comment, sum.Load)
	if err != nil {
		return SegmentSummary{}, err
	}
	listPath := path.Join(boot.InitramfsExtraModulesDir, name)
	mkdirs(tree, path.Dir(listPath))
	tree[listPath] = &node{mode: modeFile | 0o644, data: list}
	a, err := writeArchive(ctx, w, tree, comp)
	if err != nil {
		return SegmentSummary{}, err
	}
	sum.Summary = a
	sum.Modules = append([]string(nil), files...)
	sort.Strings(sum.Modules)
	return sum, nil
}

// addFirmware adds to tree, under lib/firmware, the firmware files the
// modules (relative to modDir) name that fwDir has; it returns those
// added and the names it lacks, sorted.
func addFirmware(tree map[string]*node, modDir string, modules []string, fwDir string) (shipped, missing []string, err error) {
	if fwDir == "" {
		fwDir = DefaultFirmwareDir
	}
	seen := map[string]bool{}
	for _, m := range modules {
		names, err := ModuleFirmware(filepath.Join(modDir, m))
		if err != nil {
			return nil, nil, err
		}
		for _, n := range names {
			if seen[n] {
				continue
			}
			seen[n] = true
			found, err := findFirmware(fwDir, n)
			if err != nil {
				return nil, nil, err
			}
			if found == "" {
				missing = append(missing, n)
				continue
			}
			dst := path.Join("lib/firmware", found)
			mkdirs(tree, path.Dir(dst))
			tree[dst] = &node{mode: modeFile | 0o644, src: filepath.Join(fwDir, found)}
			shipped = append(shipped, dst)
		}
	}
	sort.Strings(shipped)
	sort.Strings(missing)
	return shipped, missing, nil
}
