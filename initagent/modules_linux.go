package initagent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// loadSegments loads the module files the driver segments' lists in dir
// name, one after the other in list order (each list has dependencies
// first). A module already loaded (the base had it) is fine.
func loadSegments(dir, release string) (string, error) {
	if dir == "" {
		return "", nil
	}
	segs, err := ReadSegments(os.DirFS("/"), dir, release)
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
