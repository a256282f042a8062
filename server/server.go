package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/console"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/drivers"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/grub"
	"github.com/overboot/overboot/server/hashtrees"
	"github.com/overboot/overboot/server/peers"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/sitetls"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
	"github.com/overboot/overboot/server/telemetry"
)

// BlobPrefix is where artifacts are served by digest.
const BlobPrefix = answer.BlobPrefix

// TreePrefix is where the dm-verity tree of an image read on demand is
// served, by the image's digest.
const TreePrefix = answer.TreePrefix

// Rate limits. A machine's boot asks for /boot.ipxe, /ipxe and /doc or
// /san once each, a few more times on retries or at a menu: a burst of 20
// then one every 2 s is far above that and far below a flood. Logins cost
// an argon2id hash each: 5 tries per user then one per 20 s, 10 per
// address then one per 6 s.
var (
	scriptEvery, scriptBurst       = 2 * time.Second, 20
	loginUserEvery, loginUserBurst = 20 * time.Second, 5
	loginAddrEvery, loginAddrBurst = 6 * time.Second, 10
)

// Server serves one configuration from one data directory.
type Server struct {
	pe    peHashes // Authenticode hashes of the boot loaders and kernels served (attest.go)
	cfg   atomic.Pointer[config.Config]
	sets  atomic.Pointer[profiles.Set]
	log   *slog.Logger
	blobs *blobstore.Store
	trees *hashtrees.Store // dm-verity trees of images read on demand
	fetch *peers.Fetcher   // blobs from peers and the origin (config: peers, origin)
	db    *state.DB
	disks *disks.Manager

	tokens     *enroll.Tokens
	scriptRate *enroll.Limiter  // per client address
	loginAddr  *enroll.Limiter  // per client address
	reportRate *enroll.Limiter  // per report token
	signInRate *enroll.Limiter  // status page sign-ins, per client address
	sessions   *enroll.Sessions // the status page's signed-in browsers
	hashing    chan struct{}    // a slot per password check allowed at once

	nics segments // NIC driver segments for the kernel script (package server/drivers)

	metrics *telemetry.Metrics
	dhcp    atomic.Pointer[dhcp.QueueStats] // the full DHCP server's drops, once it runs
	rec     *telemetry.Recorder
	status  *telemetry.StatusPage
	api     *api.API
	console *console.Console

	// Drain bounds a graceful shutdown (0 = DefaultDrain).
	Drain time.Duration

	dataLock *dataLock // DATA/lock, from Open to Close (nil from New)

	certs atomic.Pointer[sitetls.Certs] // the HTTPS certificate (tls-listen); nil: no HTTPS

	name   atomic.Pointer[string]   // as registered in the store (Register)
	others atomic.Pointer[[]string] // the other servers up, their first URL (readOthers)
	health storeHealth              // whether the state store answers (storeDown)
	given  givebacks                // document tokens being given back (giveBack)

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
}

// Open opens the data directory cfg.Data (the blob store and the state
// store, migrating what older versions kept in files) and returns a server
// for cfg. Close it when done. The server holds DATA/lock until then: a
// second Open of the same directory, in this process or another, fails
// naming the process that holds it.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lock, err := lockDataDir(cfg.Data)
	if err != nil {
		return nil, err
	}
	blobs, err := blobstore.Open(cfg.Data)
	if err != nil {
		lock.release()
		return nil, err
	}
	db, err := state.OpenStore(ctx, state.Where{Data: cfg.Data, Postgres: cfg.Store, PasswordFile: cfg.StorePasswordFile})
	if err != nil {
		lock.release()
		return nil, err
	}
	log.Info("state store open", "store", db.String())
	s, err := New(ctx, cfg, blobs, db, log)
	if err != nil {
		db.Close()
		lock.release()
		return nil, err
	}
	s.dataLock = lock
	return s, nil
}

