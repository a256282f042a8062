package server

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/identity"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

const iscsiUpper = "upper = iscsi\nupper-disk-size = 64M\n"

func find(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, s)
	}
	return m[1]
}

func (f *fix) script(mac, remote string) string {
	f.t.Helper()
	r := f.do(http.MethodGet, "/ipxe?mac="+mac, remote, nil)
	return body(f.t, r)
}

func (f *fix) doc(path, remote string) (*http.Response, boot.Document) {
	f.t.Helper()
	r := f.do(http.MethodGet, path, remote, nil)
	if r.StatusCode != 200 {
		return r, boot.Document{}
	}
	d, err := boot.ParseDocument(r.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return r, d
}

// TestDocumentTokenBound: the single-use document URL answers only the
// address that fetched the script, once.
func TestDocumentTokenBound(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = open-insecure\n")
	if !f.s.NeedsISCSI() {
		t.Fatal("NeedsISCSI = false")
	}
	script := f.script("52-54-00-12-34-56", "192.0.2.10")
	path := find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script)
	if strings.Contains(script, "overboot.lower=") {
		t.Errorf("doc mode and a lower on the command line:\n%s", script)
	}
	// Spent from elsewhere: refused, logged, and still good for its machine.
	if r, _ := f.doc(path, "192.0.2.66"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("token spent from another address: %d", r.StatusCode)
	}
	if !strings.Contains(f.logs.String(), "spent from another address") {
		t.Errorf("the attempt was not logged:\n%s", f.logs.String())
	}
	r, doc := f.doc(path, "192.0.2.10")
	if r.StatusCode != 200 {
		t.Fatalf("document: %d", r.StatusCode)
	}
	u := doc.Upper.ISCSI
	if u == nil || u.Portal != "10.0.2.100:3260" || !strings.HasPrefix(u.Target, "iqn.2026-11.org.overboot:m-525400123456-d") || u.Initiator != "iqn.2026-11.org.overboot:i-525400123456" || u.CHAP == nil || len(u.CHAP.Secret) < 12 {
		t.Fatalf("upper: %+v", u)
	}
	if doc.Lower.HTTP == nil || doc.Lower.HTTP.Size != 21 || !strings.Contains(doc.Report, "/report/") {
		t.Errorf("lower/report: %+v %q", doc.Lower, doc.Report)
	}
	if r, _ := f.doc(path, "192.0.2.10"); r.StatusCode != http.StatusNotFound {
		t.Errorf("a token worked twice: %d", r.StatusCode)
	}
	k, err := f.s.db.Disk(context.Background(), state.OwnerMachine, "52:54:00:12:34:56", "default")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(k.Path); err != nil || fi.Size() != 64<<20 || fi.Mode().Perm() != 0o600 {
		t.Errorf("upper disk: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(f.dir, "data", state.FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state store: %v %v", fi, err)
	}
	// The target proves itself too: its own secret, not the machine's.
	if u.CHAP.TargetUser != "t-52-54-00-12-34-56" || len(u.CHAP.TargetSecret) < 16 || u.CHAP.TargetSecret == u.CHAP.Secret {
		t.Errorf("mutual CHAP: %+v", u.CHAP)
	}
	if strings.Contains(f.logs.String(), u.CHAP.Secret) || strings.Contains(f.logs.String(), u.CHAP.TargetSecret) || strings.Contains(f.logs.String(), path[5:]) {
		t.Errorf("the log shows a secret or a token")
	}
}

// approveFix is an approve profile with a private iSCSI disk beside
// the profiles a client can select itself: a [machine UUID] of an open
// profile, and a [select] on hostname of an open-insecure one.
func approveFix(t *testing.T, extra string) *fix {
	t.Helper()
	return newFix(t, iscsiUpper+"enroll = approve\n"+extra+
		"[profile kiosk]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n"+
		"[profile scratch]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n"+iscsiUpper+"enroll = open-insecure\n"+
		"[machine 01234567-89ab-cdef-0123-456789abcdef]\nprofile = kiosk\n"+
		"[select scratch]\nhostname = scratch-*\nprofile = scratch\n")
}

