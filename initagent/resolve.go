package initagent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds symlink resolution, as the kernel does (ELOOP after 40).
const maxSymlinks = 40

// ResolveIn resolves name (an absolute path as seen from inside root) to a
// path on the host, following symlinks as if root were "/": absolute link
// targets are taken relative to root and ".." never climbs above it. It is
// how the agent checks the image's init before switch_root, when /sbin/init
// is commonly a symlink such as /lib/systemd/systemd.
func ResolveIn(root, name string) (string, error) {
	if !path.IsAbs(name) {
		return "", fmt.Errorf("resolve %s: not an absolute path", name)
	}
	todo := strings.Split(strings.TrimPrefix(path.Clean(name), "/"), "/")
	var done []string // resolved components, relative to root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		host := filepath.Join(append([]string{root}, append(done, c)...)...)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		links++
		if links > maxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: name, Err: errors.New("too many levels of symbolic links")}
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(append([]string{root}, done...)...), nil
}

// checkInit checks that init, inside root, is an executable regular file.
func checkInit(root, init string) error {
	p, err := ResolveIn(root, init)
	if err != nil {
		return fmt.Errorf("init %s not found in the image (%v): check the image, or set overboot.init= (profile key init) to its init", init, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("init %s: %v", init, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("init %s (%s) is not an executable file (mode %v): check the image", init, strings.TrimPrefix(p, root), fi.Mode())
	}
	return nil
}
