package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

// admin is an API client with a token.
type admin struct {
	f   *fix
	tok string
}

func newAdmin(f *fix) *admin {
	f.t.Helper()
	tok, _, err := enroll.NewAPIToken(context.Background(), f.s.db, "test", enroll.ScopeAdmin)
	if err != nil {
		f.t.Fatal(err)
	}
	return &admin{f: f, tok: tok}
}

// call sends an API request from loopback and decodes the JSON answer.
func (a *admin) call(method, path, reqBody string, out any) (int, string) {
	a.f.t.Helper()
	var r io.Reader
	if reqBody != "" {
		r = strings.NewReader(reqBody)
	}
	resp := a.f.do(method, api.Prefix+path, "127.0.0.1", r, "Authorization", "Bearer "+a.tok)
	b := body(a.f.t, resp)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			a.f.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, b
}

func TestAPIAuth(t *testing.T) {
	f := newFix(t, "")
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer obt_0000000000000000_" + strings.Repeat("0", 64)}, {"Authorization", "Basic YWRtaW46YWRtaW4="}} {
		// Loopback grants nothing.
		r := f.do(http.MethodGet, "/api/v1/machines", "127.0.0.1", nil, hdr...)
		if b := body(t, r); r.StatusCode != http.StatusUnauthorized || !strings.Contains(b, `"error"`) || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%v: %d %s", hdr, r.StatusCode, b)
		}
	}
	a := newAdmin(f)
	if c, b := a.call(http.MethodGet, "/machines", "", nil); c != 200 {
		t.Errorf("with a token: %d %s", c, b)
	}
	if c, b := a.call(http.MethodGet, "/nope", "", nil); c != 404 || !strings.Contains(b, "no such API call") {
		t.Errorf("unknown call: %d %s", c, b)
	}
	// A revoked token stops working.
	var tokens []state.APIToken
	a.call(http.MethodGet, "/tokens", "", &tokens)
	if len(tokens) != 1 {
		t.Fatalf("tokens: %+v", tokens)
	}
	if c, _ := a.call(http.MethodDelete, "/tokens/"+tokens[0].ID, "", nil); c != 200 {
		t.Fatalf("revoke: %d", c)
	}
	if c, _ := a.call(http.MethodGet, "/machines", "", nil); c != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d", c)
	}
}

// TestAPIMachines: approve, reset, rotate, delete; a typo in the action
// is refused before anything is touched (it used to end the machine's
// sessions first).
func TestAPIMachines(t *testing.T) {
	f := newFix(t, iscsiUpper+"enroll = approve\n")
	a := newAdmin(f)
	ctx := context.Background()
	const mac = "52:54:00:12:34:56"
	f.script("52-54-00-12-34-56", "192.0.2.10")
	var m api.Approval
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-56/approve", "", &m); c != 200 || m.Policy != state.PolicyApprove || m.Address != "192.0.2.10" || !m.Rotated {
		t.Fatalf("approve: %d %s", c, b)
	}
	_, doc := f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, f.script("52-54-00-12-34-56", "192.0.2.10")), "192.0.2.10")
	u := doc.Upper.ISCSI
	chap := target.CHAP{User: u.CHAP.User, Secret: target.Secret(u.CHAP.Secret)}
	tgt := f.s.disks.Target()
	if !tgt.HasTarget(u.Target, chap, u.Initiator) {
		t.Fatal("the machine's disk is not exported")
	}
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-56/rset", "", nil); c != 404 || !strings.Contains(b, "no such API call") {
		t.Errorf("typo: %d %s", c, b)
	}
	if !tgt.HasTarget(u.Target, chap, u.Initiator) {
		t.Error("a typo ended the machine's export")
	}
	if c, b := a.call(http.MethodPost, "/machines/zz/reset", "", nil); c != 400 || !strings.Contains(b, `not a MAC address`) {
		t.Errorf("bad MAC: %d %s", c, b)
	}
	var d api.MachineDetail
	if c, _ := a.call(http.MethodGet, "/machines/"+mac, "", &d); c != 200 || len(d.Boots) != 1 || len(d.Disks) != 1 || len(d.Events) == 0 {
		t.Errorf("show: %d %+v", c, d)
	}
	if c, b := a.call(http.MethodPost, "/machines/"+mac+"/rotate", "", nil); c != 200 || strings.Contains(b, u.CHAP.Secret) {
		t.Errorf("rotate: %d %s", c, b)
	}
	if tgt.HasTarget(u.Target, chap, u.Initiator) {
		t.Error("rotate kept the old secret's export")
	}
	if adm, _ := f.s.db.Admission(ctx, mac, "default"); adm.Secret == u.CHAP.Secret {
		t.Error("rotate kept the secret")
	}
	var res map[string]any
	if c, _ := a.call(http.MethodPost, "/machines/"+mac+"/reset", "", &res); c != 200 || res["disks_removed"] != float64(1) {
		t.Errorf("reset: %d %v", c, res)
	}
	if _, err := os.Stat(d.Disks[0].Path); !os.IsNotExist(err) {
		t.Error("reset kept the disk file")
	}
	if c, _ := a.call(http.MethodDelete, "/machines/"+mac, "", nil); c != 200 {
		t.Errorf("delete: %d", c)
	}
	if c, b := a.call(http.MethodDelete, "/machines/"+mac, "", nil); c != 404 || !strings.Contains(b, "not found") {
		t.Errorf("delete again: %d %s", c, b)
	}
}