// approve approves mac's request for profile from address as the API does.
func (f *fix) approve(mac, profile, address string) state.Admission {
	f.t.Helper()
	a, err := f.s.db.Approve(context.Background(), mac, profile, address, state.Quota{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.s.disks.Drop(context.Background(), disks.Owner{Kind: state.OwnerMachine, Name: mac})
	return a
}

// TestApprove: under approve, naming a MAC gets a waiting script and no
// secret until an administrator approves the request of one address;
// the same MAC named from elsewhere is refused and changes nothing: the
// machine stays approved where it was and keeps booting.
func TestApprove(t *testing.T) {
	f := approveFix(t, "")
	ctx := context.Background()
	const mac, victim, attacker = "52:54:00:12:34:56", "192.0.2.10", "192.0.2.66"
	wait := f.script("52-54-00-12-34-56", victim)
	for _, want := range []string{"waits for approval (overboot machine approve 52:54:00:12:34:56 --address 192.0.2.10)", "sleep 30", "chain --autofree http://10.0.2.100/ipxe?mac=${net0/mac:hexhyp}"} {
		if !strings.Contains(wait, want) {
			t.Errorf("waiting script lacks %q:\n%s", want, wait)
		}
	}
	if strings.Contains(wait, "/doc/") {
		t.Fatalf("a pending machine got a document URL")
	}
	if rs, err := f.s.db.Requests(ctx, mac); err != nil || len(rs) != 1 || rs[0].Address != victim {
		t.Fatalf("pending request: %+v %v", rs, err)
	}
	f.approve(mac, "default", victim)
	script := f.script("52-54-00-12-34-56", victim)
	path := find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script)
	r, doc1 := f.doc(path, victim)
	if r.StatusCode != 200 {
		t.Fatalf("approved machine's document: %d", r.StatusCode)
	}
	// The attack: name the victim's MAC from another address, many times.
	for range 5 {
		s := f.script("52-54-00-12-34-56", attacker)
		if strings.Contains(s, "/doc/") || !strings.Contains(s, "is approved at another address, not at 192.0.2.66: refused") {
			t.Fatalf("the victim's MAC from another address:\n%s", s)
		}
		if strings.Contains(s, victim) {
			t.Errorf("the refusal tells the attacker the approved address:\n%s", s)
		}
	}
	if a, err := f.s.db.Admission(ctx, mac, "default"); err != nil || a.Address != victim || a.Policy != state.PolicyApprove {
		t.Errorf("the attack changed the approval: %+v %v", a, err)
	}
	if !strings.Contains(f.logs.String(), "machine refused: approved at another address") {
		t.Errorf("the conflict was not logged")
	}
	if rs, _ := f.s.db.Requests(ctx, mac); len(rs) != 1 || !rs[0].Conflict || rs[0].Address != attacker || rs[0].Asked != 5 {
		t.Errorf("the conflict is not recorded for the administrator: %+v", rs)
	}
	// The victim itself still boots, with the same secret.
	_, doc2 := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", victim)), victim)
	if doc2.Upper.ISCSI == nil || doc2.Upper.ISCSI.CHAP.Secret != doc1.Upper.ISCSI.CHAP.Secret {
		t.Fatalf("the victim lost its boot or its secret: %+v", doc2.Upper)
	}
	// Re-approval at another address (the machine moved) rotates the
	// secrets the old address saw: CHAP and host key.
	f.approve(mac, "default", attacker)
	if s := f.script("52-54-00-12-34-56", victim); strings.Contains(s, "/doc/") {
		t.Errorf("the old address still boots after the approval moved")
	}
	_, doc3 := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", attacker)), attacker)
	if doc3.Upper.ISCSI == nil || doc3.Upper.ISCSI.CHAP.Secret == doc1.Upper.ISCSI.CHAP.Secret {
		t.Errorf("re-approval kept the CHAP secret")
	}
	if hostKey(t, doc3) == hostKey(t, doc1) {
		t.Errorf("re-approval kept the SSH host key")
	}
	chap := target.CHAP{User: doc1.Upper.ISCSI.CHAP.User, Secret: target.Secret(doc1.Upper.ISCSI.CHAP.Secret)}
	if f.s.disks.Target().HasTarget(doc1.Upper.ISCSI.Target, chap, doc1.Upper.ISCSI.Initiator) {
		t.Errorf("the old secret still opens the disk")
	}
}

func hostKey(t *testing.T, d boot.Document) string {
	t.Helper()
	for _, fl := range d.Identity.Files {
		if fl.Path == identity.HostKeyPath {
			return fl.Data
		}
	}
	t.Fatalf("no host key in %+v", d.Identity)
	return ""
}

// TestApprovalNotStolen: pending requests are kept per address; the
// administrator approves the one they name, however often another
// address asks.
func TestApprovalNotStolen(t *testing.T) {
	f := approveFix(t, "")
	ctx := context.Background()
	const mac, real, attacker = "52:54:00:12:34:57", "192.0.2.11", "192.0.2.66"
	f.script("52-54-00-12-34-57", real)
	for range 10 {
		f.script("52-54-00-12-34-57", attacker)
	}
	rs, _ := f.s.db.Requests(ctx, mac)
	if len(rs) != 2 {
		t.Fatalf("requests: %+v", rs)
	}
	a := f.approve(mac, "default", real)
	if a.Address != real {
		t.Fatalf("approved %s", a.Address)
	}
	if s := f.script("52-54-00-12-34-57", attacker); strings.Contains(s, "/doc/") {
		t.Errorf("the address that asked most got the approval")
	}
	if s := f.script("52-54-00-12-34-57", real); !strings.Contains(s, "/doc/") {
		t.Errorf("the approved address does not boot")
	}
}

// TestEnrolmentBelongsToProfile: admission to an open profile, reached
// by what the client says of itself (its UUID, its host name), admits
// to nothing else: asked again under the approve profile from the same
// address, the machine waits, gets no disk and no secret, and counts
// against the approve profile's quota only when it asks there.
func TestEnrolmentBelongsToProfile(t *testing.T) {
	f := approveFix(t, "max-machines = 1\n")
	ctx := context.Background()
	const addr = "192.0.2.20"
	// Open kiosk by a [machine UUID] the client states itself.
	if s := f.script("52-54-00-00-00-21&uuid=01234567-89ab-cdef-0123-456789abcdef", addr); !strings.Contains(s, "profile kiosk") || !strings.Contains(s, "/doc/") {
		t.Fatalf("kiosk by UUID:\n%s", s)
	}
	// Open-insecure scratch by a [select] on hostname: a disk and its secret.
	s := f.script("52-54-00-00-00-21&hostname=scratch-1", addr)
	r, d := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, s), addr)
	if r.StatusCode != 200 || d.Upper.ISCSI == nil {
		t.Fatalf("scratch: %d %+v", r.StatusCode, d.Upper)
	}
	// Now the same MAC from the same address under the approve profile.
	s = f.script("52-54-00-00-00-21", addr)
	if strings.Contains(s, "/doc/") || !strings.Contains(s, "waits for approval") {
		t.Fatalf("admitted to an approve profile by an open one:\n%s", s)
	}
	if ks, _ := f.s.db.DisksOf(ctx, state.OwnerMachine, "52:54:00:00:00:21"); len(ks) != 1 || ks[0].Profile != "scratch" {
		t.Errorf("disks: %+v", ks)
	}
	// The approve profile's quota (1) holds with a second machine that
	// came in through an open profile first.
	f.script("52-54-00-00-00-22&hostname=scratch-2", "192.0.2.22")
	if s := f.script("52-54-00-00-00-22", "192.0.2.22"); !strings.Contains(s, "has its 1 machines (max-machines)") {
		t.Errorf("quota of the approve profile bypassed through an open one:\n%s", s)
	}
	// Approved, the scratch secret opens nothing of the approved disk.
	f.approve("52:54:00:00:00:21", "default", addr)
	_, d2 := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-00-00-21", addr)), addr)
	if d2.Upper.ISCSI == nil || d2.Upper.ISCSI.CHAP.Secret == d.Upper.ISCSI.CHAP.Secret {
		t.Fatalf("the approve profile's disk shares the open-insecure profile's secret: %+v", d2.Upper)
	}
	chap := target.CHAP{User: d.Upper.ISCSI.CHAP.User, Secret: target.Secret(d.Upper.ISCSI.CHAP.Secret)}
	if f.s.disks.Target().HasTarget(d2.Upper.ISCSI.Target, chap, d2.Upper.ISCSI.Initiator) {
		t.Errorf("the open-insecure secret opens the approved disk")
	}
}

