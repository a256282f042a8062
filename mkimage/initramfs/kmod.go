package initramfs

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ModuleTree is a kernel's modules directory, /lib/modules/RELEASE, as
// modules.dep and modules.builtin describe it.
type ModuleTree struct {
	Release string
	Dir     string // ModulesDir/Release

	deps        map[string][]string // module file -> the files it needs
	byName      map[string]string   // module name (underscores) -> file
	builtin     map[string]bool     // names built into the kernel
	builtinFile []byte

	aliasOnce sync.Once // guards aliases and aliasErr
	aliases   map[string][]string
	aliasErr  error
}

// DefaultModulesDir is where kernels' module trees are.
const DefaultModulesDir = "/lib/modules"

// OpenModuleTree reads modulesDir/release/modules.dep (and modules.builtin
// when present); modulesDir "" is DefaultModulesDir.
func OpenModuleTree(modulesDir, release string) (*ModuleTree, error) {
	if modulesDir == "" {
		modulesDir = DefaultModulesDir
	}
	if release == "" || strings.ContainsAny(release, "/\x00") || release == "." || release == ".." {
		return nil, fmt.Errorf("kernel release %q: %w", release, ErrOption)
	}
	t := &ModuleTree{Release: release, Dir: filepath.Join(modulesDir, release), byName: map[string]string{}, builtin: map[string]bool{}}
	depData, err := os.ReadFile(filepath.Join(t.Dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (is the kernel's modules package installed, and the release right?)", err)
	}
	if t.deps, err = parseModulesDep(depData); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(t.Dir, "modules.dep"), err)
	}
	for file := range t.deps {
		t.byName[ModuleName(file)] = file
	}
	if b, err := os.ReadFile(filepath.Join(t.Dir, "modules.builtin")); err == nil {
		t.builtinFile = b
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				t.builtin[ModuleName(l)] = true
			}
		}
	}
	return t, nil
}

// ModuleName is a module's name as the kernel spells it: the file name
// without .ko[.xz|.zst|.gz], dashes as underscores.
func ModuleName(p string) string { return modName(p) }

// File returns the module file (relative to Dir) of a module name.
func (t *ModuleTree) File(name string) (string, bool) {
	f, ok := t.byName[strings.ReplaceAll(name, "-", "_")]
	return f, ok
}

// Builtin reports whether the kernel has the module built in.
func (t *ModuleTree) Builtin(name string) bool {
	return t.builtin[strings.ReplaceAll(name, "-", "_")]
}

// Files lists every module file, sorted.
func (t *ModuleTree) Files() []string {
	out := make([]string, 0, len(t.deps))
	for f := range t.deps {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Deps returns the files a module file needs, as modules.dep lists them.
func (t *ModuleTree) Deps(file string) []string { return t.deps[file] }

// LoadOrder returns the files of the named modules and of everything they
// depend on, each after its dependencies (a depth-first post-order, the
// dependencies of a module in sorted order, so the result depends only on
// the tree and the set of names). Built-in names are skipped; unknown ones
// are an ErrNoModule naming them.
func (t *ModuleTree) LoadOrder(names []string) ([]string, error) {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	var out, missing []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(file string) error
	visit = func(file string) error {
		switch state[file] {
		case 1:
			return fmt.Errorf("%s: circular dependency in modules.dep", file)
		case 2:
			return nil
		}
		state[file] = 1
		ds := append([]string(nil), t.deps[file]...)
		sort.Strings(ds)
		for _, d := range ds {
			if _, ok := t.deps[d]; !ok {
				return fmt.Errorf("%s needs %s, which modules.dep does not list", file, d)
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		state[file] = 2
		out = append(out, file)
		return nil
	}
	for _, n := range sorted {
		file, ok := t.File(n)
		switch {
		case ok:
			if err := visit(file); err != nil {
				return nil, fmt.Errorf("%s: %w", t.Dir, err)
			}
		case t.Builtin(n):
		default:
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w in %s: %s (neither in modules.dep nor built in)", ErrNoModule, t.Dir, strings.Join(missing, ", "))
	}
	return out, nil
}

// NetworkDriverDirs are where the kernel keeps the drivers of wired NICs a
// machine can boot from: every Ethernet driver, and VMware's vmxnet3 (the
// virtio, Hyper-V and Xen NICs are in DefaultModules or need more than a
// driver). Wireless, CAN, WAN, USB (no USB host driver is loaded that
// early) and virtual devices are left out.
var NetworkDriverDirs = []string{"kernel/drivers/net/ethernet/", "kernel/drivers/net/vmxnet3/"}

// IsNetworkDriver reports whether a module file (relative to the release
// directory) is under one of NetworkDriverDirs.
func IsNetworkDriver(file string) bool {
	for _, d := range NetworkDriverDirs {
		if strings.HasPrefix(path.Clean(file), d) {
			return true
		}
	}
	return false
}

// NetworkDrivers lists the names of the PCI drivers (modules with a pci:
// alias) under NetworkDriverDirs, sorted: what a generic initramfs loads
// for machines that boot without iPXE (overboot mkimage initramfs
// -generic). Library modules there come as dependencies; the agent skips
// the drivers of hardware the machine does not have.
func (t *ModuleTree) NetworkDrivers() ([]string, error) {
	aliases, err := t.Aliases()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range t.Files() {
		name := ModuleName(f)
		if !IsNetworkDriver(f) {
			continue
		}
		for _, a := range aliases[name] {
			if strings.HasPrefix(a, "pci:") {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Aliases returns modules.alias as a map from module name (underscores)
// to its patterns ("alias PATTERN MODULE" lines, in file order), read on
// first use.
func (t *ModuleTree) Aliases() (map[string][]string, error) {
	t.aliasOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join(t.Dir, "modules.alias"))
		if err != nil {
			t.aliasErr = err
			return
		}
		t.aliases = map[string][]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "alias" {
				name := strings.ReplaceAll(f[2], "-", "_")
				t.aliases[name] = append(t.aliases[name], f[1])
			}
		}
	})
	return t.aliases, t.aliasErr
}
