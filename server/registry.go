package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

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
	info := state.ServerInfo{Name: name, Instance: newInstance(), Version: a.Version}
	for _, u := range []string{cfg.URL, cfg.URL6} {
		if u != "" {
			info.URLs = append(info.URLs, u)
		}
	}
	if len(info.URLs) == 0 && a.HTTP != nil {
		info.URLs = []string{"http://" + a.HTTP.String()}
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
		if cfg := s.cfg.Load(); len(cfg.Peers) == 0 {
			// The servers up come and go: fetch from those up now.
			s.fetch.SetSources(s.sources(ctx, cfg))
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
// (its first URL), then [server] origin.
func (s *Server) sources(ctx context.Context, cfg *config.Config) []string {
	if len(cfg.Peers) > 0 {
		return cfg.Sources()
	}
	var urls []string
	me, _ := ServerName(cfg)
	ss, err := s.db.Servers(ctx)
	if err != nil {
		s.log.Warn("cannot list the other servers to fetch blobs from", "err", err)
	}
	now := time.Now()
	for _, o := range ss {
		if o.Name != me && o.Up(now) && len(o.URLs) > 0 {
			urls = append(urls, o.URLs[0])
		}
	}
	if cfg.Origin != "" {
		urls = append(urls, cfg.Origin)
	}
	return urls
}
