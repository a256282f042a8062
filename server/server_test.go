package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
)

// fixture is a server with one profile whose artifacts are small files.
func fixture(t *testing.T, extra string) (*Server, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"kernel": "KERNEL", "initramfs": "INITRAMFS", "root": "ROOT-IMAGE-0123456789"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := "[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\ncmdline = console=ttyS0\n" + extra
	cfg, err := config.Parse("test.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	st, err := blobstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, files
}

func get(t *testing.T, h http.Handler, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = "10.0.2.100"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScript(t *testing.T) {
	s, _ := fixture(t, "[machine 52:54:00:12:34:56]\nhostname = lab-01\n")
	h := s.Handler()
	p := s.profiles["default"]
	r := get(t, h, "/ipxe?mac=52-54-00-12-34-56&uuid=&hostname=&buildarch=x86_64&platform=pcbios")
	if r.StatusCode != 200 {
		t.Fatalf("status %d: %s", r.StatusCode, body(t, r))
	}
	blob := func(a artifact) string { return "http://10.0.2.100/blobs/sha256/" + a.Digest.Hex() }
	want := `#!ipxe
# overboot: lab-01 (52:54:00:12:34:56), profile default
set overboot-try:int32 0
:overboot-retry
iseq ${overboot-try} 3 && goto overboot-failed ||
inc overboot-try
echo overboot: loading kernel and initrd, attempt ${overboot-try} of 3
imgfree overboot-kernel ||
imgfree overboot-initrd0 ||
kernel --name overboot-kernel ` + blob(p.kernel) + ` initrd=overboot-initrd0 console=ttyS0 overboot.lower=` + blob(p.root) + ` overboot.digest=` + p.root.Digest.String() + ` overboot.size=21 || goto overboot-again
initrd --name overboot-initrd0 ` + blob(p.initramfs) + ` || goto overboot-again
echo overboot: booting
boot || goto overboot-again
:overboot-again
sleep 3 ||
goto overboot-retry
:overboot-failed
echo overboot: boot failed after 3 attempts, falling through to the next boot device
exit 1
`
	if d := cmp.Diff(want, body(t, r)); d != "" {
		t.Errorf("script (-want +got):\n%s", d)
	}
	// An unknown machine gets the default profile.
	if r := get(t, h, "/ipxe?mac=52-54-00-00-00-09"); r.StatusCode != 200 || !strings.Contains(body(t, r), "# overboot: 52:54:00:00:00:09, profile default") {
		t.Errorf("default profile not used")
	}
	// A bad query is a script that explains and exits 1.
	r = get(t, h, "/ipxe?mac=zz")
	if b := body(t, r); r.StatusCode != 400 || !strings.Contains(b, "echo overboot: query parameter mac") || !strings.HasSuffix(b, "exit 1\n") {
		t.Errorf("bad query: %d %q", r.StatusCode, b)
	}
	// The bootstrap chains to /ipxe on the Host the client used.
	if b := body(t, get(t, h, "/boot.ipxe")); !strings.Contains(b, "http://10.0.2.100/ipxe?mac=${net0/mac:hexhyp}") {
		t.Errorf("bootstrap:\n%s", b)
	}
}

func TestNoProfile(t *testing.T) {
	cfg, err := config.Parse("empty.conf", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := blobstore.Open(t.TempDir())
	s, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := get(t, s.Handler(), "/ipxe?mac=52-54-00-00-00-01")
	if b := body(t, r); r.StatusCode != 404 || !strings.Contains(b, "no profile for 52:54:00:00:00:01") || !strings.HasSuffix(b, "exit 1\n") {
		t.Errorf("%d %q", r.StatusCode, b)
	}
}

func TestMissingArtifact(t *testing.T) {
	cfg, err := config.Parse("x.conf", strings.NewReader("\n[profile default]\nkernel = /nonexistent/k\ninitramfs = ird\nroot = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := blobstore.Open(t.TempDir())
	_, err = New(cfg, st, nil)
	for _, want := range []string{"x.conf:2: profile default: kernel /nonexistent/k", "x.conf:2: profile default: initramfs ird", "x.conf:2: profile default: root sha256:0123"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func TestBlobs(t *testing.T) {
	s, files := fixture(t, "")
	h := s.Handler()
	root := s.profiles["default"].root
	path := "/blobs/sha256/" + root.Digest.Hex()
	etag := `"` + root.Digest.String() + `"`
	r := get(t, h, path)
	if b := body(t, r); r.StatusCode != 200 || b != files["root"] || r.Header.Get("ETag") != etag || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %d %q %v", r.StatusCode, b, r.Header)
	}
	r = get(t, h, path, "Range", "bytes=5-")
	if b := body(t, r); r.StatusCode != 206 || b != files["root"][5:] {
		t.Errorf("Range: %d %q", r.StatusCode, b)
	}
	r = get(t, h, path, "Range", "bytes=5-", "If-Range", etag)
	if b := body(t, r); r.StatusCode != 206 || b != files["root"][5:] {
		t.Errorf("If-Range match: %d %q", r.StatusCode, b)
	}
	r = get(t, h, path, "Range", "bytes=5-", "If-Range", `"other"`)
	if b := body(t, r); r.StatusCode != 200 || b != files["root"] {
		t.Errorf("If-Range mismatch: %d %q", r.StatusCode, b)
	}
	for _, bad := range []string{
		"/blobs/sha256/" + strings.ToUpper(root.Digest.Hex()),
		"/blobs/sha256/abc",
		"/blobs/sha256/..%2f..%2fetc%2fpasswd",
		"/blobs/sha256/../../etc/passwd",
		"/blobs/sha256/" + strings.Repeat("0", 64),
	} {
		// ServeMux answers unclean paths with a redirect to the clean one.
		if r := get(t, h, bad); r.StatusCode != 400 && r.StatusCode != 404 && r.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("%s: status %d", bad, r.StatusCode)
		} else if b := body(t, r); strings.Contains(b, "root:") {
			t.Errorf("%s: leaked a file", bad)
		}
	}
	req := httptest.NewRequest(http.MethodPost, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestMachinesAPI(t *testing.T) {
	s, _ := fixture(t, "")
	h := s.Handler()
	p := s.profiles["default"]
	get(t, h, "/ipxe?mac=52-54-00-12-34-56")
	for _, a := range []artifact{p.kernel, p.initramfs, p.root} {
		get(t, h, "/blobs/sha256/"+a.Digest.Hex())
	}
	var got []MachineState
	if err := json.NewDecoder(get(t, h, "/api/machines").Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].MAC != "52:54:00:12:34:56" || got[0].Profile != "default" {
		t.Fatalf("%+v", got)
	}
	var stages []string
	for _, st := range got[0].Stages {
		stages = append(stages, st.Name)
	}
	if d := cmp.Diff([]string{"script", "kernel", "initramfs", "root"}, stages); d != "" {
		t.Errorf("stages (-want +got):\n%s", d)
	}
	if b := body(t, get(t, h, "/metrics")); !strings.Contains(b, `overboot_http_requests_total{endpoint="blobs",code="200"} 3`) {
		t.Errorf("metrics:\n%s", b)
	}
}

func TestServeShutdown(t *testing.T) {
	s, files := fixture(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/blobs/sha256/" + s.profiles["default"].kernel.Digest.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); b != files["kernel"] {
		t.Errorf("got %q", b)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
