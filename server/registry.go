package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// Announcement is what a server tells the others sharing its store of
// itself: where it listens (the addresses it bound, for when the config
// names no url) and its version.
type Announcement struct {
	HTTP    net.Addr // the HTTP listener's address
	ISCSI   net.Addr // the iSCSI listener's; nil when it serves no disks
	Version string
}

// ServerName is the name this server registers under: [server] name, or
// the host's name.
func ServerName(cfg *config.Config) (string, error) {
	if cfg.Name != "" {
		return cfg.Name, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("server name: %w: set name in [server]", err)
	}
	if config.ValidServerName(h) {
		return h, nil
	}
	// A long FQDN: its first label names the host.
	if first, _, _ := strings.Cut(h, "."); config.ValidServerName(first) {
		return first, nil
	}
	return "", fmt.Errorf("server name: the host's name %q cannot name a server: set name in [server]", h)
}

// Register records the server in the store under its name (ServerName)
// and returns the loop that keeps its heartbeat until ctx ends and then
// records it stopped. It fails when another process of that name is
// running: two processes under one name would be one server to the
// machines whose disks live on it.
func (s *Server) Register(ctx context.Context, a Announcement) (heartbeat func() error, err error) {
	cfg := s.cfg.Load()
	name, err := ServerName(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := dataDirID(cfg.Data)
	if err != nil {
		return nil, err
	}
	info := state.ServerInfo{Name: name, Instance: dir + "." + newInstance(), Version: a.Version}
	for _, u := range []string{cfg.URL, cfg.URL6} {
		if u != "" {
			info.URLs = append(info.URLs, u)
		}
	}
	if len(info.URLs) == 0 && a.HTTP != nil {
		// The address it listens on, when that is one address: others
		// cannot reach a wildcard (0.0.0.0, ::).
		if ap, err := netip.ParseAddrPort(a.HTTP.String()); err == nil && !ap.Addr().IsUnspecified() {
			info.URLs = []string{"http://" + a.HTTP.String()}
		} else {
			s.log.Warn("this server listens on every address and has no url: the other servers cannot fetch blobs from it or send machines to it; set url in [server]", "server", name, "listen", a.HTTP.String())
		}
	}
	if a.ISCSI != nil {
		info.Portal = cfg.Portal
		if info.Portal == "" && len(info.URLs) > 0 {
			if info.Portal, err = s.portal(info.URLs[0]); err != nil {
				return nil, fmt.Errorf("server %s: its iSCSI portal: %w", name, err)
			}
		}
	}
	if err := s.db.Register(ctx, info); err != nil {
		return nil, err
	}
	s.readOthers(ctx, cfg)
	s.name.Store(&name)
	s.log.Info("registered in the store", "server", name, "urls", info.URLs, "iscsi_portal", info.Portal)
	return func() error { s.beat(ctx, info); return nil }, nil
}

// Name is the name the server registered under ("" before Register).
func (s *Server) Name() string {
	if p := s.name.Load(); p != nil {
		return *p
	}
	return ""
}

// beat keeps info's heartbeat every state.Heartbeat until ctx ends, then
// records the server stopped. A failing store is logged once per outage;
// a name another process took over is logged at every beat, and the
// server tries to take it back once that process stops beating.
func (s *Server) beat(ctx context.Context, info state.ServerInfo) {
	t := time.NewTicker(state.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			// The server is stopping: a store call of its own, bounded.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.db.Unregister(sctx, info.Name, info.Instance); err != nil {
				s.log.Warn("record this server stopped in the store", "server", info.Name, "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
		// The servers up come and go: fetch from (and send machines to)
		// those up now.
		if cfg := s.cfg.Load(); len(cfg.Peers) == 0 {
			s.fetch.SetSources(s.sources(ctx, cfg))
		} else if len(cfg.Mirrors) == 0 {
			s.readOthers(ctx, cfg)
		}
		err := s.db.Beat(ctx, info.Name, info.Instance)
		if errors.Is(err, state.ErrServerTaken) {
			s.log.Error("another process took this server's name in the store: give one of them another [server] name", "server", info.Name)
			err = s.db.Register(ctx, info)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			s.log.Warn("heartbeat to the store failed; other servers will see this one down", "server", info.Name, "err", err)
		case err == nil && failing:
			failing = false
			s.log.Info("heartbeat to the store works again", "server", info.Name)
		}
	}
}

func newInstance() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sources are where this server fetches a blob it lacks: [server] peers
// when set, else every other server registered in the store and up
// (its first URL), then [server] origin. It reads the registry again, and
// keeps what it read for mirrors.
func (s *Server) sources(ctx context.Context, cfg *config.Config) []string {
	if len(cfg.Peers) > 0 {
		return cfg.Sources()
	}
	urls := slices.Clone(s.readOthers(ctx, cfg))
	if cfg.Origin != "" {
		urls = append(urls, cfg.Origin)
	}
	return urls
}

// readOthers reads the first URL of every other server registered in the
// store and up, and keeps them for mirrors (the last list read stays when
// the store cannot be read).
func (s *Server) readOthers(ctx context.Context, cfg *config.Config) []string {
	me, _ := ServerName(cfg)
	ss, err := s.db.Servers(ctx)
	if err != nil {
		// The list as last read, whole: mirrors() leaves out what
		// machines cannot reach, which a server fetching blobs can.
		s.log.Warn("cannot list the other servers sharing the store", "err", err)
		if p := s.others.Load(); p != nil {
			return *p
		}
		return nil
	}
	var urls []string
	now := time.Now()
	for _, o := range ss {
		if o.Name != me && o.Up(now) && len(o.URLs) > 0 && !slices.Contains(urls, o.URLs[0]) && o.URLs[0] != cfg.URL {
			urls = append(urls, o.URLs[0])
		}
	}
	s.others.Store(&urls)
	return urls
}

// mirrors are the other places a machine is told to read what is named by
// digest from, after this server: [server] mirrors, or else the other
// servers registered and up when last read (at most boot.MaxMirrors).
func (s *Server) mirrors(cfg *config.Config) []string {
	if len(cfg.Mirrors) > 0 {
		return cfg.Mirrors
	}
	p := s.others.Load()
	if p == nil {
		return nil
	}
	var urls []string
	for _, u := range *p {
		if machineReachable(u) {
			urls = append(urls, u)
		}
	}
	if len(urls) > boot.MaxMirrors {
		urls = urls[:boot.MaxMirrors]
	}
	return urls
}

// machineReachable reports whether a server's registered URL can be given
// to machines: not a loopback or unspecified address (a server with no
// url registers the address it listens on, which may be either).
func machineReachable(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]"))
	if err != nil {
		return u.Hostname() != "localhost"
	}
	return !ip.IsLoopback() && !ip.IsUnspecified()
}

// DataIDFile, in the data directory, holds a random ID of the directory,
// made at the first registration: the store knows the server's runs on
// it as ID.RUN (state.Register lets a new run take over its name at once).
const DataIDFile = "server-id"

// dataDirID reads (or makes, 0600) the data directory's ID.
func dataDirID(data string) (string, error) {
	p := filepath.Join(data, DataIDFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" && !strings.Contains(id, ".") {
			return id, nil
		}
		return "", fmt.Errorf("%s: not a data directory ID: remove it, a new one is made", p)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := newInstance()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := durable.Sync(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	return id, durable.Sync(data)
}
