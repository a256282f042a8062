package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/identity"
	"github.com/overboot/overboot/server/sitetls"
	"github.com/overboot/overboot/server/state"
)

// checkConfig is "overboot serve --check-config": it parses and checks the
// configuration as serve does at start (the same FILE:LINE errors),
// resolves every profile's kernel, initramfs and root against the data
// directory, and prints what would be served. It only reads: it opens no
// listener, takes no DATA/lock (a running server may hold it), creates
// nothing in the data directory, and reads the state store read-only (so
// a store an older overboot left, which serve migrates at start, may not
// answer). An error is what serve would refuse to start with.
func checkConfig(ctx context.Context, c *cobra.Command, o serveOptions, w io.Writer) error {
	cfg, err := loadConfig(c, o)
	if err != nil {
		return err
	}
	names := &nameReader{data: cfg.Data, where: storeWhere(cfg)}
	defer names.close()
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &config.Error{File: cfg.File, Line: line, Err: fmt.Errorf(format, args...)})
	}

	if cfg.File == "" {
		fmt.Fprintln(w, "config      none: the defaults and the flags, no profiles")
	} else {
		fmt.Fprintf(w, "config      %s\n", cfg.File)
	}
	fmt.Fprintf(w, "listen      http://%s (machines reach it at %s)\n", cfg.Listen, cmp.Or(cfg.URL, "the Host of each request"))
	if cfg.URL6 != "" {
		fmt.Fprintf(w, "url6        %s\n", cfg.URL6)
	}
	if cfg.TLSListen != "" {
		if cfg.TLSCert != "" {
			fmt.Fprintf(w, "https       https://%s, certificate %s\n", cfg.TLSListen, cfg.TLSCert)
			if _, err := sitetls.LoadFiles(cfg.TLSCert, cfg.TLSKey); err != nil {
				fail(cfg.LineOf("tls-cert"), "tls-cert: %v", err)
			}
		} else {
			fmt.Fprintf(w, "https       https://%s, certificate of the site CA %s for %s\n", cfg.TLSListen, sitetls.CAPath(cfg.Data), strings.Join(cfg.CertNames(), " "))
		}
	}
	data := cfg.Data
	switch fi, err := os.Stat(data); {
	case err == nil && fi.IsDir():
		fmt.Fprintf(w, "data        %s\n", data)
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(w, "data        %s (does not exist yet: serve creates it)\n", data)
	case err == nil:
		errs = append(errs, fmt.Errorf("data directory %s: not a directory", data))
	default:
		errs = append(errs, fmt.Errorf("data directory: %w", err))
	}
	var private []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Profiles)) {
		if cfg.Profiles[name].PrivateDisk() {
			private = append(private, name)
		}
	}
	if len(private) > 0 {
		fmt.Fprintf(w, "iscsi       %s (for %s: upper = iscsi or sanboot)\n", cfg.ISCSI, strings.Join(private, ", "))
	} else {
		fmt.Fprintf(w, "iscsi       off (no profile has upper = iscsi or sanboot)\n")
	}
	if cfg.TFTP != "" {
		n, err := os.ReadDir(cfg.TFTPRoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("tftp-root: %w", err))
		}
		fmt.Fprintf(w, "tftp        %s (files of %s: %d entries)\n", cfg.TFTP, cfg.TFTPRoot, len(n))
	} else {
		fmt.Fprintln(w, "tftp        off")
	}
	if cfg.ProxyDHCP != "" {
		ip, err := server.InterfaceAddr(cfg.ProxyDHCP)
		if err != nil {
			errs = append(errs, fmt.Errorf("proxy-dhcp: %w", err))
		}
		fmt.Fprintf(w, "proxy-dhcp  %s (%s), PXE boot server on port 4011\n", cfg.ProxyDHCP, ip)
	} else {
		fmt.Fprintln(w, "proxy-dhcp  off")
	}
	if cfg.DHCP != "" {
		pfx, err := server.InterfacePrefix(cfg.DHCP)
		if err != nil {
			errs = append(errs, fmt.Errorf("dhcp: %w", err))
		}
		fmt.Fprintf(w, "dhcp        %s (%s), addresses %s-%s, %d reservations\n", cfg.DHCP, pfx, cfg.DHCPStart, cfg.DHCPEnd, reservations(cfg))
	} else {
		fmt.Fprintln(w, "dhcp        off")
	}
	if cfg.DHCPv6 != "" {
		if _, err := net.InterfaceByName(cfg.DHCPv6); err != nil {
			errs = append(errs, fmt.Errorf("dhcpv6: %w", err))
		}
		fmt.Fprintf(w, "dhcpv6      %s, addresses %s-%s\n", cfg.DHCPv6, cfg.DHCPv6Start, cfg.DHCPv6End)
	} else {
		fmt.Fprintln(w, "dhcpv6      off")
	}
	fmt.Fprintf(w, "status      %s\n", cmp.Or(cfg.Status, config.StatusToken))
	fmt.Fprintf(w, "rules       %d [machine] sections, %d [subnet], %d [select]\n", len(cfg.Machines)+len(cfg.UUIDs), len(cfg.Subnets), len(cfg.Selects))

	for _, name := range slices.Sorted(maps.Keys(cfg.Profiles)) {
		p := cfg.Profiles[name]
		fmt.Fprintf(w, "profile %s (%s:%d): enroll %s", name, cfg.File, p.Line, p.Policy())
		if p.Upper != "" {
			fmt.Fprintf(w, ", upper %s", p.Upper)
		}
		if p.LowerMode != "" {
			fmt.Fprintf(w, ", lower-mode %s", p.LowerMode)
		}
		if len(p.Menu) > 0 {
			fmt.Fprintf(w, ", menu %s", strings.Join(p.Menu, " "))
		}
		fmt.Fprintln(w)
		if p.Policy() == config.EnrollOpenInsecure {
			fmt.Fprintln(w, "  warning: hands private disks to anyone who names a MAC address (enroll = open-insecure)")
		}
		if p.Sanboot != "" {
			size, err := checkDisk(p.Sanboot)
			if err != nil {
				fail(p.Line, "profile %s: sanboot %w", name, err)
				continue
			}
			fmt.Fprintf(w, "  sanboot    %s: %d bytes\n", p.Sanboot, size)
			continue
		}
		if p.Files != "" {
			if _, err := identity.LoadTemplates(p.Files); err != nil {
				fail(p.Line, "profile %s: files: %w", name, err)
			} else {
				fmt.Fprintf(w, "  files      %s\n", p.Files)
			}
		}
		// serve reports the files it cannot read first, then the rest.
		var later []error
		for _, ref := range []struct{ kind, val string }{{"kernel", p.Kernel}, {"initramfs", p.Initramfs}, {"root", p.Root}} {
			what, size, err := resolveRef(ctx, names, data, ref.kind, ref.val)
			if err != nil {
				err = &config.Error{File: cfg.File, Line: p.Line, Err: fmt.Errorf("profile %s: %s %s: %w", name, ref.kind, ref.val, err)}
				if filepath.IsAbs(ref.val) {
					errs = append(errs, err)
				} else {
					later = append(later, err)
				}
				continue
			}
			if ref.kind == "root" && p.LowerMode.OnDemand() && size%4096 != 0 {
				fail(p.Line, "profile %s: lower-mode %s: root %s: %d bytes, not a multiple of 4096", name, p.LowerMode, ref.val, size)
			}
			fmt.Fprintf(w, "  %-10s %s: %s\n", ref.kind, ref.val, what)
		}
		errs = append(errs, later...)
	}
	fmt.Fprintln(w, "not checked here: whether the addresses are free (that needs listening) and, for lower-mode lazy or fill, the images' dm-verity trees (serve makes them at start)")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintln(w, "ok: serve would start with this configuration")
	return nil
}

