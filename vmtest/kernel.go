package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func baseName(p string) string { return filepath.Base(p) }

// findKernel picks the highest-versioned vmlinuz-RELEASE in dir that has a
// matching modules tree.
func findKernel(dir string) (string, string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if err != nil {
		return "", "", err
	}
	var releases []string
	for _, m := range matches {
		rel := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "modules.dep")); err == nil {
			releases = append(releases, rel)
		}
	}
	if len(releases) == 0 {
		return "", "", fmt.Errorf("no kernel with modules in %s: install linux-image-amd64 (make deps)", dir)
	}
	sort.Slice(releases, func(i, j int) bool { return versionLess(releases[i], releases[j]) })
	rel := releases[len(releases)-1]
	return filepath.Join(dir, "vmlinuz-"+rel), rel, nil
}

// versionLess compares dotted/dashed versions numerically where possible.
func versionLess(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		an, aerr := strconv.Atoi(as[i])
		bn, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			if an != bn {
				return an < bn
			}
			continue
		}
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}
