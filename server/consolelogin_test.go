package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// consoleFix is a login profile whose machines log in on the console
// (login = console), with one user, alice.
func consoleFix(t *testing.T, extra string) *fix {
	t.Helper()
	f := newFix(t, iscsiUpper+"enroll = login\nlogin = console\n"+extra)
	hash, err := enroll.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.db.AddUser(context.Background(), "alice", hash); err != nil {
		t.Fatal(err)
	}
	return f
}

// consoleURL is the path of the console login on the kernel command line
// of mac's script, asked from remote.
func (f *fix) consoleURL(mac, remote string) string {
	f.t.Helper()
	s := f.script(mac, remote)
	if strings.Contains(s, "overboot.doc=") || strings.Contains(s, "login ||") {
		f.t.Fatalf("a console login's script names a document or shows iPXE's form:\n%s", s)
	}
	return find(f.t, `overboot\.login=http://10\.0\.2\.100(/login/[0-9a-f]{64}\?profile=[a-z]+) `, s)
}

// postLogin POSTs a console login's body (JSON unless ctype says).
func (f *fix) postLogin(path, remote, ctype, body string) *http.Response {
	f.t.Helper()
	return f.do(http.MethodPost, path, remote, strings.NewReader(body), "Content-Type", ctype)
}

func loginJSON(user, pw string) string {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return string(b)
}

// refusal reads a console login's refusal, checking its code.
func refusal(t *testing.T, r *http.Response, code int) boot.ConsoleLoginRefusal {
	t.Helper()
	b := body(t, r)
	if r.StatusCode != code {
		t.Fatalf("HTTP %d, want %d: %s", r.StatusCode, code, b)
	}
	var ref boot.ConsoleLoginRefusal
	if err := json.Unmarshal([]byte(b), &ref); err != nil || ref.Error == "" {
		t.Fatalf("refusal %q: %v", b, err)
	}
	return ref
}

// loginPath is the path of a refusal's next URL.
func loginPath(t *testing.T, ref boot.ConsoleLoginRefusal) string {
	t.Helper()
	return find(t, `^http://10\.0\.2\.100(/login/[0-9a-f]{64}\?profile=[a-z]+)$`, ref.Login)
}

