package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/ra"
)

// serveOptions are serve's flags.
type serveOptions struct {
	config, listen, data, iscsi string
	verbose, checkConfig        bool
	drain                       time.Duration
}

func serveCmd(sio stdio) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "run the server: iPXE scripts, artifacts, the iSCSI target, the admin API",
		Long: `Serves iPXE scripts (/boot.ipxe, /ipxe?mac=...), artifacts by digest
(/blobs/sha256/HEX, with Range and ETag), the admin API (/api/v1), /status
and /metrics.
With a profile that has upper = iscsi or sanboot = DISK, it also runs the
iSCSI target (machines' private disks and copy-on-write layers, CHAP always)
and serves their credentials once each, behind single-use URLs (/doc/TOKEN,
/san/TOKEN). An invalid configuration is refused at start with FILE:LINE and
the reason. testdata/overboot.conf in the source is an annotated example.

Profiles say who may boot them (enroll = open, open-insecure, approve or
login): a MAC address proves nothing, so a profile with private disks needs
approve (an administrator admits each machine to that profile, at the
address its request came from: overboot machine approve MAC [--address IP])
or login (a boot menu asks for a username and a password: overboot user
add). Admission to one profile admits to no other. State (machines, their
admissions, users, disks, secrets, image names, boots) is in DATA/state.db;
one server at a time holds DATA (DATA/lock). The admin API (/api/v1) needs a
token with a scope (overboot token create NAME --data DATA --out FILE makes
the first). /status is a live page of the machines for a token's holder
(sign in there; status = public in [server] opens it to anyone), /metrics
Prometheus metrics.

With proxy-dhcp = IFACE in [server], it answers PXE clients on that
interface with ProxyDHCP (no addresses: the site's DHCP server keeps giving
those): BIOS firmware gets undionly.kpxe and UEFI ipxe.efi over TFTP, iPXE
/boot.ipxe, UEFI HTTP Boot /boot/ipxe.efi. It needs url in [server].

With dhcp = IFACE (and dhcp-range, url) in [server], it is the DHCP server
of an isolated network instead: addresses from the range, leases kept in
the state store across restarts, [machine] ip reservations, and the same
boot answers. One or the other per interface.

With dhcpv6 = IFACE (and dhcpv6-range, url6 or url) in [server], it
answers DHCPv6 (RFC 8415) with addresses from the range and the boot URL
of RFC 5970: iPXE gets /boot.ipxe, UEFI HTTP Boot /boot/ipxe.efi; the agent
takes its own DHCPv6 lease when its URLs are IPv6.

With tls-listen = ADDR in [server], it also serves HTTPS there: the kernel
command line points the agent at an https document (refused over HTTP),
whose report URL (and image, with lower-tls = yes) is https too; what
firmware and iPXE fetch stays on listen, over HTTP. The certificate is
tls-cert/tls-key, or one signed by a site CA the server makes in DATA/tls
(overboot tls ca prints it; mkimage initramfs --ca puts it into the
initramfs, the agent's only trust).

With tftp = ADDR in [server], it also serves the iPXE binaries over TFTP
for firmware PXE (undionly.kpxe, ipxe.efi, snponly.efi: tftp-root, default
/usr/lib/ipxe from Debian's ipxe package, copied into DATA/tftp at start),
read only. A file of tftp-root (or what its symlink points to) is copied only
if every user of this machine could read it: nothing that only the server's
own rights can read is ever served.

Signals: SIGHUP reloads the configuration file (checked first: a bad one
is refused with FILE:LINE and the old one keeps running; listen, data and
iscsi need a restart); SIGTERM or SIGINT stop accepting and let transfers
in flight finish (up to --drain).

--check-config checks the configuration as serve does at start (the same
FILE:LINE errors) and resolves each profile's kernel, initramfs and root
against the data directory, then prints the listen addresses, the services
(iSCSI, TFTP, ProxyDHCP, DHCP, DHCPv6) and each profile with its enroll
policy and what its references resolve to, and exits: 0 when serve would
start, 1 with the errors when it would refuse. It only reads: no listener,
no DATA/lock (it runs beside a running server), nothing written; the state
store is read read-only. Not checked: whether the addresses are free, and
the dm-verity trees of lower-mode lazy or fill images (serve makes them at
start).`,
		Args: exactArgs(0, "no arguments (flags only)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.checkConfig {
				return checkConfig(cmd.Context(), cmd, o, sio.out)
			}
			return runServe(cmd.Context(), cmd, o, sio.out, sio.errOut)
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.config, "config", "", "configuration `file` (default: none; then flags only, and no profiles)")
	fs.StringVar(&o.listen, "listen", "", "listen `address` (overrides the config; default "+config.DefaultListen+")")
	fs.StringVar(&o.data, "data", "", "store `directory` (overrides the config; default "+config.DefaultData+")")
	fs.StringVar(&o.iscsi, "iscsi", "", "iSCSI listen `address` (overrides the config; default "+config.DefaultISCSI+"; used when a profile has upper = iscsi or sanboot)")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log every request")
	fs.DurationVar(&o.drain, "drain", server.DefaultDrain, "on SIGTERM or SIGINT, how long transfers in flight get to finish")
	fs.BoolVar(&o.checkConfig, "check-config", false, "check the configuration (and the profiles' images, read-only), print what would be served, and exit: 0 if serve would start with it")
	c.MarkFlagFilename("config", "conf")
	c.MarkFlagDirname("data")
	return c
}

