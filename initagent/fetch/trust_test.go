package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/server/sitetls"
)

// tlsServer is an httptest server over TLS with a certificate of a site
// CA made in a new directory, for names, as of now.
func tlsServer(t *testing.T, names []string, now time.Time) (srv *httptest.Server, caFile string) {
	t.Helper()
	site := &sitetls.Site{Dir: filepath.Join(t.TempDir(), "tls"), Now: func() time.Time { return now }}
	cert, err := site.ServerCert(names)
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "document")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, filepath.Join(site.Dir, sitetls.CACertFile)
}

func trust(t *testing.T, file string) *http.Client {
	t.Helper()
	tr, err := LoadTrust(file)
	if err != nil {
		t.Fatal(err)
	}
	return NewHTTPClientTrusting(tr)
}

// TestTrustSiteCA: a server with a certificate of the site CA for its
// address is trusted; one of another CA, one for another name, an
// expired one and any https without a site CA are refused at once
// (permanent: no retries) with a message naming the cause.
func TestTrustSiteCA(t *testing.T) {
	good, ca := tlsServer(t, []string{"127.0.0.1"}, time.Now())
	b, err := Get(context.Background(), trust(t, ca), good.URL+"/doc/x", "", 1<<10, Policy{})
	if err != nil || string(b) != "document" {
		t.Fatalf("good CA: %q %v", b, err)
	}
	if err := Post(context.Background(), trust(t, ca), good.URL+"/report/x", "application/json", []byte("{}")); err != nil {
		t.Errorf("report with the good CA: %v", err)
	}

	_, otherCA := tlsServer(t, []string{"127.0.0.1"}, time.Now())
	wrongName, wrongNameCA := tlsServer(t, []string{"boot.example"}, time.Now())
	expired, expiredCA := tlsServer(t, []string{"127.0.0.1"}, time.Now().Add(-2*sitetls.ServerLifetime))
	for _, tc := range []struct {
		name, url, ca, want string
	}{
		{"wrong CA", good.URL, otherCA, "is not signed by the site CA of this initramfs (" + otherCA + ")"},
		{"wrong name", wrongName.URL, wrongNameCA, "the server's certificate is for boot.example, not 127.0.0.1: add 127.0.0.1 to the server's tls-names"},
		{"expired", expired.URL, expiredCA, "the server's certificate is expired or not yet valid"},
		{"no site CA", good.URL, filepath.Join(t.TempDir(), "none.pem"), "this initramfs has no site CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			_, err := Get(context.Background(), trust(t, tc.ca), tc.url+"/doc/secret-token", "", 1<<10, Policy{Attempts: 5, Patience: time.Minute,
				Retrying: func(int, time.Duration, error) { tries++ }, Sleep: func(context.Context, time.Duration) error { return nil }})
			var te *TrustError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a TrustError with %q", err, tc.want)
			}
			t.Log(err)
			if !IsPermanent(err) || tries != 0 {
				t.Errorf("retried %d times (permanent %v)", tries, IsPermanent(err))
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("the error quotes the URL: %v", err)
			}
		})
	}
}

// TestTrustNoSystemRoots: with no site CA loaded, NewHTTPClient trusts
// nothing, not even what the system would.
func TestTrustNoSystemRoots(t *testing.T) {
	good, _ := tlsServer(t, []string{"127.0.0.1"}, time.Now())
	_, err := NewHTTPClient().Get(good.URL)
	var te *TrustError
	if !errors.As(err, &te) {
		t.Errorf("got %v, want a TrustError", err)
	}
}

// TestTrustSiteCARangeReader: the lazy root's Range reader, which makes
// its own client (as the keeper does, with no client given), trusts the
// site CA TrustSiteCA loaded, and refuses a server of another CA.
func TestTrustSiteCARangeReader(t *testing.T) {
	image := bytes.Repeat([]byte("overboot"), 8192)
	site := &sitetls.Site{Dir: filepath.Join(t.TempDir(), "tls")}
	cert, err := site.ServerCert([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, image, `"v1"`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	defer siteTrust.Store(siteTrust.Load())
	_, other := tlsServer(t, []string{"127.0.0.1"}, time.Now())

	if err := TrustSiteCA(other); err != nil {
		t.Fatal(err)
	}
	_, err = OpenRange(t.Context(), nil, srv.URL+"/image", RangeOptions{ExpectSize: int64(len(image)), Patience: 5 * time.Second})
	var te *TrustError
	if !errors.As(err, &te) {
		t.Errorf("another CA: %v, want a TrustError", err)
	}

	if err := TrustSiteCA(filepath.Join(site.Dir, sitetls.CACertFile)); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRange(t.Context(), nil, srv.URL+"/image", RangeOptions{ExpectSize: int64(len(image))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, 4096)
	if _, err := r.ReadAt(got, 8192); err != nil || !bytes.Equal(got, image[8192:8192+4096]) {
		t.Errorf("ReadAt over HTTPS: %v", err)
	}
}
