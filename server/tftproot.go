package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/server/tftp"
)

// TFTPDir is the directory under DATA that TFTP serves.
const TFTPDir = "tftp"

// prepareTFTP copies the regular files at the top of src (following
// symlinks: the administrator chose src, and Debian's
// /usr/lib/ipxe/ipxe.efi is a symlink to /boot/ipxe.efi) into dst, which
// then holds only regular files: the TFTP server, confined to dst, serves
// nothing else. Files no longer in src are removed from dst.
func prepareTFTP(src, dst string, log *slog.Logger) (int, error) {
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
		fi, err := os.Stat(p) // through symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if err := copyFileAtomic(p, filepath.Join(dst, e.Name())); err != nil {
			return 0, err
		}
		keep[e.Name()] = true
	}
	old, _ := os.ReadDir(dst)
	for _, e := range old {
		if !keep[e.Name()] {
			os.Remove(filepath.Join(dst, e.Name()))
		}
	}
	log.Info("tftp: files ready", "from", src, "files", len(keep))
	return len(keep), durable.Sync(dst)
}

func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
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
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.Rename(tmp.Name(), dst)
}

// ServeTFTP serves the iPXE binaries (tftp-root, copied into DATA/tftp)
// over TFTP on pc until ctx is done. dial opens each transfer's socket
// (nil: the default; see tftp.Server.DialTransfer).
func (s *Server) ServeTFTP(ctx context.Context, pc net.PacketConn, dial func(laddr, raddr *net.UDPAddr) (*net.UDPConn, error)) error {
	cfg := s.cfg.Load()
	dir := filepath.Join(cfg.Data, TFTPDir)
	if _, err := prepareTFTP(cfg.TFTPRoot, dir, s.log); err != nil {
		return err
	}
	srv := &tftp.Server{Root: dir, Log: s.log, DialTransfer: dial}
	return srv.Serve(ctx, pc)
}