// New returns a server for cfg over blobs and db: it imports what older
// versions kept in files (image names, machines' secrets and disks),
// finishes disk changes a crash interrupted, and resolves every profile
// (an artifact that does not resolve is an error naming the profile's
// line).
func New(ctx context.Context, cfg *config.Config, blobs *blobstore.Store, db *state.DB, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, blobs: blobs, db: db,
		tokens:     &enroll.Tokens{Store: db},
		scriptRate: enroll.NewLimiter(scriptEvery, scriptBurst),
		loginAddr:  enroll.NewLimiter(loginAddrEvery, loginAddrBurst),
		reportRate: enroll.NewLimiter(time.Second, 60),
		signInRate: enroll.NewLimiter(loginAddrEvery, loginAddrBurst),
		sessions:   &enroll.Sessions{},
		hashing:    make(chan struct{}, runtime.NumCPU()),
		nics:       &drivers.Segments{Blobs: blobs, Log: log},
		fetch:      &peers.Fetcher{Store: blobs, Log: log},
		closing:    make(chan struct{}),
	}
	cleanLeftovers(cfg.Data, log)
	trees, err := hashtrees.Open(filepath.Join(cfg.Data, "hashtrees"))
	if err != nil {
		return nil, err
	}
	s.trees = trees
	if err := importLegacyNames(ctx, blobs, db, log); err != nil {
		return nil, fmt.Errorf("import image names: %w", err)
	}
	tgt := target.New(log)
	tgt.SetLimits(target.Limits{LoginTimeout: cfg.ISCSILoginTimeout, PerAddress: cfg.ISCSIPerAddress, Total: cfg.ISCSIConnections})
	// The name it will register under (Register) is the home of the
	// disks it makes, and tells its disks from those of the other
	// servers sharing the store.
	home, err := ServerName(cfg)
	if err != nil {
		return nil, err
	}
	dm, err := disks.New(db, tgt, filepath.Join(cfg.Data, "disks"), home, log)
	if err != nil {
		return nil, err
	}
	dm.SetBase(func(profile string) string {
		if p := s.cfg.Load().Profiles[profile]; p != nil {
			return p.Sanboot
		}
		return ""
	})
	s.disks = dm
	if err := dm.Recover(ctx); err != nil {
		return nil, fmt.Errorf("recover disks: %w", err)
	}
	if n, err := dm.MigrateLegacy(ctx, filepath.Join(cfg.Data, "machines"), func(mac string) string {
		// Older versions chose by MAC or took the default.
		if m := cfg.Machines[mac]; m != nil && m.Profile != "" {
			return m.Profile
		}
		return config.DefaultProfile
	}); err != nil {
		return nil, fmt.Errorf("import machines from %s: %w", filepath.Join(cfg.Data, "machines"), err)
	} else if n > 0 {
		log.Warn("imported machines kept in files by an older overboot", "machines", n, "dir", filepath.Join(cfg.Data, "machines"))
	}
	if err := s.Reload(ctx, cfg); err != nil {
		return nil, err
	}
	// The iPXE binaries the network services hand firmware (ipxe.efi over
	// UEFI HTTP Boot, /boot/FILE, as well as over TFTP): ready whether or
	// not this server runs TFTP.
	if cfg.TFTP != "" || cfg.ProxyDHCP != "" || cfg.DHCP != "" || cfg.DHCPv6 != "" {
		if _, err := prepareTFTP(cfg.TFTPRoot, filepath.Join(cfg.Data, TFTPDir), secureBootFiles(cfg), log); err != nil {
			log.Warn("no iPXE binaries for firmware boot: /boot/FILE and TFTP answer not found", "tftp-root", cfg.TFTPRoot, "err", err)
		}
	}
	// The disks machines were using before a restart: exported again,
	// so their keepers log in again.
	if n := dm.Reexport(ctx, func(profile string) string {
		if p := cfg.Profiles[profile]; p != nil {
			return p.Sanboot
		}
		return ""
	}); n > 0 {
		log.Info("disks exported again after a restart", "disks", n)
	}
	// Admissions of an older store get the policy their profile has now.
	if n, dropped, err := db.AdoptLegacy(ctx, func(name string) string {
		if p := cfg.Profiles[name]; p != nil {
			return string(p.Policy())
		}
		return ""
	}); err != nil {
		return nil, fmt.Errorf("adopt the admissions of an older store: %w", err)
	} else if n+dropped > 0 {
		log.Warn("machines admitted by an older overboot keep their admission to the profile they last booted, under its policy now; review them (overboot machine ls)", "adopted", n, "dropped_profile_gone", dropped)
	}
	s.metrics = telemetry.NewMetrics(telemetry.Gauges{
		ISCSIConnections: func() int { return tgt.Stats().Connections },
		ISCSISessions:    func() int { return tgt.Stats().LoggedIn },
		DiskBytes: func() int64 {
			ks, err := db.Disks(context.Background())
			if err != nil {
				return 0
			}
			var n int64
			for _, k := range ks {
				n += k.Size
			}
			return n
		},
		DHCPDropped: func(reason string) uint64 {
			st := s.dhcp.Load()
			switch {
			case st == nil:
				return 0
			case reason == telemetry.DHCPQueueFull:
				return st.Full.Load()
			default:
				return st.Stale.Load()
			}
		},
	})
	s.rec = telemetry.NewRecorder(db, s.metrics, log)
	s.status = &telemetry.StatusPage{View: db, Rec: s.rec, Log: log, SignedIn: s.signedIn}
	s.api = api.New(api.Deps{DB: db, Disks: dm, Blobs: blobs, Recorder: s.rec, Profiles: s.sets.Load, Log: log})
	s.console = console.New(console.Deps{DB: db, Actions: s.api, Status: s.status, SignInRate: s.signInRate, RemoteIP: remoteIP, Log: log})
	return s, nil
}

