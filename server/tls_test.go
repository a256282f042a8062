package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/sitetls"
)

// tlsFix is a server listening for real on loopback: HTTP and HTTPS.
type tlsFix struct {
	*fix
	http, https string // base URLs
}

func newTLSFix(t *testing.T, server, conf string) *tlsFix {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixServer(t, "url = http://"+hl.Addr().String()+"\ntls-listen = "+tl.Addr().String()+"\n"+server, conf, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { f.s.Serve(ctx, hl); done <- struct{}{} }()
	go func() { f.s.ServeTLS(ctx, tl); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &tlsFix{fix: f, http: "http://" + hl.Addr().String(), https: "https://" + tl.Addr().String()}
}

// client trusts exactly the CA in file ca (no system roots).
func trusting(t *testing.T, ca string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", ca)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// TestHTTPSBoot: with tls-listen, the script (over HTTP) points the
// kernel at an https document URL while the kernel and initramfs stay
// HTTP; the document is refused over HTTP (its token unspent) and served
// over HTTPS to a client trusting the site CA the server made; its report
// URL is https and takes reports.
func TestHTTPSBoot(t *testing.T) {
	f := newTLSFix(t, "", "")
	ca := filepath.Join(f.dir, "data", "tls", "ca.pem")
	if f.s.TLS().CAPath() != ca {
		t.Errorf("CA at %q, want %q", f.s.TLS().CAPath(), ca)
	}
	for _, k := range []string{"ca.key", "server.key"} {
		if st, err := os.Stat(filepath.Join(f.dir, "data", "tls", k)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", k, st.Mode(), err)
		}
	}
	r, err := http.Get(f.http + "/ipxe?mac=52-54-00-12-34-56")
	if err != nil {
		t.Fatal(err)
	}
	script := body(t, r)
	doc := find(t, `overboot\.doc=(https://[^ ]+/doc/[0-9a-f]{64})`, script)
	if !strings.HasPrefix(doc, f.https+"/doc/") {
		t.Errorf("document URL %s, want it at %s", doc, f.https)
	}
	if k := find(t, `kernel --name overboot-kernel (\S+)`, script); !strings.HasPrefix(k, f.http+"/blobs/") {
		t.Errorf("kernel at %s, want HTTP (what iPXE fetches)", k)
	}
	plain := strings.Replace(doc, f.https, f.http, 1)
	r, err = http.Get(plain)
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, r); r.StatusCode != http.StatusForbidden || !strings.Contains(b, "HTTPS only") {
		t.Errorf("document over HTTP: %d %s", r.StatusCode, b)
	}
	// No system CA signed it: a client without the site CA fails.
	if _, err := http.Get(doc); err == nil || !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("a client without the site CA: %v", err)
	}
	c := trusting(t, ca)
	r, err = c.Get(doc)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("document over HTTPS: %d %s", r.StatusCode, body(t, r))
	}
	d, err := boot.ParseDocument(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Report, f.https+"/report/") {
		t.Errorf("report URL %s, want HTTPS", d.Report)
	}
	if !strings.HasPrefix(d.Lower.HTTP.URL, f.http+"/blobs/") {
		t.Errorf("image at %s: without lower-tls it stays HTTP", d.Lower.HTTP.URL)
	}
	r, err = c.Post(d.Report, "application/json", strings.NewReader(`{"phase":"lower","outcome":"ok","seconds":1,"uptime":5}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNoContent {
		t.Errorf("report over HTTPS: %d", r.StatusCode)
	}
}

// TestLowerTLS: a profile with lower-tls reads its image over HTTPS, and
// the image is served there.
func TestLowerTLS(t *testing.T) {
	f := newTLSFix(t, "", "lower-tls = yes\n")
	c := trusting(t, f.s.TLS().CAPath())
	r, err := http.Get(f.http + "/ipxe?mac=52-54-00-12-34-56")
	if err != nil {
		t.Fatal(err)
	}
	r, err = c.Get(find(t, `overboot\.doc=(\S+)`, body(t, r)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := boot.ParseDocument(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Lower.HTTP.URL, f.https+"/blobs/") {
		t.Fatalf("image at %s, want HTTPS", d.Lower.HTTP.URL)
	}
	r, err = c.Get(d.Lower.HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, r); b != f.files["root"] {
		t.Errorf("image over HTTPS: %q", b)
	}
}

// TestTLSCertNamesFollowURL: a reload with another url makes the site
// CA's certificate again for the new host; the CA stays.
func TestTLSCertNamesFollowURL(t *testing.T) {
	f := newTLSFix(t, "tls-names = boot.example\n", "")
	caBefore, _ := os.ReadFile(f.s.TLS().CAPath())
	if got := strings.Join(f.s.TLS().Names(), " "); got != "boot.example 127.0.0.1" {
		t.Errorf("names %q", got)
	}
	cfg := *f.s.cfg.Load()
	cfg.URL = "http://192.0.2.10"
	if err := f.s.Reload(context.Background(), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.s.TLS().Names(), " "); got != "boot.example 192.0.2.10" {
		t.Errorf("after the reload: names %q", got)
	}
	if caAfter, _ := os.ReadFile(f.s.TLS().CAPath()); string(caAfter) != string(caBefore) {
		t.Error("the reload made another CA")
	}
}

// TestTLSOwnCertificate: the site's own certificate and key; a key
// others can read is refused at start with the file's line.
func TestTLSOwnCertificate(t *testing.T) {
	own := &sitetls.Site{Dir: filepath.Join(t.TempDir(), "own")}
	if _, err := own.ServerCert([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(own.Dir, sitetls.ServerCrtFile), filepath.Join(own.Dir, sitetls.ServerKeyFile)
	f := newTLSFix(t, "tls-cert = "+cert+"\ntls-key = "+key+"\n", "")
	if f.s.TLS().CAPath() != "" {
		t.Errorf("a site CA (%s) with the site's own certificate", f.s.TLS().CAPath())
	}
	if _, err := os.Stat(filepath.Join(f.dir, "data", "tls")); err == nil {
		t.Error("DATA/tls made with the site's own certificate")
	}
	r, err := trusting(t, filepath.Join(own.Dir, sitetls.CACertFile)).Get(f.https + "/boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()

	os.Chmod(key, 0o644)
	text := "[server]\ndata = " + t.TempDir() + "\nurl = http://127.0.0.1:8080\ntls-listen = 127.0.0.1:8443\ntls-cert = " + cert + "\ntls-key = " + key + "\n"
	cfg, err := config.Parse("own.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("a key file others can read was accepted")
	}
	if want := "own.conf:6: tls-key: " + key + ": mode 0644"; !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
