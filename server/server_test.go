package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
)

// fix is a server on a fresh data directory with small artifact files.
type fix struct {
	t     *testing.T
	s     *Server
	h     http.Handler
	dir   string
	files map[string]string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newFix makes a server whose default profile boots the files kernel,
// initramfs and root; conf is appended to that profile's section (and may
// add sections), with $DIR standing for the test's directory.
func newFix(t *testing.T, conf string) *fix {
	t.Helper()
	return newFixPre(t, conf, nil)
}

// newFixPre is newFix with pre run on the data directory before the
// server opens it.
func newFixPre(t *testing.T, conf string, pre func(data string)) *fix {
	t.Helper()
	return newFixServer(t, "", conf, pre)
}

// newFixServer is newFixPre with server's lines added to [server].
func newFixServer(t *testing.T, server, conf string, pre func(data string)) *fix {
	t.Helper()
	dir := t.TempDir()
	if pre != nil {
		pre(filepath.Join(dir, "data"))
	}
	files := map[string]string{"kernel": "KERNEL", "initramfs": "INITRAMFS", "root": "ROOT-IMAGE-0123456789"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := "[server]\ndata = " + dir + "/data\niscsi-portal = 10.0.2.100:3260\n" + server + "[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\ncmdline = console=ttyS0\n" + strings.ReplaceAll(conf, "$DIR", dir)
	f := openFix(t, dir, text)
	f.files = files
	return f
}

// openFix opens a server for the configuration text, its directory dir.
func openFix(t *testing.T, dir, text string) *fix {
	t.Helper()
	cfg, err := config.Parse("test.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fix{t: t, s: s, h: s.Handler(), dir: dir, logs: logs}
}

// do sends a request from remote (default 192.0.2.10) with Host 10.0.2.100.
func (f *fix) do(method, target, remote string, body io.Reader, hdr ...string) *http.Response {
	f.t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Host = "10.0.2.100"
	if remote == "" {
		remote = "192.0.2.10"
	}
	req.RemoteAddr = remote + ":40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Result()
}

func (f *fix) get(target string, hdr ...string) *http.Response {
	f.t.Helper()
	return f.do(http.MethodGet, target, "", nil, hdr...)
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fix) arts() profiles.Artifacts {
	f.t.Helper()
	set := f.s.sets.Load()
	a, err := set.Resolve(context.Background(), set.Profile("default"))
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

var tokenRE = regexp.MustCompile(`/(doc|san|report|login|entry)/[0-9a-f]{64}`)

func TestScript(t *testing.T) {
	f := newFix(t, "[machine 52:54:00:12:34:56]\nhostname = lab-01\n")
	a := f.arts()
	r := f.get("/ipxe?mac=52-54-00-12-34-56&uuid=&hostname=&buildarch=x86_64&platform=pcbios")
	if r.StatusCode != 200 {
		t.Fatalf("status %d: %s", r.StatusCode, body(t, r))
	}
	blob := "http://10.0.2.100/blobs/sha256/"
	want := `#!ipxe
# overboot: lab-01 (52:54:00:12:34:56), profile default
set overboot-try:int32 0
:overboot-retry
iseq ${overboot-try} 3 && goto overboot-failed ||
inc overboot-try
echo overboot: loading kernel and initrd, attempt ${overboot-try} of 3
imgfree overboot-kernel ||
imgfree overboot-initrd0 ||
kernel --name overboot-kernel ` + blob + a.Kernel.Digest.Hex() + ` initrd=overboot-initrd0 console=ttyS0 overboot.doc=http://10.0.2.100/doc/TOKEN || goto overboot-again
initrd --name overboot-initrd0 ` + blob + a.Initramfs.Digest.Hex() + ` || goto overboot-again
echo overboot: booting
boot || goto overboot-again
:overboot-again
sleep 3 ||
goto overboot-retry
:overboot-failed
echo overboot: boot failed after 3 attempts, falling through to the next boot device
exit 1
`
	got := tokenRE.ReplaceAllString(body(t, r), "/$1/TOKEN")
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("script (-want +got):\n%s", d)
	}
	// An unknown machine gets the default profile and is recorded.
	if r := f.get("/ipxe?mac=52-54-00-00-00-09"); r.StatusCode != 200 || !strings.Contains(body(t, r), "# overboot: 52:54:00:00:00:09, profile default") {
		t.Errorf("default profile not used")
	}
	if m, err := f.s.db.Machine(context.Background(), "52:54:00:00:00:09"); err != nil || m.Profile != "default" || m.Address != "192.0.2.10" {
		t.Errorf("machine record: %+v %v", m, err)
	}
	if a, err := f.s.db.Admission(context.Background(), "52:54:00:00:00:09", "default"); err != nil || a.Policy != "open" {
		t.Errorf("admission: %+v %v", a, err)
	}
	// A bad query is a script that explains and exits 1.
	r = f.get("/ipxe?mac=zz")
	if b := body(t, r); r.StatusCode != 400 || !strings.Contains(b, "echo overboot: query parameter mac") || !strings.HasSuffix(b, "exit 1\n") {
		t.Errorf("bad query: %d %q", r.StatusCode, b)
	}
	// The bootstrap chains to /ipxe on the Host the client used.
	if b := body(t, f.get("/boot.ipxe")); !strings.Contains(b, "http://10.0.2.100/ipxe?mac=${net0/mac:hexhyp}") {
		t.Errorf("bootstrap:\n%s", b)
	}
}

func TestNoProfile(t *testing.T) {
	cfg, err := config.Parse("empty.conf", strings.NewReader("[server]\ndata = "+t.TempDir()+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := &fix{t: t, s: s, h: s.Handler()}
	r := f.get("/ipxe?mac=52-54-00-00-00-01")
	if b := body(t, r); r.StatusCode != 404 || !strings.Contains(b, "no profile for 52:54:00:00:00:01") || !strings.HasSuffix(b, "exit 1\n") {
		t.Errorf("%d %q", r.StatusCode, b)
	}
}

func TestMissingArtifact(t *testing.T) {
	cfg, err := config.Parse("x.conf", strings.NewReader("[server]\ndata = "+t.TempDir()+"\n[profile default]\nkernel = /nonexistent/k\ninitramfs = ird\nroot = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), cfg, nil)
	for _, want := range []string{"x.conf:4: profile default: kernel /nonexistent/k", "x.conf:5: profile default: initramfs ird: no image of that name", "x.conf:6: profile default: root sha256:0123"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func TestBlobs(t *testing.T) {
	f := newFix(t, "")
	root := f.arts().Root
	path := "/blobs/sha256/" + root.Digest.Hex()
	etag := `"` + root.Digest.String() + `"`
	r := f.get(path)
	if b := body(t, r); r.StatusCode != 200 || b != f.files["root"] || r.Header.Get("ETag") != etag || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %d %q %v", r.StatusCode, b, r.Header)
	}
	r = f.get(path, "Range", "bytes=5-")
	if b := body(t, r); r.StatusCode != 206 || b != f.files["root"][5:] {
		t.Errorf("Range: %d %q", r.StatusCode, b)
	}
	r = f.get(path, "Range", "bytes=5-", "If-Range", etag)
	if b := body(t, r); r.StatusCode != 206 || b != f.files["root"][5:] {
		t.Errorf("If-Range match: %d %q", r.StatusCode, b)
	}
	r = f.get(path, "Range", "bytes=5-", "If-Range", `"other"`)
	if b := body(t, r); r.StatusCode != 200 || b != f.files["root"] {
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
		if r := f.get(bad); r.StatusCode != 400 && r.StatusCode != 404 && r.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("%s: status %d", bad, r.StatusCode)
		} else if b := body(t, r); strings.Contains(b, "root:") {
			t.Errorf("%s: leaked a file", bad)
		}
	}
	if r := f.do(http.MethodPost, path, "", nil); r.StatusCode != 405 {
		t.Errorf("POST: %d", r.StatusCode)
	}
}

// TestBootRecorded: the server records a boot from the script request on,
// with each artifact download and the agent's reports, and counts them in
// the metrics.
func TestBootRecorded(t *testing.T) {
	f := newFix(t, "")
	a := f.arts()
	script := body(t, f.get("/ipxe?mac=52-54-00-12-34-56"))
	for _, d := range []string{a.Kernel.Digest.Hex(), a.Initramfs.Digest.Hex(), a.Root.Digest.Hex()} {
		f.get("/blobs/sha256/" + d)
	}
	// A lazy root's reads by Range are not downloads: no event each.
	for range 3 {
		if r := f.get("/blobs/sha256/"+a.Root.Digest.Hex(), "Range", "bytes=0-3"); r.StatusCode != http.StatusPartialContent {
			t.Fatalf("Range read: %d", r.StatusCode)
		}
	}
	_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "")
	rep := regexp.MustCompile(`http://10\.0\.2\.100(/report/[0-9a-f]{64})`).FindStringSubmatch(doc.Report)
	if rep == nil || doc.Lower.HTTP == nil || doc.Lower.HTTP.Digest != a.Root.Digest || doc.Upper.Tmpfs == nil {
		t.Fatalf("document: %+v", doc)
	}
	post := func(b string) int {
		return f.do(http.MethodPost, rep[1], "198.51.100.7", strings.NewReader(b)).StatusCode
	}
	if c := post(`{"phase":"lower","outcome":"ok","seconds":1.5,"uptime":6.1,"message":"52 MiB verified"}`); c != http.StatusNoContent {
		t.Errorf("report: %d", c)
	}
	if c := post(`{"phase":"switch_root","outcome":"running","seconds":0,"uptime":6.2}`); c != http.StatusNoContent {
		t.Errorf("report: %d", c)
	}
	if c := post(`{"phase":"lower","outcome":"ok","seconds":1.5,"uptime":6.1,"extra":1}`); c != http.StatusBadRequest {
		t.Errorf("a malformed report: %d", c)
	}
	if c := f.do(http.MethodPost, "/report/"+strings.Repeat("a", 64), "", strings.NewReader(`{}`)).StatusCode; c != http.StatusNotFound {
		t.Errorf("a report for no boot: %d", c)
	}
	ctx := context.Background()
	bs, err := f.s.db.Boots(ctx, "52:54:00:12:34:56", 10)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots: %+v %v", bs, err)
	}
	if bs[0].Image != a.Root.Digest.String() || bs[0].Phase != "switch_root" || bs[0].Outcome != "running" {
		t.Errorf("boot: %+v", bs[0])
	}
	ev, _ := f.s.db.BootEvents(ctx, bs[0].ID)
	var got []string
	for _, e := range ev {
		got = append(got, e.Source+":"+e.Phase+":"+e.Outcome)
	}
	want := []string{"server:script:ok", "server:kernel:ok", "server:initramfs:ok", "server:root:ok", "server:document:ok", "agent:lower:ok", "agent:switch_root:running"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	m := body(t, f.get("/metrics"))
	for _, want := range []string{
		`overboot_http_requests_total{code="200",endpoint="blobs"} 3`,
		`overboot_http_requests_total{code="206",endpoint="blobs"} 3`,
		`overboot_boots_total{outcome="ok"} 1`,
		`overboot_boot_phase_seconds_count{phase="lower"} 1`,
		"overboot_iscsi_connections 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The status page shows the machine and where its boot is (to a
	// token's holder).
	page := body(t, f.get("/status", "Authorization", "Bearer "+newAdmin(f).tok))
	for _, want := range []string{"52:54:00:12:34:56", "switch_root", "default"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(page, "http://") && regexp.MustCompile(`(src|href)="https?://`).MatchString(page) {
		t.Errorf("status page loads an external asset")
	}
}

func TestServeShutdown(t *testing.T) {
	f := newFix(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/blobs/sha256/" + f.arts().Kernel.Digest.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); b != f.files["kernel"] {
		t.Errorf("got %q", b)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// publishFile stores content as a blob in data and publishes it as name.
func publishFile(t *testing.T, data, name, kind, content string) {
	t.Helper()
	blobs, err := blobstore.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	d, n, err := blobs.Ingest(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(data, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.PublishImage(context.Background(), state.Image{Name: name, Digest: d.String(), Size: n, Kind: kind}); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyDataDir: a data directory of an older overboot (names as JSON
// files, a machine's secret and disk in DATA/machines/MAC/) is imported
// on first start: the name resolves, the machine keeps its secret and its
// disk.
func TestLegacyDataDir(t *testing.T) {
	f := newFixPre(t, iscsiUpper+"enroll = open-insecure\n[profile named]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = oldname\n", func(data string) {
		blobs, err := blobstore.Open(data)
		if err != nil {
			t.Fatal(err)
		}
		d, n, _ := blobs.Ingest(strings.NewReader("hsqs-old"))
		if _, err := blobs.Publish(blobstore.Manifest{Name: "oldname", Kind: blobstore.KindRoot, Digest: d, Size: n}); err != nil {
			t.Fatal(err)
		}
		mdir := filepath.Join(data, "machines", "52-54-00-12-34-56")
		os.MkdirAll(mdir, 0o700)
		os.WriteFile(filepath.Join(mdir, "secret"), []byte("oldsecret-0123456789\n"), 0o600)
		os.WriteFile(filepath.Join(mdir, "upper.img"), make([]byte, 1<<20), 0o600)
	})
	ctx := context.Background()
	if im, err := f.s.db.Image(ctx, "oldname"); err != nil || im.Kind != "root" {
		t.Errorf("name not imported: %+v %v", im, err)
	}
	_, doc := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", "192.0.2.10")), "192.0.2.10")
	if u := doc.Upper.ISCSI; u == nil || u.CHAP.Secret != "oldsecret-0123456789" {
		t.Errorf("the machine lost its secret: %+v", u)
	}
	if k, err := f.s.db.Disk(ctx, state.OwnerMachine, "52:54:00:12:34:56", "default"); err != nil || k.Path != filepath.Join(f.dir, "data", "machines", "52-54-00-12-34-56", "upper.img") {
		t.Errorf("the machine lost its disk: %+v %v", k, err)
	}
}

// TestStatusAuth: the status page, its rows and its events answer only a
// token's holder or a signed-in session; the sign-in form opens a
// session (HttpOnly, SameSite=Strict) that ends with sign-out or with
// its token; status = public opens them to all.
func TestStatusAuth(t *testing.T) {
	f := newFix(t, "")
	f.script("52-54-00-12-34-56", "192.0.2.10")
	for _, path := range []string{"/status", "/status/rows", "/status/events"} {
		r := f.get(path)
		if b := body(t, r); r.StatusCode != http.StatusUnauthorized || strings.Contains(b, "52:54:00:12:34:56") {
			t.Errorf("%s without a token: %d %q", path, r.StatusCode, b)
		}
	}
	if b := body(t, f.get("/status")); !strings.Contains(b, `action="/status/signin"`) {
		t.Errorf("no sign-in form: %s", b)
	}
	ctx := context.Background()
	readTok, rt, err := enroll.NewAPIToken(ctx, f.s.db, "viewer", enroll.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if r := f.get("/status/rows", "Authorization", "Bearer "+readTok); r.StatusCode != 200 || !strings.Contains(body(t, r), "52:54:00:12:34:56") {
		t.Errorf("rows with a read token: %d", r.StatusCode)
	}
	signIn := func(tok, origin string) *http.Response {
		t.Helper()
		hdr := []string{"Content-Type", "application/x-www-form-urlencoded"}
		if origin != "" {
			hdr = append(hdr, "Origin", origin)
		}
		return f.do(http.MethodPost, "/status/signin", "192.0.2.50", strings.NewReader(url.Values{"token": {tok}}.Encode()), hdr...)
	}
	if r := signIn("obt_0000000000000000_"+strings.Repeat("0", 64), ""); r.StatusCode != http.StatusUnauthorized || !strings.Contains(body(t, r), "not a valid admin token") {
		t.Errorf("a bad token signed in: %d", r.StatusCode)
	}
	if r := signIn(readTok, "http://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Errorf("a sign-in posted from another site: %d", r.StatusCode)
	}
	r := signIn(readTok, "http://10.0.2.100")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/status" {
		t.Fatalf("sign-in: %d %v", r.StatusCode, r.Header)
	}
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == statusCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/status" || len(cookie.Value) != 64 {
		t.Fatalf("session cookie: %+v", cookie)
	}
	if strings.Contains(f.logs.String(), readTok) || strings.Contains(f.logs.String(), cookie.Value) {
		t.Errorf("the log shows the token or the session")
	}
	withCookie := func(path string) *http.Response {
		return f.get(path, "Cookie", statusCookie+"="+cookie.Value)
	}
	if r := withCookie("/status"); r.StatusCode != 200 || !strings.Contains(body(t, r), "Sign out") {
		t.Errorf("the page with a session: %d", r.StatusCode)
	}
	// Revoking the token ends its sessions.
	if err := f.s.db.DeleteAPIToken(ctx, rt.ID); err != nil {
		t.Fatal(err)
	}
	if r := withCookie("/status/rows"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session outlived its token: %d", r.StatusCode)
	}
	// Sign-out ends a session.
	tok2, _, _ := enroll.NewAPIToken(ctx, f.s.db, "viewer2", enroll.ScopeRead)
	for _, c := range signIn(tok2, "").Cookies() {
		cookie = c
	}
	if r := withCookie("/status/rows"); r.StatusCode != 200 {
		t.Fatalf("second session: %d", r.StatusCode)
	}
	f.do(http.MethodPost, "/status/signout", "192.0.2.50", nil, "Cookie", statusCookie+"="+cookie.Value)
	if r := withCookie("/status/rows"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session outlived its sign-out: %d", r.StatusCode)
	}
	// Sign-in tries are limited per address.
	limited := false
	for range 20 {
		if r := f.do(http.MethodPost, "/status/signin", "192.0.2.51", strings.NewReader("token=x"), "Content-Type", "application/x-www-form-urlencoded"); r.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("20 sign-in tries from one address were not limited")
	}
	// status = public.
	cfg := *f.s.cfg.Load()
	cfg.Status = config.StatusPublic
	if err := f.s.Reload(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	if r := f.get("/status/rows"); r.StatusCode != 200 {
		t.Errorf("public status: %d", r.StatusCode)
	}
}
