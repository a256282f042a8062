package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// operator is a browser on the console: it keeps the cookies the server
// sets, sends Origin with its posts as browsers do, and knows the CSRF
// token of the last page it read.
type operator struct {
	f       *fix
	cookies map[string]string
	csrf    string
	origin  string
}

func newOperator(f *fix) *operator {
	return &operator{f: f, cookies: map[string]string{}, origin: "http://10.0.2.100"}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (o *operator) do(method, path string, form url.Values) (*http.Response, string) {
	o.f.t.Helper()
	var hdr []string
	var r io.Reader
	if form != nil {
		r = strings.NewReader(form.Encode())
		hdr = append(hdr, "Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost && o.origin != "" {
		hdr = append(hdr, "Origin", o.origin, "Sec-Fetch-Site", "same-origin")
	}
	var cs []string
	for k, v := range o.cookies {
		cs = append(cs, k+"="+v)
	}
	if len(cs) > 0 {
		hdr = append(hdr, "Cookie", strings.Join(cs, "; "))
	}
	resp := o.f.do(method, path, "192.0.2.60", r, hdr...)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(o.cookies, c.Name)
		} else {
			o.cookies[c.Name] = c.Value
		}
	}
	b := body(o.f.t, resp)
	if m := csrfField.FindStringSubmatch(b); m != nil {
		o.csrf = m[1]
	}
	return resp, b
}

func (o *operator) get(path string) (*http.Response, string) { return o.do(http.MethodGet, path, nil) }

// post sends a form with the page's CSRF token.
func (o *operator) post(path string, kv ...string) (*http.Response, string) {
	o.f.t.Helper()
	form := url.Values{"csrf": {o.csrf}}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return o.do(http.MethodPost, path, form)
}

// signIn signs in with a new token of scope.
func (o *operator) signIn(scope enroll.Scope) string {
	o.f.t.Helper()
	tok, _, err := enroll.NewAPIToken(context.Background(), o.f.s.db, "console-"+string(scope), scope)
	if err != nil {
		o.f.t.Fatal(err)
	}
	o.get("/console/signin")
	resp, b := o.post("/console/signin", "token", tok)
	if resp.StatusCode != http.StatusSeeOther || o.cookies["overboot_console"] == "" {
		o.f.t.Fatalf("sign in: %d %s", resp.StatusCode, b)
	}
	return tok
}

func TestConsoleAnswersNothingWithoutASession(t *testing.T) {
	f := newFix(t, "")
	o := newOperator(f)
	for _, p := range []string{"/console", "/console/", "/console/machines", "/console/machines/52:54:00:12:34:56", "/console/machines/52:54:00:12:34:56/reset",
		"/console/pending", "/console/images", "/console/images/x", "/console/users", "/console/servers", "/console/nope"} {
		resp, b := o.get(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin" || strings.Contains(b, "52:54:00") {
			t.Errorf("GET %s: %d %q", p, resp.StatusCode, b)
		}
	}
	if resp, _ := o.get("/console/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("events: %d", resp.StatusCode)
	}
	for _, p := range []string{"/console/machines/52:54:00:12:34:56/reset", "/console/images/x/rollback", "/console/users/alice/password", "/console/signout"} {
		if resp, _ := o.post(p); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s: %d", p, resp.StatusCode)
		}
	}
	resp, b := o.get("/console/signin")
	if resp.StatusCode != 200 || !strings.Contains(b, `action="/console/signin"`) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("sign-in page: %d %s", resp.StatusCode, b)
	}
}

