package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/grub"
	"github.com/overboot/overboot/server/tftp"
)

// TFTPDir is the directory under DATA that TFTP serves.
const TFTPDir = "tftp"

// prepareTFTP copies the files at the top of src into dst, which then
// holds only regular files: the TFTP server, confined to dst, serves
// nothing else. Files no longer in src are removed from dst.
//
// A file, symlink or not, is copied only if any user of this machine could
// read it anyway: resolved (filepath.EvalSymlinks), it must be a regular
// file with the others-read bit (0o004), and every directory on its
// resolved absolute path, / included, must have the others-execute bit
// (0o001). Debian's /usr/lib/ipxe/ipxe.efi, a symlink to /boot/ipxe.efi,
// passes; a symlink to /etc/shadow, or to a file under /root, does not.
// Anything else is skipped with one warning naming the file and why, and
// never copied (subdirectories are skipped quietly). The check is made on
// the descriptor that is copied from, opened one path component at a time
// without following symlinks (openPublic), so a path changed after the
// check fails rather than copying what it now names.
//
// extra are files served beside them (the Secure Boot path's signed shim
// and GRUB, its grub.cfg): a missing or non-public Src is an error, as a
// profile needs it.
func prepareTFTP(src, dst string, extra []tftpFile, log *slog.Logger) (int, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return 0, fmt.Errorf("tftp-root: %w (install Debian's ipxe package, or set tftp-root)", err)
	}
	keep := map[string]bool{}
	for _, e := range ents {
		p := filepath.Join(src, e.Name())
		in := openForTFTP(p, e.Type()&fs.ModeSymlink != 0, log)
		if in == nil {
			continue
		}
		err := copyFileAtomic(in, filepath.Join(dst, e.Name()))
		in.Close()
		if err != nil {
			return 0, err
		}
		keep[e.Name()] = true
	}
	for _, x := range extra {
		if err := x.put(dst); err != nil {
			return 0, err
		}
		keep[strings.Split(x.Name, "/")[0]] = true
	}
	old, _ := os.ReadDir(dst)
	for _, e := range old {
		if !keep[e.Name()] {
			// Only this function writes here: a directory is ours too
			// (grub/, the Secure Boot path's).
			os.RemoveAll(filepath.Join(dst, e.Name()))
		}
	}
	log.Info("tftp: files ready", "from", src, "files", len(keep))
	return len(keep), durable.Sync(dst)
}

// tftpFile is a file served beside tftp-root's: Src copied (a path
// named by the [server] key Key), or else Data written. Name is relative
// to DATA/tftp, in at most one directory (grub/grub.cfg).
type tftpFile struct {
	Name, Src, Key string
	Data           []byte
}

// put writes x into dst.
func (x tftpFile) put(dst string) error {
	p := filepath.Join(dst, x.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if x.Src == "" {
		return writeFileAtomic(p, x.Data)
	}
	real, err := filepath.EvalSymlinks(x.Src)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	var in *os.File
	if err == nil {
		in, err = openPublic(real)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w (a secure-boot profile needs it: install the package, or set %s in [server] to a file every user may read)", x.Key, x.Src, err, x.Key)
	}
	defer in.Close()
	return copyFileAtomic(in, p)
}

// writeFileAtomic writes data to dst (0644) through a temporary file
// beside it and a rename.
func writeFileAtomic(dst string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return os.Rename(tmp.Name(), dst)
}

// Secure Boot file names in DATA/tftp: shim loads grubx64.efi from the
// directory it was loaded from.
const (
	ShimFile       = "shimx64.efi"
	GRUBFile       = "grubx64.efi"
	MokManagerFile = "mmx64.efi"
)

// secureBootFiles are the files the Secure Boot path serves beside the
// iPXE binaries, when a profile has secure-boot; none otherwise.
func secureBootFiles(cfg *config.Config) []tftpFile {
	if !cfg.SecureBoot() {
		return nil
	}
	files := []tftpFile{
		{Name: ShimFile, Src: cfg.Shim, Key: "shim"},
		{Name: GRUBFile, Src: cfg.GRUBNet, Key: "grub-net"},
	}
	if cfg.MokManager != "" {
		files = append(files, tftpFile{Name: MokManagerFile, Src: cfg.MokManager, Key: "mok-manager"})
	}
	// GRUB loaded over TFTP reads its prefix's grub.cfg (/grub) from the
	// same TFTP server: the bootstrap, pointing at url. Without url the
	// server knows no address to write: GRUB then finds nothing there.
	if text, err := grub.Bootstrap(cfg.URL); cfg.URL != "" && err == nil {
		files = append(files, tftpFile{Name: "grub/grub.cfg", Data: []byte(text)})
	}
	return files
}

// notPublicError is openPublic's refusal by mode bits: why not every
// user may read a file.
type notPublicError struct{ why string }

func (e *notPublicError) Error() string { return e.why }

// openForTFTP opens p, an entry of tftp-root (link: a symlink), if any
// user of this machine may read what it resolves to (see prepareTFTP).
// Otherwise it logs why at WARN (a directory quietly) and returns nil.
func openForTFTP(p string, link bool, log *slog.Logger) *os.File {
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		log.Warn(fmt.Sprintf("tftp-root: skipping %s: %v", p, err))
		return nil
	}
	f, err := openPublic(real)
	var np *notPublicError
	switch {
	case err == nil:
		return f
	case errors.As(err, &np) && link:
		log.Warn(fmt.Sprintf("tftp-root: skipping %s: it points to %s, which not every user may read", p, real), "why", np.why)
	case errors.As(err, &np):
		log.Warn(fmt.Sprintf("tftp-root: skipping %s: not every user may read it", p), "why", np.why)
	default:
		log.Warn(fmt.Sprintf("tftp-root: skipping %s: %v", p, err))
	}
	return nil
}

// copyFileAtomic copies in to dst (0644) through a temporary file beside
// it and a rename.
func copyFileAtomic(in *os.File, dst string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", in.Name(), err)
	}
	return os.Rename(tmp.Name(), dst)
}

// ServeTFTP serves the iPXE binaries (tftp-root, copied into DATA/tftp)
// over TFTP on pc until ctx is done. dial opens each transfer's socket
// (nil: the default; see tftp.Server.DialTransfer).
func (s *Server) ServeTFTP(ctx context.Context, pc net.PacketConn, dial func(laddr, raddr *net.UDPAddr) (*net.UDPConn, error)) error {
	cfg := s.cfg.Load()
	dir := filepath.Join(cfg.Data, TFTPDir)
	if _, err := prepareTFTP(cfg.TFTPRoot, dir, secureBootFiles(cfg), s.log); err != nil {
		return err
	}
	srv := &tftp.Server{Root: dir, Log: s.log, DialTransfer: dial, Files: s.tftpFiles}
	return srv.Serve(ctx, pc)
}
