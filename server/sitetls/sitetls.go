package sitetls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Dir is the site CA's directory under DATA.
const Dir = "tls"

// The files of Dir.
const (
	CAKeyFile     = "ca.key"
	CACertFile    = "ca.pem"
	ServerKeyFile = "server.key"
	ServerCrtFile = "server.pem"
)

// Lifetimes of what the site CA makes. A server certificate is renewed
// Renew before its end, at the first start or handshake after that.
var (
	CALifetime     = 20 * 365 * 24 * time.Hour
	ServerLifetime = 397 * 24 * time.Hour // the longest browsers accept
	Renew          = 30 * 24 * time.Hour
)

// CAPath is where the site CA certificate of data directory data is.
func CAPath(data string) string { return filepath.Join(data, Dir, CACertFile) }

// Site is a site CA in a directory.
type Site struct {
	Dir string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (s *Site) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// CA loads the site CA, making it first when the directory has none.
func (s *Site) CA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("site CA: %w", err)
	}
	kp, cp := filepath.Join(s.Dir, CAKeyFile), filepath.Join(s.Dir, CACertFile)
	cert, key, err := loadPair(cp, kp)
	if err == nil {
		return cert, key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("site CA: %w", err)
	}
	if _, err1 := os.Stat(cp); err1 == nil {
		// A certificate without its key (or the reverse): never
		// replaced silently, machines trust it.
		return nil, nil, fmt.Errorf("site CA: %w (move %s away to make a new CA, and rebuild the initramfs)", err, s.Dir)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "overboot site CA " + host, Organization: []string{"overboot"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(cp, kp, der, key); err != nil {
		return nil, nil, fmt.Errorf("site CA: %w", err)
	}
	cert, err = x509.ParseCertificate(der)
	return cert, key, err
}

// ServerCert is the server certificate for names (host names and IP
// addresses), signed by the site CA: the one in the directory while it
// is for exactly these names and not within Renew of its end, else a new
// one (written back).
func (s *Site) ServerCert(names []string) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("site CA: no names for the server certificate: set url, tls-url or tls-names in [server]")
	}
	ca, caKey, err := s.CA()
	if err != nil {
		return tls.Certificate{}, err
	}
	kp, cp := filepath.Join(s.Dir, ServerKeyFile), filepath.Join(s.Dir, ServerCrtFile)
	cert, key, err := loadPair(cp, kp)
	if err == nil && s.fits(cert, ca, names) {
		return pair(cert, key, ca), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("site CA: server certificate: %w", err)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"overboot"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(cp, kp, der, key); err != nil {
		return tls.Certificate{}, fmt.Errorf("site CA: server certificate: %w", err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return pair(cert, key, ca), nil
}

// fits reports whether cert is signed by ca, for exactly names, and far
// enough from its end.
func (s *Site) fits(cert, ca *x509.Certificate, names []string) bool {
	if cert.CheckSignatureFrom(ca) != nil || s.now().Add(Renew).After(cert.NotAfter) {
		return false
	}
	have := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(names))
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		want = append(want, n)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

func pair(cert *x509.Certificate, key *ecdsa.PrivateKey, ca *x509.Certificate) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Raw}, PrivateKey: key, Leaf: cert}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// loadPair reads a certificate and its ECDSA key (made by writePair); an
// error wraps fs.ErrNotExist when either is missing. A key others can
// read is refused.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	kb, err := ReadKeyFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ParseCert(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil || blk.Type != "EC PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s: not a PEM EC PRIVATE KEY", keyPath)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

// ParseCert reads the first PEM CERTIFICATE of b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// writePair writes a certificate (0644) and its key (0600), each through
// a temporary file renamed into place, the key first.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadKeyFile reads a private key file, refusing one that anyone but its
// owner can read or write (mode & 077 != 0).
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o: a private key must be readable by its owner only (chmod 600 %s)", path, m, path)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// LoadFiles loads the site's own certificate (PEM, the chain after it)
// and key; the key file must be 0600 (or stricter).
func LoadFiles(certPath, keyPath string) (tls.Certificate, error) {
	kb, err := ReadKeyFile(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	return c, nil
}

// Source says where the server's certificate comes from.
type Source struct {
	// CertFile and KeyFile are the site's own (both or neither).
	CertFile, KeyFile string
	// Data is the data directory whose site CA signs a certificate for
	// Names, when there are no files.
	Data  string
	Names []string
}

// Certs holds the certificate the server presents and renews it.
type Certs struct {
	mu   sync.Mutex
	src  Source
	cert tls.Certificate
	site *Site // nil: the site's own files
}

// Load loads (or makes) the certificate src says.
func Load(src Source, now func() time.Time) (*Certs, error) {
	c := &Certs{}
	if err := c.set(src, now); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload switches to src (a reloaded configuration: new files, a new url);
// on error the current certificate stays.
func (c *Certs) Reload(src Source) error {
	c.mu.Lock()
	now := (func() time.Time)(nil)
	if c.site != nil {
		now = c.site.Now
	}
	c.mu.Unlock()
	return c.set(src, now)
}

func (c *Certs) set(src Source, now func() time.Time) error {
	var cert tls.Certificate
	var site *Site
	var err error
	if src.CertFile != "" {
		cert, err = LoadFiles(src.CertFile, src.KeyFile)
	} else {
		site = &Site{Dir: filepath.Join(src.Data, Dir), Now: now}
		cert, err = site.ServerCert(src.Names)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.src, c.cert, c.site = src, cert, site
	c.mu.Unlock()
	return nil
}

// CAPath is the site CA's certificate, "" with the site's own files.
func (c *Certs) CAPath() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.site == nil {
		return ""
	}
	return filepath.Join(c.site.Dir, CACertFile)
}

// Names are the names and addresses the current certificate is for.
func (c *Certs) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	if l := c.cert.Leaf; l != nil {
		out = append(out, l.DNSNames...)
		for _, ip := range l.IPAddresses {
			out = append(out, ip.String())
		}
	}
	return out
}

// GetCertificate is tls.Config's: the current certificate, renewed first
// when the site CA made it and it nears its end.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.site != nil && c.cert.Leaf != nil && c.site.now().Add(Renew).After(c.cert.Leaf.NotAfter) {
		if cert, err := c.site.ServerCert(c.src.Names); err == nil {
			c.cert = cert
		}
	}
	cert := c.cert
	return &cert, nil
}

// Config is the server's tls.Config: Go's defaults (TLS 1.2 and later,
// its cipher suites), HTTP/1.1 only (what the agent speaks).
func (c *Certs) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate, NextProtos: []string{"http/1.1"}}
}

// HostOf is the host of a URL's host[:port] part, without brackets.
func HostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}
