package hashtrees

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/internal/verity"
)

// Tree is one image's hash tree as the boot document names it.
type Tree struct {
	Image     boot.Digest `json:"image"`
	ImageSize int64       `json:"image_size"`
	Hash      boot.Digest `json:"hash"` // sha256 of the tree file
	HashSize  int64       `json:"hash_size"`
	RootHash  string      `json:"root_hash"` // hex
	Salt      string      `json:"salt"`      // hex
}

// Store builds and keeps trees in a directory.
type Store struct {
	dir string

	mu       sync.Mutex
	building map[boot.Digest]*build
}

type build struct {
	done chan struct{}
	tree Tree
	err  error
}

// Open returns the store in dir, creating it (0700).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir, building: map[boot.Digest]*build{}}, nil
}

// Path is the tree file of image (which may not exist yet).
func (s *Store) Path(image boot.Digest) string {
	return filepath.Join(s.dir, image.Hex()+".tree")
}

func (s *Store) recordPath(image boot.Digest) string {
	return filepath.Join(s.dir, image.Hex()+".json")
}

// Get returns image's tree, building it from the image file at path (size
// bytes, checked) the first time. Concurrent calls for one image share
// one build; a failed build is not remembered.
func (s *Store) Get(ctx context.Context, image boot.Digest, path string, size int64) (Tree, error) {
	if t, err := s.load(image); err == nil && t.ImageSize == size {
		return t, nil
	}
	s.mu.Lock()
	b, ok := s.building[image]
	if !ok {
		b = &build{done: make(chan struct{})}
		s.building[image] = b
		go func() {
			b.tree, b.err = s.build(image, path, size)
			s.mu.Lock()
			delete(s.building, image)
			s.mu.Unlock()
			close(b.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-b.done:
		return b.tree, b.err
	case <-ctx.Done():
		return Tree{}, ctx.Err()
	}
}

// Lookup returns image's tree if it has been built.
func (s *Store) Lookup(image boot.Digest) (Tree, bool) {
	t, err := s.load(image)
	return t, err == nil
}

func (s *Store) load(image boot.Digest) (Tree, error) {
	b, err := os.ReadFile(s.recordPath(image))
	if err != nil {
		return Tree{}, err
	}
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil {
		return Tree{}, fmt.Errorf("%s: %w", s.recordPath(image), err)
	}
	if t.Image != image {
		return Tree{}, fmt.Errorf("%s: names image %s", s.recordPath(image), t.Image)
	}
	fi, err := os.Stat(s.Path(image))
	if err != nil || fi.Size() != t.HashSize {
		return Tree{}, errors.New("tree file missing or of the wrong size")
	}
	return t, nil
}

func (s *Store) build(image boot.Digest, path string, size int64) (Tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return Tree{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Tree{}, err
	}
	if fi.Size() != size {
		return Tree{}, fmt.Errorf("image %s: %d bytes on disk, %d expected", image, fi.Size(), size)
	}
	// The tree vouches for these bytes: they must be the image the digest
	// names, not whatever the disk holds now.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return Tree{}, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != image.String() {
		return Tree{}, fmt.Errorf("image %s: the file's content has digest %s: it changed on disk; no tree is made for it", image, got)
	}
	if size%verity.BlockSize != 0 {
		return Tree{}, fmt.Errorf("image %s: %d bytes is not a multiple of %d, which reading on demand needs (mksquashfs pads to 4 KiB unless -nopad)", image, size, verity.BlockSize)
	}
	vp := verity.ParamsFor(image.Hex())
	tmp, err := os.CreateTemp(s.dir, ".tree-*")
	if err != nil {
		return Tree{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h = sha256.New()
	tr, err := verity.Build(f, size, io.MultiWriter(tmp, h), vp)
	if err != nil {
		return Tree{}, fmt.Errorf("image %s: %w", image, err)
	}
	t := Tree{Image: image, ImageSize: size, Hash: boot.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), HashSize: tr.HashSize,
		RootHash: hex.EncodeToString(tr.RootHash), Salt: hex.EncodeToString(vp.Salt)}
	if err := tmp.Chmod(0o644); err != nil {
		return Tree{}, err
	}
	if err := tmp.Sync(); err != nil {
		return Tree{}, err
	}
	if err := os.Rename(tmp.Name(), s.Path(image)); err != nil {
		return Tree{}, err
	}
	// The record goes last: without it the tree is not there.
	rec, _ := json.MarshalIndent(t, "", "  ")
	tmpRec := s.recordPath(image) + ".tmp"
	if err := os.WriteFile(tmpRec, rec, 0o600); err != nil {
		return Tree{}, err
	}
	if err := durable.Sync(tmpRec); err != nil {
		return Tree{}, err
	}
	if err := os.Rename(tmpRec, s.recordPath(image)); err != nil {
		return Tree{}, err
	}
	return t, durable.Sync(s.dir)
}