// resolveRef says what a profile's reference resolves to now, as
// server/profiles does, without writing: an absolute path is a readable
// file (serve copies it into the store at start), sha256:HEX a blob in
// DATA, a name the current version of a published image of that kind.
func resolveRef(ctx context.Context, names *nameReader, data, kind, ref string) (string, int64, error) {
	switch {
	case filepath.IsAbs(ref):
		f, err := os.Open(ref)
		if err != nil {
			return "", 0, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", 0, err
		}
		if !fi.Mode().IsRegular() {
			return "", 0, errors.New("not a regular file")
		}
		return fmt.Sprintf("file, %d bytes (copied into the store at start)", fi.Size()), fi.Size(), nil
	case strings.HasPrefix(ref, boot.DigestAlgorithm+":"):
		d, err := boot.ParseDigest(ref)
		if err != nil {
			return "", 0, err
		}
		fi, err := os.Stat(filepath.Join(data, "blobs", "sha256", d.Hex()))
		if err != nil {
			return "", 0, fmt.Errorf("blob %s: not found", d)
		}
		return fmt.Sprintf("blob, %d bytes", fi.Size()), fi.Size(), nil
	}
	im, err := names.image(ctx, ref)
	if errors.Is(err, state.ErrNotFound) {
		if _, lerr := os.Stat(filepath.Join(data, "names", ref+".json")); lerr == nil {
			return "in names/" + ref + ".json, an older overboot's (serve imports it at start)", 0, nil
		}
		return "", 0, fmt.Errorf("no image of that name (publish one: overboot image publish %s FILE, or overboot mkimage ... --name %s)", ref, ref)
	}
	if err != nil {
		return "", 0, err
	}
	if im.Kind != kind {
		return "", 0, fmt.Errorf("image %s (version %d) is a %s, not a %s", ref, im.Version, im.Kind, kind)
	}
	return fmt.Sprintf("image version %d, %s, %d bytes", im.Version, im.Digest, im.Size), im.Size, nil
}