// TestPolicyChange: machines admitted while a profile was open are not
// admitted once it says approve, made-up MACs included.
func TestPolicyChange(t *testing.T) {
	f := newFix(t, "")
	ctx := context.Background()
	for i := range 5 {
		if s := f.script(fmt.Sprintf("02-00-00-00-00-%02x", i), "198.51.100.1"); !strings.Contains(s, "/doc/") {
			t.Fatalf("open profile:\n%s", s)
		}
	}
	cfg := *f.s.cfg.Load()
	cfg.Profiles = maps.Clone(cfg.Profiles)
	p := *cfg.Profiles["default"]
	p.Enroll, p.Upper, p.UpperDiskSize = config.EnrollApprove, "iscsi", 64<<20
	cfg.Profiles["default"] = &p
	if err := f.s.Reload(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if s := f.script(fmt.Sprintf("02-00-00-00-00-%02x", i), "198.51.100.1"); strings.Contains(s, "/doc/") || !strings.Contains(s, "waits for approval") {
			t.Fatalf("admitted under open, booted under approve:\n%s", s)
		}
	}
}

// TestMadeUpMACs: fifty requests with made-up MACs create no disk under
// approve or login; under open-insecure the quota bounds them and a
// refusal creates nothing.
func TestMadeUpMACs(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		disks      int
	}{
		{"approve", iscsiUpper + "enroll = approve\n", 0},
		{"login", iscsiUpper + "enroll = login\n", 0},
		{"open-insecure with a quota", iscsiUpper + "enroll = open-insecure\nmax-disks = 5\n", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFix(t, tc.conf)
			refused := 0
			for i := 0; i < 50; i++ {
				remote := fmt.Sprintf("198.51.100.%d", i+1)
				s := f.script(fmt.Sprintf("02-00-00-00-00-%02x", i), remote)
				m := regexp.MustCompile(`http://10\.0\.2\.100(/doc/[0-9a-f]{64})`).FindStringSubmatch(s)
				if m == nil {
					continue
				}
				if r, _ := f.doc(m[1], remote); r.StatusCode == http.StatusForbidden {
					refused++
				}
			}
			ks, _ := f.s.db.Disks(context.Background())
			ents, _ := os.ReadDir(filepath.Join(f.dir, "data", "disks"))
			if len(ks) != tc.disks || len(ents) != tc.disks {
				t.Errorf("%d disk rows, %d disk directories; want %d", len(ks), len(ents), tc.disks)
			}
			if tc.disks > 0 && refused != 50-tc.disks {
				t.Errorf("%d refused past the quota, want %d", refused, 50-tc.disks)
			}
		})
	}
}