// TestConsoleLogin: the agent's POST to overboot.login's URL. Malformed
// bodies spend nothing; another address is refused; a wrong password
// gets 401 and a new URL (the old one is spent); the right one gets the
// user's document (their disk, a new CHAP secret), once.
func TestConsoleLogin(t *testing.T) {
	f := consoleFix(t, "")
	ctx := context.Background()
	const mac, addr = "52-54-00-00-00-01", "192.0.2.1"
	path := f.consoleURL(mac, addr)

	for name, tc := range map[string]struct{ ctype, body, want string }{
		"unknown field":    {"application/json", `{"username":"alice","password":"correct horse","admin":true}`, `unknown member "admin"`},
		"repeated field":   {"application/json", `{"username":"alice","password":"x","password":"correct horse"}`, "password given twice"},
		"not json":         {"application/json", `username=alice`, "want a JSON object"},
		"too long":         {"application/json", loginJSON("alice", strings.Repeat("x", 5000)), "longer than"},
		"long password":    {"application/json", loginJSON("alice", strings.Repeat("x", enroll.MaxPasswordLen+1)), "password longer than"},
		"bad user name":    {"application/json", loginJSON("Alice Smith", "correct horse"), "user name"},
		"no content type":  {"", loginJSON("alice", "correct horse"), "Content-Type"},
		"text":             {"text/plain", loginJSON("alice", "correct horse"), "Content-Type text/plain"},
		"form repeated":    {"application/x-www-form-urlencoded", "username=alice&password=a&password=b", "password given 2 times"},
		"form unknown":     {"application/x-www-form-urlencoded", "username=alice&password=a&x=1", `unknown field "x"`},
		"form no password": {"application/x-www-form-urlencoded", "username=alice", "password missing"},
	} {
		ref := refusal(t, f.postLogin(path, addr, tc.ctype, tc.body), http.StatusBadRequest)
		if !strings.Contains(ref.Error, tc.want) {
			t.Errorf("%s: %q, want %q", name, ref.Error, tc.want)
		}
		if got := loginPath(t, ref); got != path {
			t.Errorf("%s: next URL %s, want the same (nothing spent)", name, got)
		}
	}
	if !strings.HasSuffix(path, "?profile=default") {
		t.Errorf("the login URL does not name the profile: %s", path)
	}
	ref := refusal(t, f.postLogin(path+"&x=1", addr, "application/json", loginJSON("alice", "correct horse")), http.StatusBadRequest)
	if !strings.Contains(ref.Error, "only profile=NAME") || loginPath(t, ref) != path {
		t.Errorf("a query with more: %+v", ref)
	}
	// Another address: refused, and the URL stays its machine's.
	if r := f.postLogin(path, "192.0.2.99", "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("from another address: HTTP %d %s", r.StatusCode, body(t, r))
	}
	// iPXE's form cannot spend a console login's URL.
	if s := f.login(strings.Split(path, "?")[0], addr, "alice", "correct horse"); !strings.Contains(s, "unknown, used or expired URL") {
		t.Fatalf("a console URL as iPXE's form:\n%s", s)
	}

	// A wrong password: 401, a new URL; the old one is spent.
	ref = refusal(t, f.postLogin(path, addr, "application/json", loginJSON("alice", "battery staple")), http.StatusUnauthorized)
	next := loginPath(t, ref)
	if next == path || !strings.Contains(ref.Error, "wrong username or password") {
		t.Fatalf("wrong password: %+v", ref)
	}
	if r := f.postLogin(path, addr, "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusNotFound {
		t.Fatalf("the spent URL again: HTTP %d %s", r.StatusCode, body(t, r))
	}
	if ds, _ := f.s.db.DisksOf(ctx, state.OwnerUser, "alice"); len(ds) != 0 {
		t.Fatalf("disks after a wrong password: %+v", ds)
	}

	// The right password: the user's document.
	r := f.postLogin(next, addr, "application/json", loginJSON("alice", "correct horse"))
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("login: HTTP %d %s", r.StatusCode, body(t, r))
	}
	doc, err := boot.ParseDocument(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	u1 := doc.Upper.ISCSI
	if u1 == nil || !strings.HasPrefix(u1.Target, "iqn.2026-11.org.overboot:u-alice-d") || u1.CHAP.User != "u-alice" || doc.Machine != "52:54:00:00:00:01 (user alice)" {
		t.Fatalf("document: %+v upper %+v", doc, u1)
	}
	if r := f.postLogin(next, addr, "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a used URL again: HTTP %d %s", r.StatusCode, body(t, r))
	}
	bs, _ := f.s.db.Boots(ctx, "52:54:00:00:00:01", 1)
	if len(bs) != 1 || bs[0].User != "alice" {
		t.Errorf("boot: %+v", bs)
	} else if ev, _ := f.s.db.BootEvents(ctx, bs[0].ID); !hasEvents(ev, "login:failed", "login:ok", "document:ok") {
		t.Errorf("boot events: %+v", ev)
	}

	// A form body works the same, on another machine: the same disk, a
	// new secret.
	r = f.postLogin(f.consoleURL("52-54-00-00-00-02", "192.0.2.2"), "192.0.2.2", "application/x-www-form-urlencoded",
		url.Values{"username": {"alice"}, "password": {"correct horse"}}.Encode())
	if r.StatusCode != http.StatusOK {
		t.Fatalf("form login: HTTP %d %s", r.StatusCode, body(t, r))
	}
	doc2, err := boot.ParseDocument(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if u2 := doc2.Upper.ISCSI; u2 == nil || u2.Target != u1.Target || u2.CHAP.Secret == u1.CHAP.Secret {
		t.Errorf("second login: %+v (first %+v)", u2, u1)
	}
	for _, s := range []string{"correct horse", "battery staple", "correct+horse"} {
		if strings.Contains(f.logs.String(), s) {
			t.Errorf("the log shows a password (%q):\n%s", s, f.logs.String())
		}
	}
}

// hasEvents reports whether ev has each "phase:outcome" of the server.
func hasEvents(ev []state.BootEvent, want ...string) bool {
	have := map[string]bool{}
	for _, e := range ev {
		if e.Source == "server" {
			have[e.Phase+":"+e.Outcome] = true
		}
	}
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}

// TestConsoleLoginLimited: the form's limits hold for the console: per
// user (429, Retry-After, a new URL; the right password does not get
// through while limited) and per address (429, the URL unspent).
func TestConsoleLoginLimited(t *testing.T) {
	f := consoleFix(t, "")
	var limited *http.Response
	var remote string
	for i := range 8 {
		remote = fmt.Sprintf("192.0.2.%d", 10+i) // several addresses, one user
		r := f.postLogin(f.consoleURL("52-54-00-00-00-01", remote), remote, "application/json", loginJSON("alice", "not it at all"))
		if r.StatusCode == http.StatusTooManyRequests {
			limited = r
			break
		}
		refusal(t, r, http.StatusUnauthorized)
	}
	if limited == nil {
		t.Fatal("eight wrong passwords for one user were never limited")
	}
	if limited.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	next := loginPath(t, refusal(t, limited, http.StatusTooManyRequests))
	// The new URL works (it is this address's), but the user is still
	// limited: the right password gets no document.
	if r := f.postLogin(next, remote, "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the right password while limited: HTTP %d %s", r.StatusCode, body(t, r))
	}

	// One address, many attempts: its own limit, before any URL is spent.
	// Each refusal's new URL is the next attempt's (a new script per
	// attempt would meet the script's own limit first, by timing).
	const addr = "198.51.100.7"
	var addrLimited bool
	path := f.consoleURL("52-54-00-00-00-02", addr)
	for i := range 12 {
		r := f.postLogin(path, addr, "application/json", loginJSON(fmt.Sprintf("user%d", i), "guess")) // each user once: only the address's limit
		if r.StatusCode == http.StatusTooManyRequests {
			if r.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			if got := loginPath(t, refusal(t, r, http.StatusTooManyRequests)); got != path {
				t.Errorf("address limit: next URL %s, want the unspent %s", got, path)
			}
			addrLimited = true
			break
		}
		path = loginPath(t, refusal(t, r, http.StatusUnauthorized))
	}
	if !addrLimited {
		t.Error("twelve attempts from one address were never limited")
	}
}