// nameReader reads published image names from DATA/state.db, read-only
// (state.Open would create the file and migrate its schema), or from the
// PostgreSQL store where says, without changing its schema. No SQLite
// store yet: no names.
type nameReader struct {
	data  string
	where state.Where
	db    *sql.DB
	pg    *state.DB
	err   error
}

func (n *nameReader) image(ctx context.Context, name string) (state.Image, error) {
	if n.where.Postgres != "" {
		if n.pg == nil && n.err == nil {
			pw := ""
			if n.where.PasswordFile != "" {
				pw, n.err = state.ReadPasswordFile(n.where.PasswordFile)
			}
			if n.err == nil {
				n.pg, n.err = state.OpenPostgresAsIs(ctx, n.where.Postgres, pw)
			}
		}
		if n.err != nil {
			return state.Image{}, n.err
		}
		return n.pg.Image(ctx, name)
	}
	if n.db == nil && n.err == nil {
		path := filepath.Join(n.data, state.FileName)
		if _, err := os.Stat(path); err != nil {
			n.err = fmt.Errorf("%w (no state store at %s)", state.ErrNotFound, path)
			return state.Image{}, n.err
		}
		q := url.Values{}
		q.Set("mode", "ro")
		q.Add("_pragma", "busy_timeout(10000)")
		n.db, n.err = sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	}
	if n.err != nil {
		return state.Image{}, n.err
	}
	var im state.Image
	err := n.db.QueryRowContext(ctx, `SELECT name, version, digest, size_bytes, kind FROM images WHERE name = ? ORDER BY version DESC LIMIT 1`, name).
		Scan(&im.Name, &im.Version, &im.Digest, &im.Size, &im.Kind)
	if errors.Is(err, sql.ErrNoRows) {
		return state.Image{}, fmt.Errorf("image %q: %w", name, state.ErrNotFound)
	}
	if err != nil {
		return state.Image{}, fmt.Errorf("read image names from %s (read-only; a store of an older overboot is migrated by serve at start): %w", filepath.Join(n.data, state.FileName), err)
	}
	return im, nil
}

func (n *nameReader) close() {
	if n.db != nil {
		n.db.Close()
	}
	if n.pg != nil {
		n.pg.Close()
	}
}

// checkDisk checks a sanboot base disk as serve does: a readable regular
// file of whole 512-byte blocks.
func checkDisk(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return 0, fmt.Errorf("%s: not a regular file (a raw disk image)", path)
	case fi.Size() == 0 || fi.Size()%512 != 0:
		return 0, fmt.Errorf("%s: %d bytes, not a whole number of 512-byte blocks", path, fi.Size())
	}
	return fi.Size(), nil
}

func reservations(cfg *config.Config) int {
	n := 0
	for _, m := range cfg.Machines {
		if m.IP.IsValid() {
			n++
		}
	}
	return n
}