// loginFix is a login profile with one user.
func loginFix(t *testing.T, extra string) *fix {
	t.Helper()
	f := newFix(t, iscsiUpper+"enroll = login\nmenu = guest\nmenu-timeout = 5s\n"+extra+
		"[profile guest]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n")
	hash, err := enroll.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.db.AddUser(context.Background(), "alice", hash); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fix) loginURL(mac, remote string) string {
	f.t.Helper()
	return find(f.t, `chain --autofree http://10\.0\.2\.100(/login/[0-9a-f]{64})\?username=`, f.script(mac, remote))
}

func (f *fix) login(path, remote, user, pw string) string {
	f.t.Helper()
	q := url.Values{"username": {hex.EncodeToString([]byte(user))}, "password": {hex.EncodeToString([]byte(pw))}}
	return body(f.t, f.do(http.MethodGet, path+"?"+q.Encode(), remote, nil))
}

func TestLoginPersonalRoot(t *testing.T) {
	f := loginFix(t, "")
	ctx := context.Background()
	menu := f.script("52-54-00-00-00-01", "192.0.2.1")
	for _, want := range []string{"item login Log in", "item p-guest Boot guest", "choose --timeout 5000 --default login", "login || goto overboot-menu", "${username:hexraw}&password=${password:hexraw}", "/entry/"} {
		if !strings.Contains(menu, want) {
			t.Errorf("menu lacks %q:\n%s", want, menu)
		}
	}
	// A wrong password: back to the menu with a notice; nothing attached.
	path := f.loginURL("52-54-00-00-00-01", "192.0.2.1")
	wrong := f.login(path, "192.0.2.1", "alice", "battery staple")
	for _, want := range []string{"clear password", "wrong username or password", "set overboot-notice Wrong username or password", "chain --autofree http://10.0.2.100/ipxe?mac="} {
		if !strings.Contains(wrong, want) {
			t.Errorf("wrong password answer lacks %q:\n%s", want, wrong)
		}
	}
	if strings.Contains(wrong, "/doc/") {
		t.Fatal("a wrong password booted")
	}
	if again := f.login(path, "192.0.2.1", "alice", "correct horse"); strings.Contains(again, "/doc/") {
		t.Fatal("a login URL worked twice")
	}
	// A login URL spent from another address is refused.
	path = f.loginURL("52-54-00-00-00-01", "192.0.2.1")
	if s := f.login(path, "192.0.2.99", "alice", "correct horse"); !strings.Contains(s, "belongs to another machine") {
		t.Errorf("login from another address:\n%s", s)
	}
	// The right password: the user's boot, with their own disk.
	ok := f.login(path, "192.0.2.1", "alice", "correct horse")
	if !strings.Contains(ok, "clear password") || !strings.Contains(ok, "user alice") {
		t.Errorf("login answer:\n%s", ok)
	}
	_, doc1 := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, ok), "192.0.2.1")
	u1 := doc1.Upper.ISCSI
	if u1 == nil || !strings.HasPrefix(u1.Target, "iqn.2026-11.org.overboot:u-alice-d") || u1.CHAP.User != "u-alice" {
		t.Fatalf("user's disk: %+v", u1)
	}
	// The same user on another machine: the same disk, a new secret,
	// and the first machine's export ends.
	path = f.loginURL("52-54-00-00-00-02", "192.0.2.2")
	ok2 := f.login(path, "192.0.2.2", "alice", "correct horse")
	_, doc2 := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, ok2), "192.0.2.2")
	u2 := doc2.Upper.ISCSI
	if u2 == nil || u2.Target != u1.Target || u2.CHAP.Secret == u1.CHAP.Secret || u2.Initiator != "iqn.2026-11.org.overboot:i-525400000002" {
		t.Fatalf("second login: %+v (first %+v)", u2, u1)
	}
	tgt := f.s.disks.Target()
	if tgt.HasTarget(u1.Target, target.CHAP{User: u1.CHAP.User, Secret: target.Secret(u1.CHAP.Secret)}, u1.Initiator) {
		t.Error("the first machine's login still opens the user's disk")
	}
	if !tgt.HasTarget(u2.Target, target.CHAP{User: u2.CHAP.User, Secret: target.Secret(u2.CHAP.Secret)}, u2.Initiator) {
		t.Error("the second login's credentials do not open the user's disk")
	}
	ks, _ := f.s.db.DisksOf(ctx, state.OwnerUser, "alice")
	if len(ks) != 1 {
		t.Errorf("alice has %d disks, want 1", len(ks))
	}
	if strings.Contains(f.logs.String(), "correct horse") || strings.Contains(f.logs.String(), "battery") || strings.Contains(f.logs.String(), "password=") {
		t.Errorf("the log shows a password:\n%s", f.logs.String())
	}
	bs, _ := f.s.db.Boots(ctx, "52:54:00:00:00:02", 1)
	if len(bs) != 1 || bs[0].User != "alice" {
		t.Errorf("boot user: %+v", bs)
	}
	// A menu entry boots the other profile under its own policy (open).
	entry := find(t, `chain --autofree http://10\.0\.2\.100(/entry/[0-9a-f]{64}/guest)`, f.script("52-54-00-00-00-03", "192.0.2.3"))
	if s := body(t, f.do(http.MethodGet, entry, "192.0.2.3", nil)); !strings.Contains(s, "profile guest") || !strings.Contains(s, "overboot.doc=") {
		t.Errorf("entry guest:\n%s", s)
	}
}