func TestAPIUsers(t *testing.T) {
	f := loginFix(t, "")
	a := newAdmin(f)
	for _, tc := range []struct{ body, want string }{
		{`{"name":"Bob","password":"long enough"}`, "user name"},
		{`{"name":"bob","password":"short"}`, "at least 8"},
		{`{"name":"bob","password":"long enough","admin":true}`, "unknown field"},
		{`{"name":"bob","password":"long enough"} {}`, "trailing data"},
		{`{"name":"alice","password":"long enough"}`, "already exists"},
	} {
		if c, b := a.call(http.MethodPost, "/users", tc.body, nil); c < 400 || !strings.Contains(b, tc.want) {
			t.Errorf("%s: %d %s", tc.body, c, b)
		}
	}
	if n, _ := f.s.db.CountUsers(context.Background()); n != 1 {
		t.Fatalf("refused requests added users: %d", n)
	}
	if c, b := a.call(http.MethodPost, "/users", `{"name":"bob","password":"long enough"}`, nil); c != 201 || strings.Contains(b, "argon2") {
		t.Errorf("add: %d %s", c, b)
	}
	if c, _ := a.call(http.MethodPut, "/users/bob/password", `{"password":"another one"}`, nil); c != 200 {
		t.Errorf("passwd: %d", c)
	}
	// Bob logs in with the new password and gets a disk; deleting him
	// removes it.
	ok := f.login(f.loginURL("52-54-00-00-00-05", "192.0.2.5"), "192.0.2.5", "bob", "another one")
	f.doc(find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, ok), "192.0.2.5")
	var users []api.UserView
	a.call(http.MethodGet, "/users", "", &users)
	if len(users) != 2 || users[1].Name != "bob" || len(users[1].Disks) != 1 {
		t.Fatalf("users: %+v", users)
	}
	if c, _ := a.call(http.MethodDelete, "/users/bob", "", nil); c != 200 {
		t.Errorf("delete: %d", c)
	}
	if _, err := os.Stat(users[1].Disks[0].Path); !os.IsNotExist(err) {
		t.Error("deleting a user kept their disk")
	}
}

// TestAPIImages: a name published through the API is what the next
// script boots, with no restart; history and rollback; gc keeps what a
// name's history refers to and removes the rest.
func TestAPIImages(t *testing.T) {
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
	if c, b := a.call(http.MethodPost, "/blobs", squashfsBlob("version 2"), &blob); c != 201 || blob.Kind != "root" {
		t.Fatalf("upload: %d %s", c, b)
	}
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"sha256:`+strings.Repeat("1", 64)+`"}`, nil); c != 404 || !strings.Contains(b, "upload it first") {
		t.Errorf("publish a missing blob: %d %s", c, b)
	}
	if c, b := a.call(http.MethodPost, "/images", `{"name":"Demo!","digest":"`+blob.Digest+`"}`, nil); c != 400 || !strings.Contains(b, "name") {
		t.Errorf("publish a bad name: %d %s", c, b)
	}
	var im state.Image
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"`+blob.Digest+`"}`, &im); c != 201 || im.Version != 2 {
		t.Fatalf("publish: %d %s", c, b)
	}
	if got := rootOf(); got != blob.Digest {
		t.Errorf("the next boot got %s, want the new version %s", got, blob.Digest)
	}
	if c, _ := a.call(http.MethodPost, "/images/demo/rollback", `{}`, &im); c != 201 || im.Version != 3 || im.Digest != v1 || im.Note != "rollback to 1" {
		t.Errorf("rollback: %d %+v", c, im)
	}
	if got := rootOf(); got != v1 {
		t.Errorf("after rollback the next boot got %s, want %s", got, v1)
	}
	var hist []state.Image
	if a.call(http.MethodGet, "/images/demo", "", &hist); len(hist) != 3 {
		t.Errorf("history: %+v", hist)
	}
	if c, b := a.call(http.MethodPost, "/images/demo/rollback", `{"version":9}`, nil); c != 400 || !strings.Contains(b, "no version 9") {
		t.Errorf("rollback to nothing: %d %s", c, b)
	}
	// An unreferenced upload goes after the grace period; the versions
	// and the configuration's files stay.
	var orphan api.BlobView
	a.call(http.MethodPost, "/blobs", "nobody wants me", &orphan)
	var gc api.GCResult
	if c, b := a.call(http.MethodPost, "/gc", `{"grace":"0s"}`, &gc); c != 200 || len(gc.Removed) != 1 || gc.Removed[0] != orphan.Digest {
		t.Errorf("gc: %d %s", c, b)
	}
	if got := rootOf(); got != v1 {
		t.Errorf("after gc: %s", got)
	}
	if r := f.get("/blobs/sha256/" + strings.TrimPrefix(blob.Digest, "sha256:")); r.StatusCode != 200 {
		t.Errorf("gc removed a blob in a name's history: %d", r.StatusCode)
	}
}