// TestConsoleLoginMenu: a login = console profile with a menu: its login
// item boots the kernel that asks on the console (GET
// /console-login/TOKEN, the menu's token, once).
func TestConsoleLoginMenu(t *testing.T) {
	f := consoleFix(t, "menu = guest\n[profile guest]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n")
	menu := f.script("52-54-00-00-00-01", "192.0.2.1")
	if strings.Contains(menu, "login ||") || !strings.Contains(menu, "item console-login Log in on the console") {
		t.Fatalf("menu:\n%s", menu)
	}
	entry := find(t, `chain --autofree http://10\.0\.2\.100(/console-login/[0-9a-f]{64}) `, menu)
	if s := body(t, f.do(http.MethodGet, entry, "192.0.2.99", nil)); !strings.Contains(s, "belongs to another machine") {
		t.Errorf("the entry from another address:\n%s", s)
	}
	s := body(t, f.do(http.MethodGet, entry, "192.0.2.1", nil))
	path := find(t, `overboot\.login=http://10\.0\.2\.100(/login/[0-9a-f]{64}\?profile=[a-z]+) `, s)
	if strings.Contains(s, "overboot.doc=") {
		t.Errorf("the console login's boot names a document:\n%s", s)
	}
	if s := body(t, f.do(http.MethodGet, entry, "192.0.2.1", nil)); !strings.Contains(s, "unknown, used or expired URL") {
		t.Errorf("the entry twice:\n%s", s)
	}
	if r := f.postLogin(path, "192.0.2.1", "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusOK {
		t.Fatalf("login: HTTP %d %s", r.StatusCode, body(t, r))
	}
}

// TestConsoleLoginGRUB: a login profile on the Secure Boot path, where
// GRUB shows no form: alone, its config boots the signed kernel with
// overboot.login (over TFTP as over HTTP); in a menu, an entry loads
// that config; the agent's POST gets the user's document.
func TestConsoleLoginGRUB(t *testing.T) {
	f := newFixServer(t, "url = http://10.0.2.100\n", iscsiUpper+`enroll = login
[profile sb]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
cmdline = console=ttyS0
upper = iscsi
enroll = login
secure-boot = yes
[profile sbmenu]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
cmdline = console=ttyS0
upper = iscsi
enroll = login
secure-boot = yes
menu = guest
[profile guest]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
[machine 52:54:00:00:00:5b]
profile = sb
[machine 52:54:00:00:00:5c]
profile = sbmenu
`, func(data string) {
		if err := os.WriteFile(filepath.Join(filepath.Dir(data), "signed"), fakePE(t, true), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	hash, _ := enroll.HashPassword("correct horse")
	if err := f.s.db.AddUser(context.Background(), "alice", hash); err != nil {
		t.Fatal(err)
	}
	const loginRE = `if linux '/blobs/sha256/[0-9a-f]{64}' 'console=ttyS0' 'overboot\.login=http://10\.0\.2\.100(/login/[0-9a-f]{64}\?profile=sb[a-z]*)'; then`
	cfg := body(t, f.do(http.MethodGet, "/grub?mac=52:54:00:00:00:5b&buildarch=x86_64&platform=efi", "192.0.2.1", nil))
	path := find(t, loginRE, cfg)
	if strings.Contains(cfg, "overboot.doc") || strings.Contains(cfg, "no GRUB form") {
		t.Errorf("GRUB config:\n%s", cfg)
	}
	r := f.postLogin(path, "192.0.2.1", "application/json", loginJSON("alice", "correct horse"))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("login: HTTP %d %s", r.StatusCode, body(t, r))
	}
	if doc, err := boot.ParseDocument(r.Body); err != nil || doc.Upper.ISCSI == nil || doc.Upper.ISCSI.CHAP.User != "u-alice" {
		t.Fatalf("document: %+v %v", doc, err)
	}

	// Over TFTP, as GRUB reads: the menu, then its console login entry.
	tftp := func(name string) string {
		t.Helper()
		tf, n, err := f.s.tftpFiles(context.Background(), name, netip.MustParseAddr("192.0.2.2"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer tf.Close()
		b := make([]byte, n)
		tf.ReadAt(b, 0)
		return string(b)
	}
	menu := tftp("/grub?mac=52:54:00:00:00:5c&buildarch=x86_64&platform=efi")
	entry := find(t, `menuentry 'Log in on the console \(your own root\)' --id 'console-login' \{\n\tconfigfile '(/grub/console-login/[0-9a-f]{64})'`, menu)
	path = find(t, loginRE, tftp(entry))
	if r := f.postLogin(path, "192.0.2.2", "application/json", loginJSON("alice", "correct horse")); r.StatusCode != http.StatusOK {
		t.Fatalf("login from the menu's entry: HTTP %d %s", r.StatusCode, body(t, r))
	}
}