// loadConfig is the configuration serve runs with: the file's (or the
// defaults without one) with the flags' overrides.
func loadConfig(c *cobra.Command, o serveOptions) (*config.Config, error) {
	cfg := config.Default()
	if o.config != "" {
		var err error
		if cfg, err = config.Load(o.config); err != nil {
			return nil, err
		}
	}
	if o.listen != "" {
		if _, _, err := net.SplitHostPort(o.listen); err != nil {
			return nil, usagef(c, "--listen %q: %v", o.listen, err)
		}
		cfg.Listen = o.listen
	}
	if o.data != "" {
		cfg.Data = o.data
	}
	if o.iscsi != "" {
		if _, _, err := net.SplitHostPort(o.iscsi); err != nil {
			return nil, usagef(c, "--iscsi %q: %v", o.iscsi, err)
		}
		cfg.ISCSI = o.iscsi
	}
	return cfg, nil
}

// runServe is "overboot serve".
func runServe(ctx context.Context, c *cobra.Command, o serveOptions, stdout, stderr io.Writer) error {
	// A SIGHUP while the server opens (copying the profiles' files can
	// take seconds) must not kill it: systemd counts death by SIGHUP as a
	// clean exit and would not restart it. It is held here and served
	// once the reload handler runs.
	early := make(chan os.Signal, 1)
	signal.Notify(early, syscall.SIGHUP)
	defer signal.Stop(early)
	cfg, err := loadConfig(c, o)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
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
	fmt.Fprintf(stdout, "overboot: serving on http://%s (%d profiles, %d machines, data %s)\n", ln.Addr(), len(cfg.Profiles), len(cfg.Machines), cfg.Data)
	srv.Drain = o.drain
	if o.config != "" {
		stop := reloadOnHUP(ctx, o.config, srv, cfgOverrides{listen: o.listen, data: o.data, iscsi: o.iscsi}, stdout, log)
		defer stop()
		// A reload asked for while the server opened: done now.
		select {
		case <-early:
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
		default:
		}
	}
	// Each service in its own goroutine; the first to fail stops them all.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var services []func() error
	ann := server.Announcement{HTTP: ln.Addr(), Version: moduleVersion()}
	if srv.NeedsISCSI() {
		iln, err := net.Listen("tcp", cfg.ISCSI)
		if err != nil {
			ln.Close()
			return fmt.Errorf("iscsi: %w", err)
		}
		fmt.Fprintf(stdout, "overboot: iSCSI on %s\n", iln.Addr())
		ann.ISCSI = iln.Addr()
		services = append(services, func() error { return srv.ServeISCSI(ctx, iln) })
	}
	heartbeat, err := srv.Register(ctx, ann)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(stdout, "overboot: registered as server %s in the state store\n", srv.Name())
	services = append(services, heartbeat)
	if cfg.TFTP != "" {
		pc, err := net.ListenPacket("udp", cfg.TFTP)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tftp: %w", err)
		}
		defer pc.Close()
		fmt.Fprintf(stdout, "overboot: TFTP on %s (files of %s)\n", pc.LocalAddr(), cfg.TFTPRoot)
		services = append(services, func() error { return srv.ServeTFTP(ctx, pc, nil) })
	}
	if cfg.ProxyDHCP != "" {
		ip, err := server.InterfaceAddr(cfg.ProxyDHCP)
		if err != nil {
			return fmt.Errorf("proxy-dhcp: %w", err)
		}
		c67, err := dhcp.ListenInterface(ctx, cfg.ProxyDHCP, 67)
		if err != nil {
			return fmt.Errorf("proxy-dhcp: %w", err)
		}
		defer c67.Close()
		c4011, err := dhcp.ListenInterface(ctx, cfg.ProxyDHCP, 4011)
		if err != nil {
			return fmt.Errorf("proxy-dhcp: %w", err)
		}
		defer c4011.Close()
		fmt.Fprintf(stdout, "overboot: ProxyDHCP on %s (%s), PXE boot server on port 4011\n", cfg.ProxyDHCP, ip)
		services = append(services, func() error { return srv.ServeProxyDHCP(ctx, c67, c4011, ip) })
	}
	if cfg.DHCP != "" {
		pfx, err := server.InterfacePrefix(cfg.DHCP)
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		c67, err := dhcp.ListenInterface(ctx, cfg.DHCP, 67)
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		defer c67.Close()
		fmt.Fprintf(stdout, "overboot: DHCP on %s (%s), addresses %s-%s\n", cfg.DHCP, pfx, cfg.DHCPStart, cfg.DHCPEnd)
		services = append(services, func() error { return srv.ServeDHCP(ctx, c67, pfx.Addr(), pfx) })
	}
	if cfg.QuietRA != "" {
		rc, err := ra.Listen(ctx, cfg.QuietRA)
		if err != nil {
			return err
		}
		defer rc.Close()
		fmt.Fprintf(stdout, "overboot: quiet IPv6 router advertisements on %s (not a router, nothing to configure)\n", cfg.QuietRA)
		services = append(services, func() error { return ra.Serve(ctx, rc, log) })
	}
	if cfg.DHCPv6 != "" {
		ifi, err := net.InterfaceByName(cfg.DHCPv6)
		if err != nil {
			return fmt.Errorf("dhcpv6: %w", err)
		}
		c547, err := dhcp.ListenInterface6(ctx, cfg.DHCPv6, 547)
		if err != nil {
			return fmt.Errorf("dhcpv6: %w", err)
		}
		defer c547.Close()
		fmt.Fprintf(stdout, "overboot: DHCPv6 on %s, addresses %s-%s\n", cfg.DHCPv6, cfg.DHCPv6Start, cfg.DHCPv6End)
		o := server.DHCPv6Options{Interface: cfg.DHCPv6, URL: cfg.URL6, HardwareAddr: ifi.HardwareAddr,
			Start: cfg.DHCPv6Start, End: cfg.DHCPv6End, LeaseTime: cfg.DHCPv6Lease, DNS: cfg.DHCPv6DNS}
		services = append(services, func() error { return srv.ServeDHCPv6(ctx, c547, o) })
	}
	if cfg.TLSListen != "" {
		tln, err := net.Listen("tcp", cfg.TLSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls-listen: %w", err)
		}
		if ca := srv.TLS().CAPath(); ca != "" {
			fmt.Fprintf(stdout, "overboot: HTTPS on %s, certificate for %s signed by the site CA %s (overboot tls ca prints it; mkimage initramfs --ca puts it into the initramfs)\n", tln.Addr(), strings.Join(srv.TLS().Names(), " "), ca)
		} else {
			fmt.Fprintf(stdout, "overboot: HTTPS on %s, certificate %s\n", tln.Addr(), cfg.TLSCert)
		}
		services = append(services, func() error { return srv.ServeTLS(ctx, tln) })
	}
	services = append(services, func() error { return srv.Serve(ctx, ln) })
	errc := make(chan error, len(services))
	for _, run := range services {
		go func() {
			err := run()
			cancel()
			errc <- err
		}()
	}
	var first error
	for range services {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// cfgOverrides are the command-line values that replace the file's on
// every load ("" = the file's).
type cfgOverrides struct{ listen, data, iscsi string }

// reloadOnHUP reloads the configuration file on SIGHUP until ctx ends or
// stop is called: a file that does not parse, or whose profiles do not
// resolve, is refused (logged with FILE:LINE) and the running
// configuration stays.
func reloadOnHUP(ctx context.Context, path string, srv *server.Server, o cfgOverrides, stdout io.Writer, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				cfg, err := config.Load(path)
				if err == nil {
					for _, kv := range []struct {
						flag string
						dst  *string
					}{{o.listen, &cfg.Listen}, {o.data, &cfg.Data}, {o.iscsi, &cfg.ISCSI}} {
						if kv.flag != "" {
							*kv.dst = kv.flag
						}
					}
					err = srv.Reload(ctx, cfg)
				}
				if err != nil {
					log.Error("reload refused: the running configuration stays", "config", path, "err", err)
					fmt.Fprintf(stdout, "overboot: reload of %s refused, the running configuration stays: %v\n", path, err)
					continue
				}
				fmt.Fprintf(stdout, "overboot: reloaded %s (%d profiles, %d machines)\n", path, len(cfg.Profiles), len(cfg.Machines))
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
