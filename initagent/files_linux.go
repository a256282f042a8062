package initagent

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// writeFiles writes the identity's files inside s.Root through an os.Root,
// which refuses any path (or symlink in the image) that leads outside it.
func writeFiles(s WriteFiles) (string, error) {
	root, err := os.OpenRoot(s.Root)
	if err != nil {
		return "", err
	}
	defer root.Close()
	var names []string
	for _, f := range s.Files {
		rel := strings.TrimPrefix(f.Path, "/")
		if dir := path.Dir(rel); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return "", fmt.Errorf("write %s: %w", f.Path, err)
			}
		}
		// An old file (an image's host key, say) goes first: it may be
		// read-only or a symlink.
		if err := root.Remove(rel); err != nil && !os.IsNotExist(err) {
			return "", fmt.Errorf("write %s: %w", f.Path, err)
		}
		out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(f.Mode))
		if err != nil {
			return "", fmt.Errorf("write %s: %w", f.Path, err)
		}
		_, err = out.WriteString(f.Data)
		if err == nil {
			err = out.Chmod(fs.FileMode(f.Mode)) // not the umask's
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("write %s: %w", f.Path, err)
		}
		names = append(names, f.Path)
	}
	return fmt.Sprintf("%d files: %s", len(names), strings.Join(names, " ")), nil
}