func TestLoginRateLimited(t *testing.T) {
	f := loginFix(t, "")
	limited := false
	for i := 0; i < 8; i++ {
		remote := fmt.Sprintf("192.0.2.%d", 10+i) // several addresses, one user
		s := f.login(f.loginURL("52-54-00-00-00-01", remote), remote, "alice", "not it at all")
		if strings.Contains(s, "too many login attempts") {
			limited = true
			// The right password does not get through while limited.
			if s := f.login(f.loginURL("52-54-00-00-00-01", remote), remote, "alice", "correct horse"); strings.Contains(s, "/doc/") {
				t.Error("a limited user logged in")
			}
			break
		}
	}
	if !limited {
		t.Error("eight wrong passwords for one user were never limited")
	}
}

// TestLoginLockoutByMadeUpURLs: attempts with made-up or spent login
// URLs do not charge the user's limit (they used to: a few of them every
// 20 s kept a user out); and when a limit refuses, the log does not show
// what was typed as the user name (it may be a password).
func TestLoginLockoutByMadeUpURLs(t *testing.T) {
	f := loginFix(t, "")
	for i := range 50 {
		remote := fmt.Sprintf("198.51.100.%d", 1+i%50)
		made := fmt.Sprintf("/login/%064x", i)
		if s := f.login(made, remote, "alice", "guessing"); !strings.Contains(s, "unknown, used or expired URL") {
			t.Fatalf("a made-up login URL:\n%s", s)
		}
	}
	if s := f.login(f.loginURL("52-54-00-00-00-01", "192.0.2.1"), "192.0.2.1", "alice", "correct horse"); !strings.Contains(s, "/doc/") {
		t.Fatalf("made-up URLs locked the user out:\n%s", s)
	}
	// A throttled attempt whose user name is a secret typed in the wrong
	// field: the log says no such user.
	for i := range 8 {
		remote := fmt.Sprintf("192.0.2.%d", 100+i)
		f.login(f.loginURL("52-54-00-00-00-02", remote), remote, "hunter2secret", fmt.Sprint(i))
	}
	if !strings.Contains(f.logs.String(), "too many attempts for this user") || !strings.Contains(f.logs.String(), `user="(no such user)"`) {
		t.Fatalf("eight attempts for one name were not limited, or not logged as no such user:\n%s", f.logs.String())
	}
	if strings.Contains(f.logs.String(), "hunter2secret") {
		t.Errorf("the log shows what was typed as the user name:\n%s", f.logs.String())
	}
}

func TestLoginSanboot(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFix(t, "[profile classroom]\nsanboot = "+disk+"\nenroll = login\n[machine 52:54:00:00:00:01]\nprofile = classroom\n")
	hash, _ := enroll.HashPassword("correct horse")
	f.s.db.AddUser(context.Background(), "bob", hash)
	san := f.login(f.loginURL("52-54-00-00-00-01", "192.0.2.1"), "192.0.2.1", "bob", "correct horse")
	for _, want := range []string{"set username u-bob\n", "sanboot iscsi:10.0.2.100::3260:0:iqn.2026-11.org.overboot:u-bob-d"} {
		if !strings.Contains(san, want) {
			t.Errorf("sanboot script lacks %q:\n%s", want, san)
		}
	}
	if k, err := f.s.db.Disk(context.Background(), state.OwnerUser, "bob", "classroom"); err != nil || k.Kind != state.DiskCow {
		t.Errorf("bob's disk: %+v %v", k, err)
	}
}