// cleanLeftovers removes what a crash can leave in the data directory:
// backups the API was writing (.backup-*) and what no running process
// owns in tmp/ (a killed mkimage's work files), whatever its age. A
// process working there holds a flock on its work directory (see
// blobstore.Store.TempFile) until it exits; an entry of tmp/ that can be
// locked is nobody's and goes, one that cannot stays (see cleanTmp).
func cleanLeftovers(data string, log *slog.Logger) {
	left, _ := filepath.Glob(filepath.Join(data, ".backup-*"))
	for _, p := range left {
		log.Info("removing an interrupted backup", "path", p)
		os.RemoveAll(p)
	}
	cleanTmp(filepath.Join(data, "tmp"), log)
}

// Reload switches to cfg: its profiles are resolved first, and on any
// error the server keeps the configuration it has. Listen addresses and
// the data directory do not change while running.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) error {
	if old := s.cfg.Load(); old != nil && (old.Listen != cfg.Listen || old.Data != cfg.Data || old.ISCSI != cfg.ISCSI || old.TLSListen != cfg.TLSListen) {
		return fmt.Errorf("%s: listen, tls-listen, iscsi and data cannot change while the server runs: restart it", cfg.File)
	}
	if err := s.reloadTLS(cfg); err != nil {
		return err
	}
	oldSources := s.fetch.Sources()
	s.fetch.SetSources(s.sources(ctx, cfg))
	set, err := profiles.New(ctx, cfg, s.blobs, s.db, s.fetch)
	if err == nil {
		err = s.prepareTrees(ctx, cfg, set)
	}
	if err != nil {
		s.fetch.SetSources(oldSources)
		return err
	}
	for _, name := range sortedKeys(cfg.Profiles) {
		if p := cfg.Profiles[name]; p.Policy() == config.EnrollOpenInsecure {
			s.log.Warn("profile hands private disks to anyone who names a MAC address (enroll = open-insecure)", "profile", name, "config", fmt.Sprintf("%s:%d", cfg.File, p.Line))
		}
	}
	s.cfg.Store(cfg)
	s.sets.Store(set)
	return nil
}