func TestConsoleSignInAndOut(t *testing.T) {
	f := newFix(t, "")
	o := newOperator(f)
	tok, _, err := enroll.NewAPIToken(context.Background(), f.s.db, "viewer", enroll.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	o.get("/console/signin")
	pre := o.csrf
	// The form's token must match its cookie: another site cannot sign
	// a browser in to its own session.
	o.csrf = strings.Repeat("0", 64)
	if resp, _ := o.post("/console/signin", "token", tok); resp.StatusCode != http.StatusForbidden || o.cookies["overboot_console"] != "" {
		t.Errorf("sign-in with another form's token: %d", resp.StatusCode)
	}
	o.get("/console/signin")
	if resp, b := o.post("/console/signin", "token", "obt_nope"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "not a valid admin token") {
		t.Errorf("a bad token: %d %s", resp.StatusCode, b)
	}
	o.get("/console/signin")
	if o.csrf == pre {
		t.Error("the sign-in form's token did not change")
	}
	if resp, b := o.post("/console/signin", "token", tok, "extra", "x"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "extra") {
		t.Errorf("an extra field: %d %s", resp.StatusCode, b)
	}
	o.get("/console/signin")
	resp, b := o.post("/console/signin", "token", tok)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", resp.StatusCode, b)
	}
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "overboot_console" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/console" || sc.MaxAge <= 0 || strings.Contains(sc.Value, tok) {
		t.Fatalf("session cookie: %+v", sc)
	}
	if c, err := f.s.db.ConsoleSession(context.Background(), enroll.HashToken(sc.Value)); err != nil || c.Hash == sc.Value {
		t.Errorf("the store keeps the session's hash only: %+v %v", c, err)
	}
	resp, b = o.get("/console")
	if resp.StatusCode != 200 || !strings.Contains(b, "viewer (read)") || resp.Header.Get("Content-Security-Policy") != "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'" {
		t.Fatalf("overview: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	stolen := o.cookies["overboot_console"]
	// Signing out needs the CSRF token too (another site could sign
	// the operator out).
	o2 := *o
	o2.csrf = ""
	if resp, _ := o2.post("/console/signout"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := o.post("/console/signout"); resp.StatusCode != http.StatusSeeOther || o.cookies["overboot_console"] != "" {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	// The session is over in the store: a copy of the cookie is worth
	// nothing.
	o.cookies["overboot_console"] = stolen
	if resp, _ := o.get("/console/machines"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
	// A revoked token ends its sessions.
	o = newOperator(f)
	o.signIn(enroll.ScopeRead)
	ts, _ := f.s.db.APITokens(context.Background())
	for _, x := range ts {
		if x.Name == "console-read" {
			f.s.db.DeleteAPIToken(context.Background(), x.ID)
		}
	}
	if resp, _ := o.get("/console"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the token was revoked: %d", resp.StatusCode)
	}
}

func TestConsoleApproveNeedsCSRFOriginAndScope(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = approve\n")
	const mac = "52:54:00:12:34:56"
	f.script("52-54-00-12-34-56", "192.0.2.10")
	pending := func() bool {
		qs, _ := f.s.db.Requests(context.Background(), mac)
		return len(qs) == 1
	}
	viewer := newOperator(f)
	viewer.signIn(enroll.ScopeRead)
	resp, b := viewer.get("/console/pending")
	if resp.StatusCode != 200 || !strings.Contains(b, mac) || strings.Contains(b, "Approve…") {
		t.Errorf("pending, as a viewer: %d %s", resp.StatusCode, b)
	}
	if resp, b := viewer.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != http.StatusForbidden || !strings.Contains(b, "scope operate") || !pending() {
		t.Errorf("a viewer approving: %d %s", resp.StatusCode, b)
	}
	o := newOperator(f)
	o.signIn(enroll.ScopeOperate)
	resp, b = o.get("/console/pending")
	if !strings.Contains(b, "/console/machines/"+mac+"/approve?address=192.0.2.10&amp;profile=default") {
		t.Fatalf("pending: %d %s", resp.StatusCode, b)
	}
	resp, b = o.get("/console/machines/" + mac + "/approve?address=192.0.2.10&profile=default")
	if resp.StatusCode != 200 || !strings.Contains(b, "at address 192.0.2.10") || !strings.Contains(b, "profile default") {
		t.Fatalf("confirm: %d %s", resp.StatusCode, b)
	}
	good := o.csrf
	o.csrf = ""
	if resp, _ := o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != http.StatusForbidden || !pending() {
		t.Errorf("no CSRF token: %d", resp.StatusCode)
	}
	o.csrf = viewer.csrf // another session's
	if resp, _ := o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != http.StatusForbidden || !pending() {
		t.Errorf("another session's CSRF token: %d", resp.StatusCode)
	}
	o.csrf, o.origin = good, "http://evil.example"
	if resp, _ := o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != http.StatusForbidden || !pending() {
		t.Errorf("another site's form: %d", resp.StatusCode)
	}
	o.origin = "http://10.0.2.100"
	if resp, b := o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.99", "profile", "default"); resp.StatusCode != http.StatusNotFound || !pending() {
		t.Errorf("approving an address it did not ask from: %d %s", resp.StatusCode, b)
	}
	if resp, b := o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != 200 || !strings.Contains(b, "Approved "+mac) || pending() {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	if adm, err := f.s.db.Admission(context.Background(), mac, "default"); err != nil || adm.Address != "192.0.2.10" {
		t.Errorf("admission: %+v %v", adm, err)
	}
}

func TestConsoleResetRotateDelete(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = approve\n")
	const mac = "52:54:00:12:34:56"
	ctx := context.Background()
	f.script("52-54-00-12-34-56", "192.0.2.10")
	o := newOperator(f)
	o.signIn(enroll.ScopeOperate)
	o.get("/console/pending")
	o.post("/console/machines/"+mac+"/approve", "address", "192.0.2.10", "profile", "default")
	f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", "192.0.2.10")), "192.0.2.10")
	ks, _ := f.s.db.DisksOf(ctx, state.OwnerMachine, mac)
	if len(ks) != 1 {
		t.Fatalf("disks: %+v", ks)
	}
	resp, b := o.get("/console/machines/" + mac + "/reset")
	if resp.StatusCode != 200 || !strings.Contains(b, "removes its 1 disk: upper disk "+itoa(ks[0].ID)+" of profile default") {
		t.Errorf("confirm reset: %d %s", resp.StatusCode, b)
	}
	if resp, b := o.post("/console/machines/"+mac+"/reset", "more", "x"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "more") {
		t.Errorf("reset with a field: %d %s", resp.StatusCode, b)
	}
	if _, err := os.Stat(ks[0].Path); err != nil {
		t.Fatal("a refused reset removed the disk")
	}
	if resp, b := o.post("/console/machines/" + mac + "/reset"); resp.StatusCode != 200 || !strings.Contains(b, "Reset "+mac) {
		t.Fatalf("reset: %d %s", resp.StatusCode, b)
	}
	if _, err := os.Stat(ks[0].Path); !os.IsNotExist(err) {
		t.Error("reset kept the disk file")
	}
	if resp, b := o.post("/console/machines/" + mac + "/rotate"); resp.StatusCode != 200 || !strings.Contains(b, "Rotated") {
		t.Errorf("rotate: %d %s", resp.StatusCode, b)
	}
	if resp, _ := o.post("/console/machines/" + mac + "/explode"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown action: %d", resp.StatusCode)
	}
	if resp, b := o.post("/console/machines/" + mac + "/delete"); resp.StatusCode != 200 || !strings.Contains(b, "Deleted") {
		t.Errorf("delete: %d %s", resp.StatusCode, b)
	}
	if _, err := f.s.db.Machine(ctx, mac); err == nil {
		t.Error("the machine is still there")
	}
	if resp, _ := o.get("/console/machines/" + mac); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a deleted machine's page: %d", resp.StatusCode)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestConsoleEscapes: what machines say (a host name, a failure message)
// reaches the pages as text, never as markup.
func TestConsoleEscapes(t *testing.T) {
	f := newFix(t, "")
	ctx := context.Background()
	const mac = "52:54:00:12:34:57"
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	if err := f.s.db.AddMachine(ctx, state.Machine{MAC: mac, Profile: "default", Hostname: evil, Address: "192.0.2.11"}); err != nil {
		t.Fatal(err)
	}
	id := f.s.rec.Start(ctx, state.Boot{MAC: mac, Profile: "default", Address: "192.0.2.11"}, "script")
	f.s.rec.Event(ctx, id, state.BootEvent{Source: telemetry.SourceAgent, Phase: "lower", Outcome: telemetry.Running})
	f.s.rec.Event(ctx, id, state.BootEvent{Source: telemetry.SourceAgent, Phase: "lower", Outcome: telemetry.Failed, Seconds: 1.5, Message: evil})
	o := newOperator(f)
	o.signIn(enroll.ScopeRead)
	for _, p := range []string{"/console", "/console/machines", "/console/machines?state=failed", "/console/machines/" + mac, "/console/machines?q=" + url.QueryEscape(evil)} {
		resp, b := o.get(p)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
			continue
		}
		if strings.Contains(b, "<script>alert") || strings.Contains(b, "<img src=x") {
			t.Errorf("%s carries the machine's markup unescaped", p)
		}
		if p != "/console" && !strings.Contains(b, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the text escaped", p)
		}
	}
	_, b := o.get("/console/machines/" + mac)
	if !strings.Contains(b, `id="failure"`) || !strings.Contains(b, "<svg") {
		t.Errorf("the failed boot: no failure or waterfall: %s", b)
	}
}

// TestConsoleRollback: the image's page lists its versions with the
// machines on each; a rollback goes through its confirmation page and
// points the name at the old blob, as the API's does.
func TestConsoleRollback(t *testing.T) {
	f := newFixPre(t, "[profile named]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = demo\n[machine 52:54:00:00:00:07]\nprofile = named\n", func(data string) {
		publishFile(t, data, "demo", "root", "hsqs-version-1")
	})
	a := newAdmin(f)
	rootOf := func() string {
		_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-00-00-07", "192.0.2.7")), "192.0.2.7")
		return doc.Lower.HTTP.Digest.String()
	}
	v1 := rootOf()
	var blob api.BlobView
	a.call(http.MethodPost, "/blobs", squashfsBlob("version 2"), &blob)
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"`+blob.Digest+`"}`, nil); c != 201 {
		t.Fatalf("publish: %d %s", c, b)
	}
	rootOf()
	o := newOperator(f)
	o.signIn(enroll.ScopeOperate)
	resp, b := o.get("/console/images/demo")
	if resp.StatusCode != 200 || !strings.Contains(b, `id="rollback-1"`) || strings.Contains(b, `id="rollback-2"`) {
		t.Fatalf("image page: %d %s", resp.StatusCode, b)
	}
	// The machine booted version 2 last: the page counts it there.
	if !regexp.MustCompile(`data-version="2" class="sel">.*?<a href="/console/machines\?image=sha256%3A[0-9a-f]+">1</a>`).MatchString(b) {
		t.Errorf("version 2 does not count the machine on it: %s", b)
	}
	if resp, b := o.get("/console/images/demo/rollback?version=1"); resp.StatusCode != 200 || !strings.Contains(b, "as version 3") {
		t.Errorf("confirm: %d %s", resp.StatusCode, b)
	}
	if resp, b := o.get("/console/images/demo/rollback?version=2"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "no version 2 to roll back to") {
		t.Errorf("confirm the current version: %d %s", resp.StatusCode, b)
	}
	if resp, b := o.post("/console/images/demo/rollback", "version", "x"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, `version &#34;x&#34;`) {
		t.Errorf("a bad version: %d %s", resp.StatusCode, b)
	}
	if got := rootOf(); got != blob.Digest {
		t.Fatal("a refused rollback moved the name")
	}
	if resp, b := o.post("/console/images/demo/rollback", "version", "1"); resp.StatusCode != 200 || !strings.Contains(b, "demo is now version 3") {
		t.Fatalf("rollback: %d %s", resp.StatusCode, b)
	}
	if got := rootOf(); got != v1 {
		t.Errorf("after the rollback the next boot got %s, want %s", got, v1)
	}
}

// TestConsoleUsers: setting a password needs an admin token; the two
// fields must agree; a short password is refused with why.
func TestConsoleUsers(t *testing.T) {
	f := loginFix(t, "")
	ctx := context.Background()
	before, _ := f.s.db.User(ctx, "alice")
	op := newOperator(f)
	op.signIn(enroll.ScopeOperate)
	if _, b := op.get("/console/users"); !strings.Contains(b, "alice") || strings.Contains(b, "Set password") {
		t.Errorf("users page, as an operator: %s", b)
	}
	op.get("/console/users/alice/password")
	if resp, b := op.post("/console/users/alice/password", "password", "a new long password", "again", "a new long password"); resp.StatusCode != http.StatusForbidden || !strings.Contains(b, "scope admin") {
		t.Errorf("an operator setting a password: %d %s", resp.StatusCode, b)
	}
	ad := newOperator(f)
	ad.signIn(enroll.ScopeAdmin)
	ad.get("/console/users/alice/password")
	if resp, b := ad.post("/console/users/alice/password", "password", "a new long password", "again", "another long password"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "differ") {
		t.Errorf("passwords that differ: %d %s", resp.StatusCode, b)
	}
	if resp, b := ad.post("/console/users/alice/password", "password", "x", "again", "x"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "alice") {
		t.Errorf("a short password: %d %s", resp.StatusCode, b)
	}
	if u, _ := f.s.db.User(ctx, "alice"); u.PasswordHash != before.PasswordHash {
		t.Fatal("a refused form changed the password")
	}
	if resp, b := ad.post("/console/users/alice/password", "password", "a new long password", "again", "a new long password"); resp.StatusCode != 200 || strings.Contains(b, "a new long password") {
		t.Fatalf("set the password: %d %s", resp.StatusCode, b)
	}
	u, _ := f.s.db.User(ctx, "alice")
	if ok, _ := enroll.CheckPassword(u.PasswordHash, "a new long password"); !ok {
		t.Error("the new password does not check")
	}
	if resp, _ := ad.get("/console/users/bob/password"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no such user: %d", resp.StatusCode)
	}
}

// TestConsoleSessionAcrossServers: two servers on one PostgreSQL store.
// A session opened at A is good at B (behind a balancer a browser meets
// either); signing out at B ends it at A too; a machine asking A is
// approved from B's console.
func TestConsoleSessionAcrossServers(t *testing.T) {
	conn := pgtest.Database(t)
	store := "store = " + conn + "\n"
	a := newFixServer(t, store, "enroll = approve\n", nil)
	b := newFixServer(t, store, "enroll = approve\n", nil)
	a.script("52-54-00-12-34-56", "192.0.2.10")
	oa := newOperator(a)
	oa.signIn(enroll.ScopeOperate)
	ob := newOperator(b)
	ob.cookies = oa.cookies
	resp, body := ob.get("/console/pending")
	if resp.StatusCode != 200 || !strings.Contains(body, "52:54:00:12:34:56") {
		t.Fatalf("A's session at B: %d %s", resp.StatusCode, body)
	}
	if resp, body := ob.post("/console/machines/52:54:00:12:34:56/approve", "address", "192.0.2.10", "profile", "default"); resp.StatusCode != 200 {
		t.Fatalf("approve at B: %d %s", resp.StatusCode, body)
	}
	if s := a.script("52-54-00-12-34-56", "192.0.2.10"); strings.Contains(s, "waits for approval") {
		t.Errorf("approved at B, still waiting at A:\n%s", s)
	}
	stolen := oa.cookies["overboot_console"]
	if resp, _ := ob.post("/console/signout"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out at B: %d", resp.StatusCode)
	}
	oa.cookies["overboot_console"] = stolen
	if resp, _ := oa.get("/console"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signed out at B, still in at A: %d", resp.StatusCode)
	}
}
