package imagekernel

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoKernel: the tree holds no /boot/vmlinuz-RELEASE with a modules
// tree of the same release. Not a failure for a root image: most have no
// kernel.
var ErrNoKernel = errors.New("no kernel of its own")

// ModulesDirs are where a tree's modules are, relative to its root, in the
// order they are looked at (Debian's merged /usr has them in the second,
// with /lib a symbolic link).
var ModulesDirs = []string{"lib/modules", "usr/lib/modules"}

// Kernel is a kernel found in a tree.
type Kernel struct {
	Release    string   // e.g. 6.1.0-57-cloud-amd64
	Vmlinuz    string   // the kernel file
	ModulesDir string   // the directory holding Release/ (and its modules.dep)
	Others     []string // the other releases the tree has, sorted
}

// wanted reports whether a path of the image (relative, cleaned) is part of
// a kernel: boot/vmlinuz-* or anything under a ModulesDirs entry.
func wanted(name string) bool {
	if path.Dir(name) == "boot" && strings.HasPrefix(path.Base(name), "vmlinuz-") && len(path.Base(name)) > len("vmlinuz-") {
		return true
	}
	for _, d := range ModulesDirs {
		if strings.HasPrefix(name, d+"/") {
			return true
		}
	}
	return false
}

// Capture copies the kernel files of a tar stream into Dir as a build
// streams them (it implements mkimage.Capturer): regular files and hard
// links to them, under boot/vmlinuz-* and the ModulesDirs, at the same
// paths. Names come cleaned and confined from the build (mkimage refuses
// "..", and paths through symbolic links, before any capture).
type Capture struct {
	Dir string
}

// Capture returns a writer for a wanted regular file, links a wanted hard
// link to its captured target, and ignores everything else.
func (c *Capture) Capture(name string, h *tar.Header) (io.WriteCloser, error) {
	if !wanted(name) || strings.HasPrefix(name, "/") || slices.Contains(strings.Split(name, "/"), "..") {
		return nil, nil
	}
	dst := filepath.Join(c.Dir, filepath.FromSlash(name))
	switch h.Typeflag {
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	case tar.TypeLink:
		if !wanted(h.Linkname) {
			return nil, nil
		}
		src := filepath.Join(c.Dir, filepath.FromSlash(h.Linkname))
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			return nil, nil
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		return nil, os.Link(src, dst)
	}
	return nil, nil
}

// Collect copies the kernel files of the directory tree root into dst, as
// Capture does for a tar: boot/vmlinuz-RELEASE and the modules trees of
// those releases, regular files only. A path through a symbolic link is
// not taken (it could point anywhere on this machine).
func Collect(root, dst string) error {
	ents, err := os.ReadDir(filepath.Join(root, "boot"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if isDir(filepath.Join(root, "boot")) != nil {
		return nil
	}
	for _, e := range ents {
		name := "boot/" + e.Name()
		if !wanted(name) || !e.Type().IsRegular() {
			continue
		}
		release := strings.TrimPrefix(e.Name(), "vmlinuz-")
		var mods string
		for _, d := range ModulesDirs {
			if realDirs(root, d+"/"+release) {
				mods = d + "/" + release
				break
			}
		}
		if mods == "" {
			continue
		}
		if err := copyFile(filepath.Join(root, name), filepath.Join(dst, name)); err != nil {
			return err
		}
		err := filepath.WalkDir(filepath.Join(root, mods), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			switch {
			case d.IsDir():
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			case d.Type().IsRegular():
				return copyFile(p, filepath.Join(dst, rel))
			}
			return nil // symbolic links (build, source) and the rest
		})
		if err != nil {
			return fmt.Errorf("kernel %s: %w", release, err)
		}
	}
	return nil
}

// realDirs reports whether every component of rel under root is a
// directory, not a symbolic link.
func realDirs(root, rel string) bool {
	p := root
	for _, c := range strings.Split(rel, "/") {
		p = filepath.Join(p, c)
		if isDir(p) != nil {
			return false
		}
	}
	return true
}

func isDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", p)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Find picks the kernel in dir (a tree made by Capture or Collect, or any
// root tree): the release whose /boot/vmlinuz-RELEASE is a regular file
// and whose modules tree is a directory; of several, release, or the
// newest by version order when release is "". None is an error that Is
// ErrNoKernel. The chosen release must have a modules.dep (depmod makes
// it when a kernel package is installed).
func Find(dir, release string) (Kernel, error) {
	vms, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil {
		return Kernel{}, err
	}
	found := map[string]Kernel{}
	var releases []string
	for _, vm := range vms {
		fi, err := os.Lstat(vm)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		rel := strings.TrimPrefix(filepath.Base(vm), "vmlinuz-")
		if rel == "" || strings.ContainsAny(rel, "/ \t\n") {
			continue
		}
		for _, d := range ModulesDirs {
			if realDirs(dir, d+"/"+rel) {
				found[rel] = Kernel{Release: rel, Vmlinuz: vm, ModulesDir: filepath.Join(dir, filepath.FromSlash(d))}
				releases = append(releases, rel)
				break
			}
		}
	}
	slices.SortFunc(releases, CompareVersions)
	if len(releases) == 0 {
		if release != "" {
			return Kernel{}, fmt.Errorf("kernel %s: the tree has no /boot/vmlinuz-%s with /lib/modules/%s: %w", release, release, release, ErrNoKernel)
		}
		return Kernel{}, ErrNoKernel
	}
	pick := releases[len(releases)-1]
	if release != "" {
		if _, ok := found[release]; !ok {
			return Kernel{}, fmt.Errorf("kernel %s: not in the tree, which has %s", release, strings.Join(releases, ", "))
		}
		pick = release
	}
	k := found[pick]
	for _, r := range releases {
		if r != pick {
			k.Others = append(k.Others, r)
		}
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, pick, "modules.dep")); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: its modules have no modules.dep (run depmod %s in the image, as installing the kernel package does)", pick, pick)
	}
	return k, nil
}

// CompareVersions orders kernel releases: dot- and dash-separated fields,
// numeric fields as numbers ("6.1.0-10" after "6.1.0-9").
func CompareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		an, aerr := strconv.Atoi(as[i])
		bn, berr := strconv.Atoi(bs[i])
		switch {
		case aerr == nil && berr == nil:
			if an != bn {
				return cmp.Compare(an, bn)
			}
		case as[i] != bs[i]:
			return strings.Compare(as[i], bs[i])
		}
	}
	if c := cmp.Compare(len(as), len(bs)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}
