package initagent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/overboot/overboot/boot"
	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// loadModules loads the initramfs's module list and any extra modules, with
// their dependencies from modules.dep, and the driver segments' modules:
// device drivers first (the listed ones, then the segments'), so that the
// network step, which may run meanwhile (LoadModules.Background), finds its
// interface as early as it can; then the rest (filesystems, NBD,
// device-mapper).
func loadModules(s LoadModules) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	release := unix.ByteSliceToString(u.Release[:])
	names, aliases, skipped, err := listedModules(s, release)
	if err != nil {
		return "", err
	}
	if len(names) == 0 && s.SegmentDir == "" {
		return "no modules listed", nil
	}
	drivers, others := aliases.DeviceDrivers(names)
	var prober *kmodule.Prober
	if len(names) > 0 {
		if prober, err = kmodule.NewProber(kmodule.ProbeOpts{}); err != nil {
			return "", fmt.Errorf("read modules.dep: %w", err)
		}
	}
	if err := probeAll(prober, drivers); err != nil {
		return "", err
	}
	seg, err := loadSegments(s.SegmentDir, release)
	if err != nil {
		return "", err
	}
	if err := probeAll(prober, others); err != nil {
		return "", err
	}
	note := fmt.Sprintf("%d modules for %s", len(names), release)
	if len(skipped) > 0 {
		note += fmt.Sprintf(" (no hardware for %s)", strings.Join(skipped, ", "))
	}
	if seg != "" {
		note += "; " + seg
	}
	return note, nil
}

// listedModules is the modules of ListFile and Extra, without Skip and
// without the PCI drivers for hardware the machine lacks (skipped), and the
// initramfs's aliases (none when it has no modules.alias).
func listedModules(s LoadModules, release string) (names []string, aliases Aliases, skipped []string, err error) {
	names, err = readModuleList(s.ListFile)
	if err != nil {
		return nil, nil, nil, err
	}
	names = append(names, s.Extra...)
	names = slices.DeleteFunc(names, func(n string) bool {
		return slices.Contains(s.Skip, strings.ReplaceAll(n, "-", "_"))
	})
	if len(names) == 0 {
		return nil, nil, nil, nil
	}
	if _, err := os.Stat(filepath.Join(ModulesDir, release, boot.ModulesDep)); err != nil {
		have, _ := filepath.Glob(filepath.Join(ModulesDir, "*", boot.ModulesDep))
		for i, h := range have {
			have[i] = filepath.Base(filepath.Dir(h))
		}
		return nil, nil, nil, fmt.Errorf("no modules for the running kernel %s in this initramfs (it has: %s): rebuild it with overboot mkimage initramfs --kernel-release %s", release, strings.Join(have, ", "), release)
	}
	if f, err := os.Open(filepath.Join(ModulesDir, release, boot.ModulesAlias)); err == nil {
		aliases, err = ParseAliases(f)
		f.Close()
		if err == nil {
			skipped = aliases.WithoutHardware(names, pciModaliases())
			names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(skipped, n) })
		}
	}
	return names, aliases, skipped, nil
}

// probeAll loads names with the prober (with boot.ModuleOptions),
// concurrently: modules without
// dependencies between them load at once; the prober orders dependencies
// itself and is safe for concurrent use.
func probeAll(prober *kmodule.Prober, names []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := prober.Probe(n, boot.ModuleOptions[strings.ReplaceAll(n, "-", "_")]); err != nil && !errors.Is(err, unix.EEXIST) {
				errs[i] = fmt.Errorf("load module %s: %w", n, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pciModaliases lists the modalias strings of the machine's PCI devices.
func pciModaliases() []string {
	files, _ := filepath.Glob("/sys/bus/pci/devices/*/modalias")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// readModuleList reads one module name per line; '#' starts a comment. A
// missing file means no modules.
func readModuleList(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, sc.Err()
}

// loadSegments loads the module files the driver segments' lists in dir
// name, one after the other in list order (each list has dependencies
// first). A module already loaded (the base had it) is fine.
func loadSegments(dir, release string) (string, error) {
	if dir == "" {
		return "", nil
	}
	segs, err := ReadModuleLists(os.DirFS("/"), dir, release)
	if err != nil {
		return "", err
	}
	var notes []string
	for _, s := range segs {
		var names []string
		for _, f := range s.Files {
			if err := insmod("/" + f); err != nil {
				return "", fmt.Errorf("driver segment %s: load %s: %w (is the segment for this kernel, and the file in it?)", s.Name, "/"+f, err)
			}
			names = append(names, ModuleFileName(f))
		}
		notes = append(notes, fmt.Sprintf("driver segment %s: %s", s.Name, strings.Join(names, " ")))
	}
	return strings.Join(notes, "; "), nil
}

// insmod loads one module file (compressed or not); already loaded is fine.
func insmod(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := kmodule.FileInit(f, "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// ModuleFileName is a module file's module name: its base name without
// .ko and compression suffix, dashes as underscores.
func ModuleFileName(file string) string {
	b := path.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}
