package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"text/template"

	"github.com/overboot/overboot/boot"
)

// Limits on a profile's template directory: the files travel in the boot
// document (boot.MaxDocumentSize).
const (
	MaxTemplateFiles = 64
	MaxRenderedBytes = 32 << 10
)

// Vars are what a template sees.
type Vars struct {
	Hostname  string
	MAC       string // aa:bb:cc:dd:ee:ff
	IP        string // the address it booted from
	Profile   string
	MachineID string
	User      string // who logged in, at a login profile's menu
	Labels    []string
}

// Templates are a profile's files, parsed: each renders to the same path
// in the root, with the template file's permission bits.
type Templates struct {
	Dir   string
	files []tmpl
}

type tmpl struct {
	path string
	mode fs.FileMode
	t    *template.Template
}

// LoadTemplates reads and parses every regular file under dir (an
// os.Root: nothing outside it is read, symlinks that leave it refused).
// Errors name the file.
func LoadTemplates(dir string) (*Templates, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	ts := &Templates{Dir: dir}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (templates are plain files)", path.Join(dir, p))
		}
		if len(ts.files) == MaxTemplateFiles {
			return fmt.Errorf("%s: more than %d files", dir, MaxTemplateFiles)
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		if len(data) > MaxRenderedBytes {
			return fmt.Errorf("%s: %d bytes, more than %d", path.Join(dir, p), len(data), MaxRenderedBytes)
		}
		t, err := template.New(p).Option("missingkey=error").Parse(string(data))
		if err != nil {
			return fmt.Errorf("template %s: %w", path.Join(dir, p), err)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		dst := "/" + p
		for _, r := range []string{"/proc", "/sys", "/dev", "/run"} {
			if dst == r || strings.HasPrefix(dst, r+"/") {
				return fmt.Errorf("%s: would write under %s", path.Join(dir, p), r)
			}
		}
		if dst == "/etc/hostname" || dst == "/etc/machine-id" {
			return fmt.Errorf("%s: overboot writes %s itself", path.Join(dir, p), dst)
		}
		ts.files = append(ts.files, tmpl{path: dst, mode: fi.Mode().Perm(), t: t})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ts.files, func(a, b tmpl) int { return strings.Compare(a.path, b.path) })
	return ts, nil
}

// Render renders every template for one machine.
func (ts *Templates) Render(v Vars) ([]boot.IdentityFile, error) {
	if ts == nil {
		return nil, nil
	}
	var out []boot.IdentityFile
	total := 0
	for _, f := range ts.files {
		var b bytes.Buffer
		if err := f.t.Execute(&b, v); err != nil {
			return nil, fmt.Errorf("template %s%s: %w", ts.Dir, f.path, err)
		}
		total += b.Len()
		if total > MaxRenderedBytes {
			return nil, errors.New("templates of " + ts.Dir + ": rendered files pass " + fmt.Sprint(MaxRenderedBytes) + " bytes")
		}
		out = append(out, boot.IdentityFile{Path: f.path, Mode: uint32(f.mode), Data: b.String()})
	}
	return out, nil
}
