package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
)

// runServe is "overboot serve".
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath = fs.String("config", "", "configuration `file` (default: none; then flags only, and no profiles)")
		listen  = fs.String("listen", "", "listen `address` (overrides the config; default "+config.DefaultListen+")")
		data    = fs.String("data", "", "store `directory` (overrides the config; default "+config.DefaultData+")")
		iscsiAt = fs.String("iscsi", "", "iSCSI listen `address` (overrides the config; default "+config.DefaultISCSI+"; used when a profile has upper = iscsi or sanboot)")
		verbose = fs.Bool("v", false, "log every request")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: overboot serve [-config FILE] [flags]

Serves iPXE scripts (/boot.ipxe, /ipxe?mac=...), artifacts by digest
(/blobs/sha256/HEX, with Range and ETag), /api/machines, /status and /metrics.
With a profile that has upper = iscsi or sanboot = DISK, it also runs the
iSCSI target (machines' private disks and copy-on-write layers, CHAP always)
and serves their credentials once each, behind single-use URLs (/doc/TOKEN,
/san/TOKEN). An invalid configuration is refused at start with FILE:LINE and
the reason. testdata/overboot.conf in the source is an annotated example.

flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{"serve: " + err.Error()}
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("serve: unexpected argument %q", pos[0])}
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	if *listen != "" {
		if _, _, err := net.SplitHostPort(*listen); err != nil {
			return usageError{fmt.Sprintf("serve: -listen %q: %v", *listen, err)}
		}
		cfg.Listen = *listen
	}
	if *data != "" {
		cfg.Data = *data
	}
	if *iscsiAt != "" {
		if _, _, err := net.SplitHostPort(*iscsiAt); err != nil {
			return usageError{fmt.Sprintf("serve: -iscsi %q: %v", *iscsiAt, err)}
		}
		cfg.ISCSI = *iscsiAt
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "overboot: serving on http://%s (%d profiles, %d machines, store %s)\n", ln.Addr(), len(cfg.Profiles), len(cfg.Machines), cfg.Data)
	if srv.NeedsISCSI() {
		iln, err := net.Listen("tcp", cfg.ISCSI)
		if err != nil {
			ln.Close()
			return fmt.Errorf("iscsi: %w", err)
		}
		fmt.Fprintf(stdout, "overboot: iSCSI on %s\n", iln.Addr())
		errc := make(chan error, 1)
		go func() { errc <- srv.ServeISCSI(ctx, iln) }()
		err = srv.Serve(ctx, ln)
		if ierr := <-errc; err == nil {
			err = ierr
		}
		return err
	}
	return srv.Serve(ctx, ln)
}