// TestSanboot: a sanboot profile's script chains a single-use URL whose
// script sanboots the machine's copy-on-write disk with its CHAP; the disk
// is created on first boot and a reset drops its writes.
func TestSanboot(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFix(t, "[profile classroom]\nsanboot = "+disk+"\nenroll = open-insecure\n[machine 52:54:00:12:34:56]\nprofile = classroom\n")
	ctx := context.Background()
	const mac, me = "52:54:00:12:34:56", "192.0.2.10"
	path := find(t, `chain --autofree http://10\.0\.2\.100(/san/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", me))
	if r := f.do(http.MethodGet, "/doc/"+path[5:], me, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("a sanboot token fetched a boot document: %d", r.StatusCode)
	}
	path = find(t, `(/san/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", me))
	r := f.do(http.MethodGet, path, me, nil)
	san := body(t, r)
	if r.StatusCode != 200 {
		t.Fatalf("sanboot script: %d\n%s", r.StatusCode, san)
	}
	m, _ := f.s.db.Admission(ctx, mac, "classroom")
	for _, want := range []string{
		"set initiator-iqn iqn.2026-11.org.overboot:i-525400123456\n",
		"set username 52-54-00-12-34-56\n",
		"set password " + m.Secret + "\n",
		"set reverse-username t-52-54-00-12-34-56\n",
		"set reverse-password " + m.TargetSecret + "\n",
		"sanboot iscsi:10.0.2.100::3260:0:iqn.2026-11.org.overboot:m-525400123456-d",
	} {
		if !strings.Contains(san, want) {
			t.Errorf("sanboot script lacks %q:\n%s", want, san)
		}
	}
	if r := f.do(http.MethodGet, path, me, nil); r.StatusCode != http.StatusNotFound || !strings.Contains(body(t, r), "exit 1") {
		t.Errorf("a sanboot URL worked twice")
	}
	if strings.Contains(f.logs.String(), path[5:]) || strings.Contains(f.logs.String(), m.Secret) || !strings.Contains(f.logs.String(), "/san/[token]") {
		t.Errorf("the log shows the token or the secret, or not the request:\n%s", f.logs.String())
	}
	// The image changes: the machine's layer no longer fits.
	later := time.Now().Add(time.Hour)
	os.Chtimes(disk, later, later)
	path = find(t, `(/san/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", me))
	if r := f.do(http.MethodGet, path, me, nil); r.StatusCode != http.StatusConflict || !strings.Contains(body(t, r), "overboot machine reset 52:54:00:12:34:56") {
		t.Errorf("a changed image was served")
	}
	if _, err := f.s.disks.Reset(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac}); err != nil {
		t.Fatal(err)
	}
	path = find(t, `(/san/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", me))
	if r := f.do(http.MethodGet, path, me, nil); r.StatusCode != 200 {
		t.Errorf("after reset, over the new image: %d", r.StatusCode)
	}
}

func TestSanbootBadDisk(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "odd.raw")
	os.WriteFile(disk, make([]byte, 1000), 0o644)
	for _, path := range []string{disk, filepath.Join(dir, "missing.raw"), dir} {
		_, err := openConf(t, "[server]\ndata = "+dir+"/data\n[profile default]\nsanboot = "+path+"\nenroll = login\n")
		if err == nil || !strings.Contains(err.Error(), "t.conf:4: profile default: sanboot") {
			t.Errorf("%s: err = %v", path, err)
		}
	}
}

func openConf(t *testing.T, text string) (*Server, error) {
	t.Helper()
	cfg, err := config.Parse("t.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, nil)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func FuzzParseLoginForm(f *testing.F) {
	for _, s := range []string{"username=616c696365&password=78", "username=61&password=", "username=41", "password=70", "username=616c696365&username=626f62&password=78", "username=616c696365&password=00ff&x=1", "username=zz&password=00", "username=alice&password=x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		form, err := ParseLoginForm(q)
		if err != nil {
			return
		}
		if enroll.CheckUserName(form.User) != nil || len(form.Password) > enroll.MaxPasswordLen {
			t.Errorf("accepted %+v", form)
		}
	})
}

// TestIdentityInDocument: each machine gets its own host name, machine-id
// and host key, the same at its next boot when it was admitted (approve);
// under open the key is new at every boot (a MAC proves nothing) while
// the machine-id stays; the profile's templates are rendered for it.
func TestIdentityInDocument(t *testing.T) {
	tdir := t.TempDir()
	os.MkdirAll(filepath.Join(tdir, "etc"), 0o755)
	os.WriteFile(filepath.Join(tdir, "etc/motd"), []byte("{{.Hostname}} on {{.Profile}}\n"), 0o644)
	f := newFix(t, "enroll = approve\nfiles = "+tdir+"\n[profile kiosk]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n[machine 52:54:00:00:00:01]\nhostname = lab-01\n[machine 52:54:00:00:00:03]\nprofile = kiosk\n")
	ctx := context.Background()
	boot1 := func(mac, remote string) boot.Document {
		t.Helper()
		_, d := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script(mac, remote)), remote)
		if d.Identity == nil {
			t.Fatalf("%s: no identity", mac)
		}
		return d
	}
	for _, m := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		f.script(strings.ReplaceAll(m, ":", "-"), "192.0.2.1")
		if _, err := f.s.db.Approve(ctx, m, "default", "192.0.2.1", state.Quota{}); err != nil {
			t.Fatal(err)
		}
	}
	a1, b1 := boot1("52-54-00-00-00-01", "192.0.2.1"), boot1("52-54-00-00-00-02", "192.0.2.1")
	a2 := boot1("52-54-00-00-00-01", "192.0.2.1")
	key := func(d boot.Document) string {
		for _, fl := range d.Identity.Files {
			if fl.Path == identity.HostKeyPath {
				if fl.Mode != 0o600 {
					t.Errorf("host key mode %o", fl.Mode)
				}
				return fl.Data
			}
		}
		t.Fatalf("no host key in %+v", d.Identity)
		return ""
	}
	if a1.Identity.Hostname != "lab-01" || b1.Identity.Hostname != "ob-525400000002" {
		t.Errorf("host names: %q %q", a1.Identity.Hostname, b1.Identity.Hostname)
	}
	if a1.Identity.MachineID == b1.Identity.MachineID || key(a1) == key(b1) {
		t.Error("two machines share a machine-id or a host key")
	}
	if a2.Identity.MachineID != a1.Identity.MachineID || key(a2) != key(a1) {
		t.Error("an admitted machine's identity changed between its boots")
	}
	var motd string
	for _, fl := range a1.Identity.Files {
		if fl.Path == "/etc/motd" {
			motd = fl.Data
		}
	}
	if motd != "lab-01 on default\n" {
		t.Errorf("template: %q", motd)
	}
	// Open: the key is new at every boot, the machine-id is kept.
	k1, k2 := boot1("52-54-00-00-00-03", "192.0.2.3"), boot1("52-54-00-00-00-03", "192.0.2.3")
	if key(k1) == key(k2) || k1.Identity.MachineID != k2.Identity.MachineID {
		t.Errorf("open profile: keys equal %v, machine-ids %s %s", key(k1) == key(k2), k1.Identity.MachineID, k2.Identity.MachineID)
	}
	if strings.Contains(f.logs.String(), "PRIVATE KEY") {
		t.Error("a private key in the log")
	}
}

