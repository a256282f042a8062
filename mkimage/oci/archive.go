package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// layoutName matches the files of an OCI image layout (image-spec
// image-layout.md): oci-layout, index.json, blobs/ALG/ENCODED.
var layoutName = regexp.MustCompile(`^(oci-layout|index\.json|blobs|blobs/[a-z0-9+._-]+|blobs/[a-z0-9+._-]+/[a-zA-Z0-9=_-]+)$`)

// unpackLayout unpacks the oci-archive file (a tar of an image layout)
// into dir. Only the layout's own files are written, all inside dir:
// directories and regular files with layout names; anything else (links,
// devices, other names) is refused. The bytes written are bounded by
// lim's total.
func unpackLayout(file, dir string, lim Limits) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci-archive: read tar: %v: %w", err, ErrBadLayer)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		if name == "" {
			continue
		}
		if strings.Contains(h.Name, "..") || !layoutName.MatchString(name) {
			return fmt.Errorf("oci-archive: entry %q: not a file of an image layout: %w", h.Name, ErrUnsafe)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			total += h.Size
			if total > lim.total() {
				return fmt.Errorf("oci-archive: more than %d bytes (--max-total-size): %w", lim.total(), ErrTooLarge)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("oci-archive: entry %q: %w", h.Name, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("oci-archive: entry %q: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("oci-archive: entry %q: a %q entry, not a file or a directory: %w", h.Name, h.Typeflag, ErrUnsafe)
		}
	}
}
