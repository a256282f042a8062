package initramfs

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
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

// resolveModules returns the files of names and of everything they
// depend on in t.
func resolveModules(t *ModuleTree, names []string) (moduleSet, error) {
	files, err := t.LoadOrder(names)
	if err != nil {
		return moduleSet{}, err
	}
	set := moduleSet{files: files, builtinFile: t.builtinFile}
	for _, n := range names {
		if _, ok := t.File(n); !ok && t.Builtin(n) {
			set.builtin = append(set.builtin, n)
		}
	}
	sort.Strings(set.files)
	var dep bytes.Buffer
	for _, f := range set.files {
		fmt.Fprintf(&dep, "%s:", f)
		for _, d := range t.Deps(f) {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteByte('\n')
	}
	set.dep = dep.Bytes()
	// The agent skips PCI drivers for hardware the machine does not have.
	if aliases, err := t.Aliases(); err == nil {
		var out bytes.Buffer
		for _, f := range set.files {
			name := ModuleName(f)
			for _, a := range aliases[name] {
				fmt.Fprintf(&out, "alias %s %s\n", a, name)
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