// prepareTrees makes the dm-verity tree of every image a profile reads on
// demand, so the first machine does not wait for it and a bad image (not
// what its digest says, not padded to 4 KiB) is an error of the
// configuration. An image published under the same name later gets its
// tree at its first boot, and so does one that is still to be fetched
// from a peer.
func (s *Server) prepareTrees(ctx context.Context, cfg *config.Config, set *profiles.Set) error {
	var errs []error
	for _, name := range sortedKeys(cfg.Profiles) {
		p := cfg.Profiles[name]
		if !p.LowerMode.OnDemand() {
			continue
		}
		a, err := set.Peek(ctx, p)
		if errors.Is(err, profiles.ErrElsewhere) {
			s.log.Info("an image of the profile is not here yet: it is fetched from a peer when a machine first needs it", "profile", name, "err", err)
			continue
		}
		if err == nil {
			_, err = s.trees.Get(ctx, a.Root.Digest, s.blobs.BlobPath(a.Root.Digest), a.Root.Size)
		}
		if err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Line: p.LineOf("lower-mode"), Err: fmt.Errorf("profile %s: lower-mode %s: %w", name, p.LowerMode, err)})
		}
	}
	return errors.Join(errs...)
}

// Close closes the state store and the disks (after Serve and ServeISCSI
// have returned), and releases the data directory.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.disks.Close()
	err := s.db.Close()
	s.dataLock.release()
	return err
}

// DB is the server's state store.
func (s *Server) DB() *state.DB { return s.db }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.bootstrap)
	mux.HandleFunc("GET /boot/{file}", s.bootFile)
	mux.HandleFunc("GET /ipxe", s.script)
	mux.HandleFunc("GET "+grub.Path, grubRequest(s.script))
	mux.HandleFunc("GET "+grub.ConfigPath, grubRequest(s.grubBootstrap))
	mux.HandleFunc("GET "+grub.Path+"/entry/{token}/{profile}", grubRequest(s.entry))
	mux.HandleFunc("GET "+BlobPrefix+"{hex}", s.blob)
	mux.HandleFunc("GET "+TreePrefix+"{hex}", s.tree)
	mux.HandleFunc("GET /doc/{token}", s.document)
	mux.HandleFunc("POST /attest/{token}", s.attestStart)             // boot.AttestStart
	mux.HandleFunc("POST /attest/evidence/{token}", s.attestEvidence) // boot.AttestEvidence
	mux.HandleFunc("GET /san/{token}", s.sanboot)
	mux.HandleFunc("GET /login/{token}", s.login)
	mux.HandleFunc("POST /login/{token}", s.consoleLogin)
	mux.HandleFunc("GET /console-login/{token}", s.consoleLoginEntry)
	mux.HandleFunc("GET "+grub.Path+"/console-login/{token}", grubRequest(s.consoleLoginEntry))
	mux.HandleFunc("GET /entry/{token}/{profile}", s.entry)
	mux.HandleFunc("POST /report/{token}", s.report)
	mux.HandleFunc("POST /report/{token}/working-set", s.workingSet) // boot.WorkingSetPath
	mux.HandleFunc("PUT "+disks.PeerPath+"{id}", s.receiveDisk)
	mux.HandleFunc("GET /status", s.statusGate(s.status.Page, true))
	mux.HandleFunc("GET /status/rows", s.statusGate(s.status.RowsJSON, false))
	mux.HandleFunc("GET /status/events", s.statusGate(s.status.Events, false))
	mux.HandleFunc("POST /status/signin", s.signIn)
	mux.HandleFunc("POST /status/signout", s.signOut)
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.api.Register(mux)
	s.console.Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		http.NotFound(w, r)
	})
	return s.logged(shimSlashes(mux))
}

// shimSlashes serves /boot//FILE as /boot/FILE: shim, loaded by UEFI
// HTTP Boot from /boot/shimx64.efi, asks its directory + "/grubx64.efi",
// and follows no redirect (the mux would answer one, 307, to the clean
// path).
func shimSlashes(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/boot//"); ok && !strings.Contains(rest, "/") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/boot/" + rest
			r2.URL.RawPath = ""
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

// DefaultDrain is how long a shutdown waits for transfers in flight.
const DefaultDrain = 30 * time.Second

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully:
// new connections are refused and requests in flight, downloads included,
// get up to Drain (default DefaultDrain) to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	jctx, stopJanitor := context.WithCancel(ctx)
	defer stopJanitor()
	go s.janitor(jctx)
	go s.rec.Follow(jctx, s.db, 0)
	go s.sweeper(jctx)
	return s.serveHTTP(ctx, ln)
}

