package imagekernel

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// MarkerDir is the directory, under lib/modules/RELEASE of the initramfs
// Build makes, holding one empty file named after the digest of the
// image's modules blob (sha256:HEX).
const MarkerDir = "overboot-image-modules"

// MaxModulesTree bounds what UnpackModules writes (bytes of files): a
// distribution's whole modules tree is a few hundred MB.
const MaxModulesTree = 4 << 30

// Options shape Build.
type Options struct {
	Agent       string       // the static overboot-init, the initramfs's /init (required)
	SiteCA      string       // PEM file of the site CA for the initramfs; "" = none
	Modules     []string     // loaded at boot; nil = initramfs.DefaultModules (those the kernel lacks are left out)
	Compression string       // of the initramfs; "" = zstd
	Log         *slog.Logger // nil: discard
}

// Artifact is a stored blob.
type Artifact struct {
	Digest boot.Digest `json:"digest"`
	Size   int64       `json:"size_bytes"`
}

// Result is what Build stored.
type Result struct {
	Release   string   `json:"release"`
	Kernel    Artifact `json:"kernel"`
	Initramfs Artifact `json:"initramfs"`
	Modules   Artifact `json:"modules"` // zstd tar of lib/modules/RELEASE, paths RELEASE/...
	// Left out: requested modules this kernel has neither as files nor
	// built in (a cloud kernel has no Intel NIC drivers).
	LeftOut []string `json:"left_out,omitempty"`
}

// Build stores k's kernel, its modules tree and an overboot initramfs made
// from those modules in st.
func Build(ctx context.Context, st *blobstore.Store, k Kernel, o Options) (Result, error) {
	if o.Agent == "" {
		return Result{}, errors.New("image kernel: no agent binary to build its initramfs with")
	}
	res := Result{Release: k.Release}
	var err error
	if res.Kernel, err = storeKernel(st, k.Vmlinuz); err != nil {
		return Result{}, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	if res.Modules, err = storeModules(ctx, st, k.ModulesDir, k.Release); err != nil {
		return Result{}, fmt.Errorf("kernel %s: modules: %w", k.Release, err)
	}
	mt, err := initramfs.OpenModuleTree(k.ModulesDir, k.Release)
	if err != nil {
		return Result{}, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	names := o.Modules
	if names == nil {
		names = initramfs.DefaultModules
	}
	kept := []string{}
	for _, n := range names {
		if _, ok := mt.File(n); ok || mt.Builtin(n) {
			kept = append(kept, n)
		} else {
			res.LeftOut = append(res.LeftOut, n)
		}
	}
	marker, err := os.CreateTemp("", "overboot-modules-marker-*")
	if err != nil {
		return Result{}, err
	}
	marker.Close()
	defer os.Remove(marker.Name())
	m, err := initramfs.BuildToStore(ctx, st, initramfs.Options{
		Agent: o.Agent, SiteCA: o.SiteCA, KernelRelease: k.Release, ModulesDir: k.ModulesDir,
		Modules: kept, Compression: o.Compression, Log: o.Log,
		Files: []initramfs.File{{Src: marker.Name(), Dst: MarkerPath(k.Release, res.Modules.Digest), Mode: 0o644}},
	})
	if err != nil {
		return Result{}, fmt.Errorf("kernel %s: initramfs: %w", k.Release, err)
	}
	res.Initramfs = Artifact{Digest: m.Digest, Size: m.Size}
	return res, nil
}

// MarkerPath is the initramfs path naming the modules blob d.
func MarkerPath(release string, d boot.Digest) string {
	return path.Join(boot.InitramfsModulesDir, release, MarkerDir, d.String())
}

// ParseMarker reads an initramfs path made by MarkerPath; ok is false for
// any other path.
func ParseMarker(p string) (release string, d boot.Digest, ok bool) {
	rest, found := strings.CutPrefix(p, boot.InitramfsModulesDir+"/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != MarkerDir || parts[0] == "" {
		return "", "", false
	}
	d, err := boot.ParseDigest(parts[2])
	if err != nil {
		return "", "", false
	}
	return parts[0], d, true
}

// storeKernel checks that file is an x86 bzImage and stores it.
func storeKernel(st *blobstore.Store, file string) (Artifact, error) {
	f, err := os.Open(file)
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Artifact{}, err
	}
	if err := blobstore.Check(f, fi.Size(), blobstore.KindKernel); err != nil {
		return Artifact{}, fmt.Errorf("%s: %w", filepath.Base(file), err)
	}
	d, n, err := st.Ingest(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Digest: d, Size: n}, nil
}

// storeModules stores dir/release as a zstd tar (WriteModules).
func storeModules(ctx context.Context, st *blobstore.Store, dir, release string) (Artifact, error) {
	f, err := st.TempFile("modules-*")
	if err != nil {
		return Artifact{}, err
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	err = WriteModules(ctx, bw, dir, release)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, err
	}
	d, n, err := st.Commit(f.Name())
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Digest: d, Size: n}, nil
}

// WriteModules writes dir/release as a zstd-compressed tar whose paths
// start with release/: directories and regular files in lexical order,
// owned by 0:0, every time zero, so the same tree gives the same bytes.
// Symbolic links (build, source) are left out.
func WriteModules(ctx context.Context, w io.Writer, dir, release string) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	root := filepath.Join(dir, release)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, fi.Size())
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// UnpackModules unpacks a modules blob (WriteModules) into dir, which must
// be empty or absent, and returns its release. Only directories and
// regular files under one release directory are accepted; at most
// MaxModulesTree bytes are written.
func UnpackModules(r io.Reader, dir string) (string, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return "", err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var release string
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("modules blob: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
			return "", fmt.Errorf("modules blob: entry %q: not a clean relative path", h.Name)
		}
		first, _, _ := strings.Cut(name, "/")
		if release == "" {
			release = first
		}
		if first != release {
			return "", fmt.Errorf("modules blob: entry %q: outside %s/", h.Name, release)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return "", err
			}
		case tar.TypeReg:
			total += h.Size
			if total > MaxModulesTree {
				return "", fmt.Errorf("modules blob: more than %d bytes", int64(MaxModulesTree))
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return "", err
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return "", err
			}
			_, err = io.CopyN(f, tr, h.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", fmt.Errorf("modules blob: %s: %w", h.Name, err)
			}
		default:
			return "", fmt.Errorf("modules blob: entry %q: type %q: want directories and regular files", h.Name, h.Typeflag)
		}
	}
	if release == "" {
		return "", errors.New("modules blob: empty")
	}
	return release, nil
}
