package initramfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// moduleSet is what resolveModules found.
type moduleSet struct {
	files       []string // paths relative to the release directory, sorted
	dep         []byte   // modules.dep trimmed to files
	builtin     []string // requested names the kernel has built in
	builtinFile []byte   // modules.builtin as is (nil if absent)
	alias       []byte   // modules.alias lines of the shipped modules
}

// modName is a module's name as the kernel spells it: file name without
// .ko[.xz|.zst|.gz], dashes as underscores.
func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// resolveModules reads relDir/modules.dep and returns the files of names
// and of everything they depend on.
func resolveModules(relDir string, names []string) (moduleSet, error) {
	depData, err := os.ReadFile(filepath.Join(relDir, "modules.dep"))
	if err != nil {
		return moduleSet{}, fmt.Errorf("kernel modules: %w (is the kernel's modules package installed, and the release right?)", err)
	}
	deps, err := parseModulesDep(depData)
	if err != nil {
		return moduleSet{}, fmt.Errorf("%s: %w", filepath.Join(relDir, "modules.dep"), err)
	}
	byName := map[string]string{}
	for file := range deps {
		byName[modName(file)] = file
	}
	var set moduleSet
	builtins := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(relDir, "modules.builtin")); err == nil {
		set.builtinFile = b
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				builtins[modName(l)] = true
			}
		}
	}
	want := map[string]bool{}
	var visit func(file string)
	visit = func(file string) {
		if want[file] {
			return
		}
		want[file] = true
		for _, d := range deps[file] {
			visit(d)
		}
	}
	var missing []string
	for _, n := range names {
		key := strings.ReplaceAll(n, "-", "_")
		switch file, ok := byName[key]; {
		case ok:
			visit(file)
		case builtins[key]:
			set.builtin = append(set.builtin, n)
		default:
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return moduleSet{}, fmt.Errorf("%w in %s: %s (neither in modules.dep nor built in)", ErrNoModule, relDir, strings.Join(missing, ", "))
	}
	for f := range want {
		set.files = append(set.files, f)
	}
	sort.Strings(set.files)
	var dep bytes.Buffer
	for _, f := range set.files {
		fmt.Fprintf(&dep, "%s:", f)
		for _, d := range deps[f] {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteByte('\n')
	}
	set.dep = dep.Bytes()
	// The agent skips PCI drivers for hardware the machine does not have.
	if b, err := os.ReadFile(filepath.Join(relDir, "modules.alias")); err == nil {
		shipped := map[string]bool{}
		for _, f := range set.files {
			shipped[modName(f)] = true
		}
		var out bytes.Buffer
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "alias" && shipped[strings.ReplaceAll(f[2], "-", "_")] {
				out.WriteString(l + "\n")
			}
		}
		set.alias = out.Bytes()
	}
	return set, nil
}

// parseModulesDep parses "path: dep dep ..." lines; paths are relative to
// the release directory and must stay inside it.
func parseModulesDep(data []byte) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		file, rest, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no ':'", line)
		}
		all := append([]string{file}, strings.Fields(rest)...)
		for _, p := range all {
			if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") {
				return nil, fmt.Errorf("line %d: bad module path %q", line, p)
			}
		}
		deps[file] = all[1:]
	}
	return deps, sc.Err()
}
