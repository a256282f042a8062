package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Image is one version of a published name: the blob it points to.
type Image struct {
	Name          string `json:"name"`
	Version       int    `json:"version"`
	Digest        string `json:"digest"` // sha256:HEX
	Size          int64  `json:"size_bytes"`
	Kind          string `json:"kind"` // root, kernel, initramfs, disk
	Compression   string `json:"compression,omitempty"`
	KernelRelease string `json:"kernel_release,omitempty"`
	Note          string `json:"note,omitempty"`          // e.g. "rollback to 3"
	Source        string `json:"source,omitempty"`        // what it was imported from, e.g. docker://registry/repo:tag
	SourceDigest  string `json:"source_digest,omitempty"` // the image manifest's digest (a docker-archive's image ID) of Source, sha256:HEX
	// A root's own kernel (mkimage/imagekernel), sha256:HEX each: the
	// kernel, the initramfs made from its modules, and the modules tree
	// (a zstd tar, for driver segments). KernelRelease is its release.
	OwnKernel    string    `json:"own_kernel,omitempty"`
	OwnInitramfs string    `json:"own_initramfs,omitempty"`
	OwnModules   string    `json:"own_modules,omitempty"`
	Published    time.Time `json:"published,omitzero"`
}

const imageCols = `name, version, digest, size_bytes, kind, compression, kernel_release, note, published_at, source, source_digest, own_kernel, own_initramfs, own_modules`

func scanImage(row scanner) (Image, error) {
	var m Image
	var p int64
	err := row.Scan(&m.Name, &m.Version, &m.Digest, &m.Size, &m.Kind, &m.Compression, &m.KernelRelease, &m.Note, &p, &m.Source, &m.SourceDigest, &m.OwnKernel, &m.OwnInitramfs, &m.OwnModules)
	m.Published = fromMillis(p)
	return m, err
}

// PublishImage makes m the name's next version, atomically: a reader sees
// the old version or the new one. Version and Published are set here.
func (d *DB) PublishImage(ctx context.Context, m Image) (Image, error) {
	err := d.tx(ctx, func(tx handle) error {
		// A name keeps its kind: the profiles that name it read it as
		// one (a root, a kernel, ...), and would fail at every boot.
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT kind FROM images WHERE name = ? ORDER BY version DESC LIMIT 1`, m.Name).Scan(&cur)
		switch {
		case err == nil && cur != "" && m.Kind != "" && cur != m.Kind:
			return fmt.Errorf("image %s is a %s, this is a %s: publish it under another name: %w", m.Name, cur, m.Kind, ErrKindChange)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var v int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM images WHERE name = ?`, m.Name).Scan(&v); err != nil {
			return err
		}
		m.Version = v + 1
		m.Published = fromMillis(d.millis())
		_, err = tx.ExecContext(ctx, `INSERT INTO images (`+imageCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.Name, m.Version, m.Digest, m.Size, m.Kind, m.Compression, m.KernelRelease, m.Note, m.Published.UnixMilli(), m.Source, m.SourceDigest,
			m.OwnKernel, m.OwnInitramfs, m.OwnModules)
		return err
	})
	return m, err
}

// ErrKindChange is wrapped by a publish that would change a name's kind.
var ErrKindChange = errors.New("a name keeps its kind")

// Image returns the name's current version.
func (d *DB) Image(ctx context.Context, name string) (Image, error) {
	m, err := scanImage(d.sql.QueryRowContext(ctx, `SELECT `+imageCols+` FROM images WHERE name = ? ORDER BY version DESC LIMIT 1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Image{}, fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return m, err
}

// ImageVersion returns one version of a name.
func (d *DB) ImageVersion(ctx context.Context, name string, version int) (Image, error) {
	m, err := scanImage(d.sql.QueryRowContext(ctx, `SELECT `+imageCols+` FROM images WHERE name = ? AND version = ?`, name, version))
	if errors.Is(err, sql.ErrNoRows) {
		return Image{}, fmt.Errorf("image %s version %d: %w", name, version, ErrNotFound)
	}
	return m, err
}

func (d *DB) queryImages(ctx context.Context, q string, args ...any) ([]Image, error) {
	return queryAll(ctx, d.sql, scanImage, q, args...)
}

// Images lists every name at its current version.
func (d *DB) Images(ctx context.Context) ([]Image, error) {
	return d.queryImages(ctx, `SELECT `+imageCols+` FROM images i WHERE version = (SELECT MAX(version) FROM images WHERE name = i.name) ORDER BY name`)
}

// ImageHistory lists a name's versions, newest first.
func (d *DB) ImageHistory(ctx context.Context, name string) ([]Image, error) {
	out, err := d.queryImages(ctx, `SELECT `+imageCols+` FROM images WHERE name = ? ORDER BY version DESC`, name)
	if err == nil && len(out) == 0 {
		return nil, fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return out, err
}

// ImageDigests lists every digest any name's history refers to: the
// images, and the kernels, initramfs and modules roots carry.
func (d *DB) ImageDigests(ctx context.Context) (map[string]bool, error) {
	return d.stringSet(ctx, `SELECT digest FROM images
		UNION SELECT own_kernel FROM images WHERE own_kernel <> ''
		UNION SELECT own_initramfs FROM images WHERE own_initramfs <> ''
		UNION SELECT own_modules FROM images WHERE own_modules <> ''`)
}
