package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/sitetls"
)

// reloadTLS loads (or makes, with the site CA) the HTTPS certificate
// cfg says, first or again: a new tls-cert, a new url (the site CA's
// certificate is made again for the new names). An error names the
// configuration's line; the server keeps the certificate it has.
func (s *Server) reloadTLS(cfg *config.Config) error {
	if cfg.TLSListen == "" {
		return nil
	}
	src := sitetls.Source{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Data: cfg.Data, Names: cfg.CertNames()}
	var err error
	if c := s.certs.Load(); c != nil {
		err = c.Reload(src)
	} else {
		var c *sitetls.Certs
		if c, err = sitetls.Load(src, nil); err == nil {
			s.certs.Store(c)
		}
	}
	if err != nil {
		key := "tls-listen" // the site CA
		switch {
		case cfg.TLSKey != "" && strings.Contains(err.Error(), cfg.TLSKey):
			key = "tls-key"
		case cfg.TLSCert != "":
			key = "tls-cert"
		}
		return &config.Error{File: cfg.File, Line: cfg.LineOf(key), Err: fmt.Errorf("%s: %w", key, err)}
	}
	if p := s.certs.Load().CAPath(); p != "" {
		s.log.Info("HTTPS certificate signed by the site CA", "names", strings.Join(src.Names, ","), "ca", p)
	}
	return nil
}

// TLS is the HTTPS certificate's holder; nil when tls-listen is not set.
func (s *Server) TLS() *sitetls.Certs { return s.certs.Load() }

// ServeTLS serves HTTPS on ln (tls-listen) until ctx is done, as Serve
// serves HTTP: the same handler, the document, the reports and the
// images; Serve runs the background work.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	c := s.certs.Load()
	if c == nil {
		ln.Close()
		return errors.New("https: no tls-listen in the configuration")
	}
	return s.serveHTTP(ctx, tls.NewListener(ln, c.Config()))
}

// secure is the HTTPS base URL machines reach this server at, for
// those that reach its HTTP at base: tls-url, or base's host with tls-listen's
// port; "" without HTTPS.
func (s *Server) secure(base string) string {
	cfg := s.cfg.Load()
	if cfg.TLSListen == "" {
		return ""
	}
	if cfg.TLSURL != "" {
		return cfg.TLSURL
	}
	_, port, err := net.SplitHostPort(cfg.TLSListen)
	if err != nil {
		return ""
	}
	host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	return "https://" + net.JoinHostPort(sitetls.HostOf(host), port)
}