// TestBaseURL6: with url and url6 both set, a machine that reached us over
// IPv6 gets URLs with url6 (an IPv6-only machine cannot use url), one that
// came over IPv4 (also on a dual-stack socket) gets url.
func TestBaseURL6(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i", "r"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	s, err := openConf(t, fmt.Sprintf("[server]\ndata = %[1]s/data\nurl = http://192.0.2.1\nurl6 = http://[2001:db8::1]\n\n[profile default]\nkernel = %[1]s/k\ninitramfs = %[1]s/i\nroot = %[1]s/r\n", dir))
	if err != nil {
		t.Fatal(err)
	}
	for local, want := range map[string]string{
		"[2001:db8::1]:80":      "http://[2001:db8::1]",
		"192.0.2.1:80":          "http://192.0.2.1",
		"[::ffff:192.0.2.1]:80": "http://192.0.2.1",
		"[fe80::1%br0]:80":      "http://[2001:db8::1]",
	} {
		r := httptest.NewRequest("GET", "/boot.ipxe", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))))
		if got, err := s.base(r); err != nil || got != want {
			t.Errorf("request to %s: base %q %v, want %q", local, got, err, want)
		}
	}
}

// TestLazyDocument: a profile with lower-mode lazy gets a document naming
// the image's dm-verity tree, which the server made, serves with Range and
// veritysetup accepts; no tree is served that was not made.
func TestLazyDocument(t *testing.T) {
	img := make([]byte, 64*4096)
	for i := range img {
		img[i] = byte(i * 7 / 4096)
	}
	f := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n[machine 52:54:00:12:34:57]\nprofile = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	script := f.script("52-54-00-12-34-57", "192.0.2.10")
	_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "")
	h := doc.Lower.HTTP
	if h == nil || h.Mode != boot.LowerLazy || h.Verity == nil || h.Size != int64(len(img)) {
		t.Fatalf("lower: %+v", h)
	}
	treePath := strings.TrimPrefix(h.Verity.HashURL, "http://10.0.2.100")
	r := f.get(treePath)
	tree, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || int64(len(tree)) != h.Verity.HashSize || r.Header.Get("ETag") != `"`+h.Verity.HashDigest.String()+`"` {
		t.Fatalf("GET %s: %d, %d bytes, %v", treePath, r.StatusCode, len(tree), r.Header)
	}
	if r := f.get(treePath, "Range", "bytes=4096-"); r.StatusCode != 206 {
		t.Errorf("Range: %d", r.StatusCode)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "img"), img, 0o644)
	os.WriteFile(filepath.Join(dir, "tree"), tree, 0o644)
	if out, err := exec.Command("veritysetup", "verify", filepath.Join(dir, "img"), filepath.Join(dir, "tree"), h.Verity.RootHash).CombinedOutput(); err != nil {
		t.Errorf("veritysetup verify (apt-get install cryptsetup-bin): %v\n%s", err, out)
	}
	if r := f.get(TreePrefix + f.arts().Kernel.Digest.Hex()); r.StatusCode != 404 {
		t.Errorf("a tree never made: %d", r.StatusCode)
	}
	if r := f.get(TreePrefix + "../../etc/passwd"); r.StatusCode == 200 {
		t.Errorf("traversal: %d", r.StatusCode)
	}
}