// squashfsBlob returns 4 KiB that pass for a squashfs image (its
// superblock is sound), with note after the superblock.
func squashfsBlob(note string) string {
	b := make([]byte, 4096)
	copy(b, "hsqs")
	binary.LittleEndian.PutUint32(b[12:], 128<<10) // block size
	binary.LittleEndian.PutUint16(b[22:], 17)      // its log
	binary.LittleEndian.PutUint16(b[28:], 4)       // version 4
	binary.LittleEndian.PutUint64(b[40:], 4096)    // bytes used
	copy(b[96:], note)
	return string(b)
}

// TestAPIPublishChecks: a blob is published only as what its content is
// (a config file is no root, a text file no kernel); a disk only when
// asked for. A refusal names the blob and what it is, and the name's
// history stays as it was.
func TestAPIPublishChecks(t *testing.T) {
	f := newFixPre(t, "[profile named]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = demo\n", func(data string) {
		publishFile(t, data, "demo", "root", squashfsBlob("version 1"))
	})
	a := newAdmin(f)
	upload := func(content string) string {
		t.Helper()
		var blob api.BlobView
		if c, b := a.call(http.MethodPost, "/blobs", content, &blob); c != 201 {
			t.Fatalf("upload: %d %s", c, b)
		}
		return blob.Digest
	}
	history := func() []state.Image {
		t.Helper()
		h, err := f.s.db.ImageHistory(context.Background(), "demo")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := history()
	conf := upload("[server]\ndata = /var/lib/overboot\n\n[profile default]\nkernel = vmlinuz\nroot = demo\n")
	short := upload(squashfsBlob("cut")[:2000])
	kernel := upload(string(append(make([]byte, 0x202), "HdrS-and-more-of-a-kernel-than-this"...)) + strings.Repeat("k", 4096))
	for _, c := range []struct{ name, req, want string }{
		{"a config file as a root", `{"name":"demo","digest":"` + conf + `","kind":"root"}`,
			"blob " + conf + " is text, not a root (squashfs)"},
		{"a config file, no kind", `{"name":"demo","digest":"` + conf + `"}`,
			"blob " + conf + " is text, not a squashfs root, a kernel or an initramfs; say --kind disk"},
		{"a text file as a kernel", `{"name":"demo","digest":"` + conf + `","kind":"kernel"}`,
			"is text, not a kernel (x86 bzImage)"},
		{"a kernel as a root", `{"name":"demo","digest":"` + kernel + `","kind":"root"}`,
			"is a kernel (bzImage), not a root (squashfs)"},
		{"a squashfs cut short", `{"name":"demo","digest":"` + short + `"}`,
			"is a squashfs image that says it has 4096 bytes, in a blob of 2000 (cut short?), not a root (squashfs)"},
		{"a squashfs as an initramfs", `{"name":"demo","digest":"` + upload(squashfsBlob("v3")) + `","kind":"initramfs"}`,
			"is a squashfs image, not an initramfs"},
	} {
		c0, b := a.call(http.MethodPost, "/images", c.req, nil)
		if c0 != http.StatusBadRequest || !strings.Contains(b, c.want) {
			t.Errorf("%s: %d %s, want 400 and %q", c.name, c0, b, c.want)
		}
	}
	if h := history(); len(h) != len(before) || h[0].Digest != before[0].Digest {
		t.Errorf("refused publishes changed the history: %+v, was %+v", h, before)
	}
	// What the content is, and a disk when asked for.
	var im state.Image
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"`+upload(squashfsBlob("v4"))+`"}`, &im); c != 201 || im.Kind != "root" || im.Version != 2 {
		t.Errorf("a squashfs: %d %s", c, b)
	}
	if c, b := a.call(http.MethodPost, "/images", `{"name":"k","digest":"`+kernel+`"}`, &im); c != 201 || im.Kind != "kernel" {
		t.Errorf("a kernel: %d %s", c, b)
	}
	if c, b := a.call(http.MethodPost, "/images", `{"name":"notes","digest":"`+conf+`","kind":"disk"}`, &im); c != 201 || im.Kind != "disk" {
		t.Errorf("text as a disk, asked for: %d %s", c, b)
	}
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"`+conf+`","kind":"iso"}`, nil); c != 400 || !strings.Contains(b, "want root, kernel, initramfs or disk") {
		t.Errorf("kind iso: %d %s", c, b)
	}
	// A name keeps its kind: an initramfs, a sound one, under the root's
	// name would fail every boot of the profile.
	initrd := upload("070701" + strings.Repeat("0", 4090))
	if c, b := a.call(http.MethodPost, "/images", `{"name":"demo","digest":"`+initrd+`"}`, nil); c != http.StatusConflict || !strings.Contains(b, "image demo is a root, this is a initramfs: publish it under another name") {
		t.Errorf("a kind change: %d %s", c, b)
	}
	if h := history(); len(h) != len(before)+1 {
		t.Errorf("history: %+v", h)
	}
}

