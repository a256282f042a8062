package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Trust is what the agent's clients trust for https URLs: the site CA
// of the initramfs, and nothing else (no system roots: an initramfs has
// none, and the server is the site's).
type Trust struct {
	Roots *x509.CertPool // nil: no site CA, every https URL is refused
	File  string         // where the CA came from, for messages
}

// siteTrust is the Trust NewHTTPClient gives its clients (TrustSiteCA).
var siteTrust atomic.Pointer[Trust]

// TrustSiteCA makes every client NewHTTPClient makes from now on trust
// the CA certificates of file (PEM; boot.InitramfsSiteCA in the
// initramfs) for https URLs, and them alone. A missing file is no error:
// https URLs are then refused with a message saying the initramfs has
// no site CA.
func TrustSiteCA(file string) error {
	t, err := LoadTrust(file)
	if err != nil {
		return err
	}
	siteTrust.Store(t)
	return nil
}

// LoadTrust reads a site CA file (see TrustSiteCA).
func LoadTrust(file string) (*Trust, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &Trust{File: file}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("site CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("site CA %s: no PEM certificate in it", file)
	}
	return &Trust{Roots: pool, File: file}, nil
}

// TrustError is a server certificate the client does not trust: signed
// by another CA, for another name, expired, or an https URL with no
// site CA at all. Retrying cannot fix it (IsPermanent).
type TrustError struct {
	Host string
	Why  string
	Err  error
}

func (e *TrustError) Error() string { return "https to " + e.Host + ": " + e.Why }
func (e *TrustError) Unwrap() error { return e.Err }

// tlsConfig is the client side: TLS 1.2 and later (Go's defaults
// otherwise), the site CA alone.
func (t *Trust) tlsConfig() *tls.Config {
	roots := t.Roots
	if roots == nil {
		roots = x509.NewCertPool() // never the system's
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// dialTLS is tr's DialTLSContext: the handshake with tr's
// TLSClientConfig (t's, from NewHTTPClientTrusting), its failures said
// plainly (TrustError). It reads tr's DialContext, TLSClientConfig and
// TLSHandshakeTimeout when it runs, as they are set then.
func (t *Trust) dialTLS(tr *http.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg := t.tlsConfig()
		if tr.TLSClientConfig != nil {
			cfg = tr.TLSClientConfig.Clone()
		}
		cfg.ServerName = host
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if d := tr.TLSHandshakeTimeout; d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, t.explain(host, err)
		}
		return conn, nil
	}
}

// explain turns a failed certificate check into a TrustError naming the
// cause; other handshake errors stay as they are.
func (t *Trust) explain(host string, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua) && t.Roots == nil:
		return &TrustError{Host: host, Err: err, Why: fmt.Sprintf("this initramfs has no site CA (%s) to check the server's certificate with: build it with overboot mkimage initramfs --ca FILE (or --store DATA)", t.File)}
	case errors.As(err, &ua):
		return &TrustError{Host: host, Err: err, Why: fmt.Sprintf("the server's certificate (%s) is not signed by the site CA of this initramfs (%s): rebuild the initramfs with the server's CA (overboot tls ca), or is %s another server?", subject(ua.Cert), t.File, host)}
	case errors.As(err, &he):
		names := append([]string{}, he.Certificate.DNSNames...)
		for _, ip := range he.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		return &TrustError{Host: host, Err: err, Why: fmt.Sprintf("the server's certificate is for %s, not %s: add %s to the server's tls-names (or reach it by a name it has)", strings.Join(names, ", "), host, host)}
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		c := ci.Cert
		return &TrustError{Host: host, Err: err, Why: fmt.Sprintf("the server's certificate is expired or not yet valid (valid %s to %s; this machine's clock says %s): renew it on the server, or set the machine's clock", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))}
	case errors.As(err, &ci):
		return &TrustError{Host: host, Err: err, Why: "the server's certificate is not valid: " + err.Error()}
	}
	return fmt.Errorf("TLS handshake with %s: %w", host, err)
}

func subject(c *x509.Certificate) string {
	if c == nil {
		return "unknown issuer"
	}
	return "issued by " + c.Issuer.String()
}