// TestLazyProfileRefused: a profile that reads an image on demand whose
// image is not padded to 4 KiB is an error of the configuration, naming
// its line, at start.
func TestLazyProfileRefused(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i", "r"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	_, err := openConf(t, fmt.Sprintf("[server]\ndata = %[1]s/data\n\n[profile default]\nkernel = %[1]s/k\ninitramfs = %[1]s/i\nroot = %[1]s/r\nlower-mode = fill\n", dir))
	if err == nil || !strings.Contains(err.Error(), "t.conf:8: profile default: lower-mode fill") || !strings.Contains(err.Error(), "not a multiple of 4096") {
		t.Errorf("err = %v", err)
	}
}

// TestISCSIRecoveryParam: a profile's iscsi-recovery reaches the kernel
// command line as overboot.iscsi.recovery; without it the agent's default
// applies and the script says nothing.
func TestISCSIRecoveryParam(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = open-insecure\niscsi-recovery = 90s\n[profile plain]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\nenroll = open-insecure\n[machine 52:54:00:12:34:58]\nprofile = plain\n")
	if s := f.script("52-54-00-12-34-57", "192.0.2.10"); !strings.Contains(s, " overboot.iscsi.recovery=1m30s") {
		t.Errorf("the script lacks overboot.iscsi.recovery=1m30s:\n%s", s)
	}
	if s := f.script("52-54-00-12-34-58", "192.0.2.11"); strings.Contains(s, "overboot.iscsi.recovery") {
		t.Errorf("a profile without iscsi-recovery sets it:\n%s", s)
	}
}

// TestUnservableBootRecorded: a boot the server cannot serve (its root's
// name now points at a blob the store does not have, published behind
// the API's back) is a failed boot with the server's message, where machine show and the
// status page look, not only a line in the server's log.
func TestUnservableBootRecorded(t *testing.T) {
	f := newFixPre(t, "[profile named]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = demo\n[machine 52:54:00:00:00:31]\nprofile = named\n", func(data string) {
		publishFile(t, data, "demo", "root", squashfsBlob("v1"))
	})
	ctx := context.Background()
	if _, err := f.s.db.PublishImage(ctx, state.Image{Name: "demo", Digest: "sha256:" + strings.Repeat("9", 64), Size: 4096, Kind: "root"}); err != nil {
		t.Fatal(err)
	}
	r := f.do(http.MethodGet, "/ipxe?mac=52-54-00-00-00-31", "192.0.2.31", nil)
	if b := body(t, r); r.StatusCode != http.StatusInternalServerError || !strings.Contains(b, "exit 1") {
		t.Fatalf("script: %d %s", r.StatusCode, b)
	}
	bs, err := f.s.db.Boots(ctx, "52:54:00:00:00:31", 1)
	if err != nil || len(bs) != 1 || bs[0].Outcome != "failed" || !strings.Contains(bs[0].Message, "profile named") {
		t.Fatalf("the failure is not a boot: %+v %v", bs, err)
	}
	rows := body(t, f.get("/status/rows", "Authorization", "Bearer "+newAdmin(f).tok))
	if !strings.Contains(rows, `"error":"profile named`) {
		t.Errorf("the status rows do not show it: %s", rows)
	}
}

// TestRestartExportsDisks: a server that restarts exports again the disks
// its machines were using, with the same credentials, to the same
// initiator: a running machine's keeper finds its target and logs in
// again (before, the restarted server knew no target until the machine
// rebooted).
func TestRestartExportsDisks(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = open-insecure\n")
	const me = "192.0.2.10"
	_, doc := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", me)), me)
	u := doc.Upper.ISCSI
	cfg := f.s.cfg.Load()
	f.s.Close()
	s2, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	chap := target.CHAP{User: u.CHAP.User, Secret: target.Secret(u.CHAP.Secret)}
	if !s2.disks.Target().HasTarget(u.Target, chap, u.Initiator) {
		t.Fatal("the restarted server does not export the machine's disk")
	}
}