func TestAPIBackup(t *testing.T) {
	f := loginFix(t, "")
	a := newAdmin(f)
	r := f.do(http.MethodGet, api.Prefix+"/backup", "127.0.0.1", nil, "Authorization", "Bearer "+a.tok)
	if r.StatusCode != 200 {
		t.Fatalf("backup: %d", r.StatusCode)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	b, _ := io.ReadAll(r.Body)
	os.WriteFile(dst, b, 0o600)
	c, err := state.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.User(context.Background(), "alice"); err != nil {
		t.Errorf("the backup lacks alice: %v", err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"bob","password":"x"}`, `{"name":1}`, `{}`, `{"name":"a"} x`, `[`, `{"password":"p","extra":true}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, v := range []any{&api.UserRequest{}, &api.PublishRequest{}, &api.RollbackRequest{}, &api.GCRequest{}, &api.TokenRequest{}} {
			if err := api.DecodeJSON(strings.NewReader(in), v); err == nil {
				if b, _ := json.Marshal(v); len(b) > api.MaxBody*2 {
					t.Errorf("decoded more than it was given")
				}
			}
		}
	})
}

// TestExplain: the API says which profile a machine boots, by which rule
// at which line; a boot from that subnet gets that profile.
func TestExplain(t *testing.T) {
	f := newFix(t, "[profile lab]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/root\n[subnet 192.0.2.0/24]\nprofile = lab\n[select uefi]\nplatform = efi\nprofile = lab\n")
	a := newAdmin(f)
	var e api.Explanation
	if c, b := a.call(http.MethodGet, "/machines/52-54-00-00-00-01/explain?ip=192.0.2.9", "", &e); c != 200 || e.Because != "profile lab because subnet 192.0.2.0/24 at test.conf:13" {
		t.Errorf("explain: %d %s", c, b)
	}
	if c, b := a.call(http.MethodGet, "/machines/52-54-00-00-00-01/explain?platform=efi&ip=198.51.100.1", "", &e); c != 200 || e.Rule != "select uefi" {
		t.Errorf("explain select: %d %s", c, b)
	}
	if c, b := a.call(http.MethodGet, "/machines/52-54-00-00-00-01/explain?ip=198.51.100.1", "", &e); c != 200 || e.Profile != "default" || e.Enroll != "open" {
		t.Errorf("explain default: %d %s", c, b)
	}
	if c, b := a.call(http.MethodGet, "/machines/52-54-00-00-00-01/explain?ip=nope", "", nil); c != 400 || !strings.Contains(b, `ip \"nope\"`) {
		t.Errorf("bad ip: %d %s", c, b)
	}
	if c, b := a.call(http.MethodGet, "/machines/52-54-00-00-00-01/explain?mac=x", "", nil); c != 400 || !strings.Contains(b, "query parameter") {
		t.Errorf("bad query: %d %s", c, b)
	}
	if s := f.script("52-54-00-00-00-02", "192.0.2.50"); !strings.Contains(s, "profile lab") {
		t.Errorf("a boot from the subnet:\n%s", s)
	}
	// Without an ip, the machine's last address stands in.
	if c, _ := a.call(http.MethodGet, "/machines/52-54-00-00-00-02/explain", "", &e); c != 200 || e.Profile != "lab" {
		t.Errorf("explain from the last address: %+v", e)
	}
}

// TestAPIMachinesConfigured: the machines the configuration names are
// listed before they boot; and the metrics a dashboard names are there,
// at zero, before the first boot.
func TestAPIMachinesConfigured(t *testing.T) {
	f := newFix(t, "[machine 52:54:00:00:00:77]\nprofile = default\nhostname = lab-77\n")
	a := newAdmin(f)
	var ms []api.MachineView
	if c, b := a.call(http.MethodGet, "/machines", "", &ms); c != 200 || len(ms) != 1 || ms[0].MAC != "52:54:00:00:00:77" || !ms[0].NeverBooted || !ms[0].Configured || ms[0].Hostname != "lab-77" {
		t.Fatalf("machines: %d %s", c, b)
	}
	f.script("52-54-00-00-00-77", "192.0.2.77")
	ms = nil
	a.call(http.MethodGet, "/machines", "", &ms)
	if len(ms) != 1 || ms[0].NeverBooted || !ms[0].Configured || ms[0].Address != "192.0.2.77" {
		t.Errorf("after its first request: %+v", ms)
	}
	m := body(t, newFix(t, "").get("/metrics"))
	for _, want := range []string{`overboot_boots_total{outcome="ok"} 0`, `overboot_boots_total{outcome="failed"} 0`, `overboot_refusals_total{reason="conflict"} 0`, `overboot_logins_total{outcome="wrong"} 0`, `overboot_boot_phase_seconds_count{phase="lower"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics before the first boot lack %q", want)
		}
	}
}

// TestAPIApproveTPM: a TPM is approved by the EK the administrator saw;
// one put in its place meanwhile is not; --ek with an address is refused;
// a plain approve of a pinned TPM records its baseline again.
func TestAPIApproveTPM(t *testing.T) {
	f := newFix(t, "enroll = approve\n")
	a := newAdmin(f)
	ctx := context.Background()
	const mac = "52:54:00:12:34:57"
	ekA, ekB := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-57/approve", `{"ek":"`+ekA+`"}`, nil); c != 404 || !strings.Contains(b, "no TPM of it has shown itself") {
		t.Errorf("approve an unknown TPM: %d %s", c, b)
	}
	if err := f.s.db.AskTPM(ctx, mac, ekA, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.db.AskTPM(ctx, mac, ekB, "192.0.2.66"); err != nil { // someone else, meanwhile
		t.Fatal(err)
	}
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-57/approve", `{"ek":"`+ekA+`"}`, nil); c != 409 || !strings.Contains(b, ekB+" (from 192.0.2.66)") {
		t.Errorf("approve the EK seen after another replaced it: %d %s", c, b)
	}
	if tp, _ := f.s.db.TPMOf(ctx, mac); tp.EK != "" {
		t.Fatalf("a refused approval pinned %s", tp.EK)
	}
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-57/approve", `{"ek":"`+ekA+`","address":"192.0.2.10"}`, nil); c != 400 || !strings.Contains(b, "by its EK alone") {
		t.Errorf("ek with an address: %d %s", c, b)
	}
	var ap api.Approval
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-57/approve", `{"ek":"`+ekB+`"}`, &ap); c != 200 || ap.TPM == nil || ap.TPM.EK != ekB {
		t.Fatalf("approve the waiting EK by name: %d %s", c, b)
	}
	f.s.db.SetTPMBaseline(ctx, mac, ekB, `{"0":"00"}`)
	if c, b := a.call(http.MethodPost, "/machines/52-54-00-12-34-57/approve", "", &ap); c != 200 || ap.TPM == nil || ap.TPM.EK != ekB {
		t.Fatalf("approve the pinned TPM again: %d %s", c, b)
	}
	if tp, _ := f.s.db.TPMOf(ctx, mac); tp.Baseline != "" {
		t.Errorf("approving again kept the baseline %q", tp.Baseline)
	}
}
