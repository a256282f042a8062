package initagent

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/overboot/overboot/boot"
)

// ModuleList is one driver segment's list (boot.InitramfsExtraModulesDir):
// the module files to load, dependencies first.
type ModuleList struct {
	Name  string   // the list's file name, e.g. "8139cp+8139too"
	Files []string // paths relative to /, as the list has them
}

// ReadModuleLists reads every list in dir of fsys (a root file system, paths
// without the leading slash), in name order. A missing dir means no
// segment. A list for another kernel release than the running one is an
// error naming both: the segment's modules could not load.
func ReadModuleLists(fsys fs.FS, dir, release string) ([]ModuleList, error) {
	dir = strings.TrimPrefix(dir, "/")
	ents, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ModuleList
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		f, err := fsys.Open(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files, err := boot.ParseModuleFiles(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("driver segment list /%s: %w", path.Join(dir, e.Name()), err)
		}
		for _, file := range files {
			if r := strings.Split(file, "/")[2]; r != release {
				return nil, fmt.Errorf("driver segment %s is for kernel %s, the running kernel is %s: the server built it for another kernel than the one it booted (check the profile's kernel and initramfs)", e.Name(), r, release)
			}
		}
		out = append(out, ModuleList{Name: e.Name(), Files: files})
	}
	return out, nil
}
