package sitetls

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestSiteCAMadeOnceWithPrivateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), Dir)
	s := &Site{Dir: dir}
	ca, _, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, usage %v", ca.IsCA, ca.KeyUsage)
	}
	if _, err := s.ServerCert([]string{"boot.example", "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]os.FileMode{CAKeyFile: 0o600, ServerKeyFile: 0o600, CACertFile: 0o644, ServerCrtFile: 0o644, "": 0o700} {
		if got := mode(t, filepath.Join(dir, f)); got != want {
			t.Errorf("%s: mode %04o, want %04o", f, got, want)
		}
	}
	again, _, err := (&Site{Dir: dir}).CA()
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(ca) {
		t.Error("a second start made another CA")
	}
}

func TestServerCertNamesAndChain(t *testing.T) {
	s := &Site{Dir: t.TempDir()}
	cert, err := s.ServerCert([]string{"boot.example", "192.0.2.1", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if !slices.Equal(leaf.DNSNames, []string{"boot.example"}) || len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("SANs: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	caPEM, err := os.ReadFile(filepath.Join(s.Dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"boot.example", "192.0.2.1", "2001:db8::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Error("the certificate verifies for a name it was not made for")
	}
}

func TestServerCertKeptRenewedAndRemadeForNewNames(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Site{Dir: t.TempDir(), Now: func() time.Time { return now }}
	first, err := s.ServerCert([]string{"a.example"})
	if err != nil {
		t.Fatal(err)
	}
	same, err := s.ServerCert([]string{"a.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !same.Leaf.Equal(first.Leaf) {
		t.Error("a certificate far from its end was made again")
	}
	other, err := s.ServerCert([]string{"b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Leaf.Equal(first.Leaf) || !slices.Equal(other.Leaf.DNSNames, []string{"b.example"}) {
		t.Errorf("new names: got %v", other.Leaf.DNSNames)
	}
	now = other.Leaf.NotAfter.Add(-Renew + time.Hour)
	renewed, err := s.ServerCert([]string{"b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.Equal(other.Leaf) || !renewed.Leaf.NotAfter.After(other.Leaf.NotAfter) {
		t.Errorf("near its end (%v), the certificate was not renewed: %v", other.Leaf.NotAfter, renewed.Leaf.NotAfter)
	}
}

func TestCertsRenewAtHandshake(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c, err := Load(Source{Data: t.TempDir(), Names: []string{"a.example"}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.GetCertificate(nil)
	now = a.Leaf.NotAfter.Add(-time.Hour)
	b, _ := c.GetCertificate(nil)
	if b.Leaf.Equal(a.Leaf) {
		t.Error("GetCertificate handed out a certificate an hour from its end")
	}
}

func TestKeyReadableByOthersRefused(t *testing.T) {
	dir := t.TempDir()
	s := &Site{Dir: filepath.Join(dir, "own")}
	if _, err := s.ServerCert([]string{"a.example"}); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(s.Dir, ServerCrtFile), filepath.Join(s.Dir, ServerKeyFile)
	if _, err := LoadFiles(cert, key); err != nil {
		t.Fatalf("0600 key: %v", err)
	}
	os.Chmod(key, 0o640)
	_, err := LoadFiles(cert, key)
	if err == nil || !strings.Contains(err.Error(), "0640") || !strings.Contains(err.Error(), key) {
		t.Errorf("0640 key: got %v, want a refusal naming the file and its mode", err)
	}
	// The site CA's own key too.
	os.Chmod(filepath.Join(s.Dir, CAKeyFile), 0o644)
	if _, _, err := s.CA(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("CA key 0644: got %v", err)
	}
}

func TestCertAndKeyThatDoNotMatchRefused(t *testing.T) {
	a := &Site{Dir: filepath.Join(t.TempDir(), "a")}
	b := &Site{Dir: filepath.Join(t.TempDir(), "b")}
	for _, s := range []*Site{a, b} {
		if _, err := s.ServerCert([]string{"a.example"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadFiles(filepath.Join(a.Dir, ServerCrtFile), filepath.Join(b.Dir, ServerKeyFile)); err == nil {
		t.Error("a certificate with another's key was accepted")
	}
}

func TestConfigServesTLS12Up(t *testing.T) {
	c, err := Load(Source{Data: t.TempDir(), Names: []string{"127.0.0.1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	caPEM, _ := os.ReadFile(c.CAPath())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("a client trusting the site CA: %v", err)
	}
	conn.Close()
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
}