// serveHTTP serves the handler on ln until ctx is done, then drains.
func (s *Server) serveHTTP(ctx context.Context, ln net.Listener) error {
	drain := s.Drain
	if drain == 0 {
		drain = DefaultDrain
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut a slow machine's 1 GB download.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("shutdown: transfers still running were cut", "after", drain)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// janitor records, every few minutes and once at start, what the
// copy-on-write layers take on disk (for max-disk-bytes), and forgets
// what made-up requests leave behind: requests for approval no longer repeated
// (pending-ttl), admissions a request granted itself of machines that
// stopped booting (forget-after), then the machines left with nothing.
func (s *Server) janitor(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		s.prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepEvery is how often a server does what other servers asked of it
// through the store (disks.Manager.Sweep): remove its disks another
// server reset, and copies of disks that moved away.
const SweepEvery = 15 * time.Second

func (s *Server) sweeper(ctx context.Context) {
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.disks.Sweep(ctx)
		if err != nil && !failing && ctx.Err() == nil {
			s.log.Error("disks: what other servers asked of this one", "err", err)
		}
		failing = err != nil
	}
}

func (s *Server) prune(ctx context.Context) {
	s.disks.RefreshSizes(ctx)
	cfg := s.cfg.Load()
	now := time.Now()
	f := state.Forget{RequestsSeenBefore: now.Add(-cmp.Or(cfg.PendingTTL, config.DefaultPendingTTL))}
	if after := cmp.Or(cfg.ForgetAfter, config.DefaultForgetAfter); after != config.Never {
		f.AdmissionsSeenBefore = now.Add(-after)
	}
	p, err := s.db.Prune(ctx, f)
	if err != nil {
		s.log.Error("prune the machines' records", "err", err)
		return
	}
	if n, err := s.db.PruneBuckets(ctx); err != nil {
		s.log.Error("prune the login limits", "err", err)
	} else if n > 0 {
		s.log.Debug("forgot login limits full again", "buckets", n)
	}
	if p != (state.Pruned{}) {
		s.log.Info("forgot what machines that stopped asking left", "requests", p.Requests, "admissions", p.Admissions, "machines", p.Machines, "boots", p.Boots)
	}
}

// ServeISCSI serves the private disks on ln until ctx is done.
func (s *Server) ServeISCSI(ctx context.Context, ln net.Listener) error {
	return s.disks.Target().Serve(ctx, ln)
}

// NeedsISCSI reports whether a profile puts an upper on iSCSI or sanboots.
func (s *Server) NeedsISCSI() bool {
	for _, p := range s.cfg.Load().Profiles {
		if p.PrivateDisk() {
			return true
		}
	}
	return false
}

// base is the URL machines reach us at: url6 for a request that came over
// IPv6 when it is set, url, or the request's Host.
func (s *Server) base(r *http.Request) (string, error) {
	cfg := s.cfg.Load()
	if cfg.URL6 != "" && (cfg.URL == "" || overIPv6(r)) {
		return cfg.URL6, nil
	}
	if cfg.URL != "" {
		return cfg.URL, nil
	}
	host := r.Host
	if r.TLS != nil && cfg.TLSListen != "" {
		// Reached over HTTPS: the HTTP side is at the same host, listen's port.
		if _, port, err := net.SplitHostPort(cfg.Listen); err == nil {
			host = net.JoinHostPort(sitetls.HostOf(host), port)
		}
	}
	if host == "" || len(host) > 255 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != "" {
		return "", fmt.Errorf("request Host %q: set url in [server] of the config", host)
	}
	return "http://" + host, nil
}

// portal is the iSCSI address a machine uses: configured, or the host it
// reached HTTP at with the iSCSI port.
func (s *Server) portal(base string) (string, error) {
	cfg := s.cfg.Load()
	if cfg.Portal != "" {
		return cfg.Portal, nil
	}
	_, port, err := net.SplitHostPort(cfg.ISCSI)
	if err != nil {
		return "", err
	}
	host := strings.TrimPrefix(base, "http://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}

// overIPv6 reports whether r reached us at an IPv6 address.
func overIPv6(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6()
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
