package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
)

func TestISCSIUpperDocument(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "ROOT"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	conf := "[server]\ndata = " + dir + "/data\n[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\nupper = iscsi\nupper-disk-size = 64M\n"
	cfg, err := config.Parse("t.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := blobstore.Open(filepath.Join(dir, "data"))
	s, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.NeedsISCSI() {
		t.Fatal("NeedsISCSI = false")
	}
	h := s.Handler()
	script := body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	m := regexp.MustCompile(`overboot\.doc=http://10\.0\.2\.100/doc/([0-9a-f]{48})`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no document URL in the script:\n%s", script)
	}
	if strings.Contains(script, "overboot.lower=") {
		t.Errorf("doc mode and a lower on the command line:\n%s", script)
	}
	r := get(t, h, "/doc/"+m[1])
	if r.StatusCode != 200 {
		t.Fatalf("document: %d %s", r.StatusCode, body(t, r))
	}
	doc, err := boot.ParseDocument(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	u := doc.Upper.ISCSI
	if u == nil || u.Portal != "10.0.2.100:3260" || u.Target != "iqn.2026-11.org.overboot:m-525400123456" || u.Initiator != "iqn.2026-11.org.overboot:i-525400123456" || u.CHAP == nil || len(u.CHAP.Secret) < 12 {
		t.Fatalf("upper: %+v", u)
	}
	if doc.Lower.HTTP == nil || doc.Lower.HTTP.Size != 4 {
		t.Errorf("lower: %+v", doc.Lower)
	}
	if r := get(t, h, "/doc/"+m[1]); r.StatusCode != http.StatusNotFound {
		t.Errorf("a token worked twice: %d", r.StatusCode)
	}
	secret := filepath.Join(dir, "data", "machines", "52-54-00-12-34-56", "secret")
	if fi, err := os.Stat(secret); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(filepath.Dir(secret), "upper.img")); err != nil || fi.Size() != 64<<20 {
		t.Errorf("upper disk: %v %v", fi, err)
	}
}

func TestMachineActions(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "ROOT"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	conf := "[server]\ndata = " + dir + "/data\n[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\nupper = iscsi\nupper-disk-size = 64M\n"
	cfg, _ := config.Parse("t.conf", strings.NewReader(conf))
	st, _ := blobstore.Open(filepath.Join(dir, "data"))
	s, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	script := body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	tok := regexp.MustCompile(`/doc/([0-9a-f]{48})`).FindStringSubmatch(script)[1]
	get(t, h, "/doc/"+tok)
	mdir := filepath.Join(dir, "data", "machines", "52-54-00-12-34-56")
	secret1, _ := os.ReadFile(filepath.Join(mdir, "secret"))
	do := func(method, path, remote string) int {
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := do("POST", "/api/machines/52:54:00:12:34:56/reset", "192.0.2.7:4000"); code != http.StatusForbidden {
		t.Errorf("reset from the network: %d", code)
	}
	if code := do("POST", "/api/machines/52:54:00:12:34:56/reset", "127.0.0.1:4000"); code != 200 {
		t.Fatalf("reset: %d", code)
	}
	if _, err := os.Stat(filepath.Join(mdir, "upper.img")); !os.IsNotExist(err) {
		t.Errorf("reset kept the disk")
	}
	if code := do("POST", "/api/machines/52:54:00:12:34:56/rotate", "127.0.0.1:4000"); code != 200 {
		t.Fatalf("rotate: %d", code)
	}
	if secret2, _ := os.ReadFile(filepath.Join(mdir, "secret")); string(secret2) == string(secret1) {
		t.Errorf("rotate kept the secret")
	}
	if code := do("DELETE", "/api/machines/52:54:00:12:34:56", "127.0.0.1:4000"); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := os.Stat(mdir); !os.IsNotExist(err) {
		t.Errorf("delete kept the machine's directory")
	}
	if code := do("DELETE", "/api/machines/52:54:00:12:34:56", "127.0.0.1:4000"); code != http.StatusNotFound {
		t.Errorf("delete of an unknown machine: %d", code)
	}
	if code := do("POST", "/api/machines/zz/reset", "127.0.0.1:4000"); code != http.StatusBadRequest {
		t.Errorf("bad MAC: %d", code)
	}
}

// TestSanboot: a sanboot profile's script chains a single-use URL whose
// script sanboots the machine's copy-on-write disk with its CHAP; the disk
// is created on first boot and reset drops its writes.
func TestSanboot(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "[server]\ndata = " + dir + "/data\niscsi-portal = 10.0.2.100:3260\n[profile default]\nsanboot = " + disk + "\n"
	cfg, err := config.Parse("t.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := blobstore.Open(filepath.Join(dir, "data"))
	var logs strings.Builder
	s, err := New(cfg, st, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !s.NeedsISCSI() {
		t.Fatal("NeedsISCSI = false for a sanboot profile")
	}
	h := s.Handler()
	script := body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	m := regexp.MustCompile(`chain --autofree (http://10\.0\.2\.100/san/([0-9a-f]{48}))`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no single-use sanboot URL in the script:\n%s", script)
	}
	if r := get(t, h, "/doc/"+m[2]); r.StatusCode != http.StatusNotFound {
		t.Errorf("a sanboot token fetched a boot document: %d", r.StatusCode)
	}
	// That spent the token: get a new one.
	script = body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	tok := regexp.MustCompile(`/san/([0-9a-f]{48})`).FindStringSubmatch(script)[1]
	r := get(t, h, "/san/"+tok)
	san := body(t, r)
	if r.StatusCode != 200 {
		t.Fatalf("sanboot script: %d\n%s", r.StatusCode, san)
	}
	mdir := filepath.Join(dir, "data", "machines", "52-54-00-12-34-56")
	secret, err := os.ReadFile(filepath.Join(mdir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"set initiator-iqn iqn.2026-11.org.overboot:i-525400123456\n",
		"set username 52-54-00-12-34-56\n",
		"set password " + strings.TrimSpace(string(secret)) + "\n",
		"sanboot iscsi:10.0.2.100::3260:0:iqn.2026-11.org.overboot:m-525400123456 ",
	} {
		if !strings.Contains(san, want) {
			t.Errorf("sanboot script lacks %q:\n%s", want, san)
		}
	}
	if r := get(t, h, "/san/"+tok); r.StatusCode != http.StatusNotFound || !strings.Contains(body(t, r), "exit 1") {
		t.Errorf("a sanboot URL worked twice")
	}
	if _, err := os.Stat(filepath.Join(mdir, "cow.delta")); err != nil {
		t.Errorf("no copy-on-write layer after the first boot: %v", err)
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), strings.TrimSpace(string(secret))) {
		t.Errorf("the log shows the token or the secret:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "/san/[token]") {
		t.Errorf("the log does not show the sanboot request:\n%s", logs.String())
	}
	// The image changes: the machine's layer no longer fits; its boot
	// stops with a message saying what to do.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(disk, later, later); err != nil {
		t.Fatal(err)
	}
	script = body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	tok = regexp.MustCompile(`/san/([0-9a-f]{48})`).FindStringSubmatch(script)[1]
	if r := get(t, h, "/san/"+tok); r.StatusCode != http.StatusInternalServerError || !strings.Contains(body(t, r), "overboot machine reset 52:54:00:12:34:56") {
		t.Errorf("a changed image was served")
	}
	req := httptest.NewRequest("POST", "/api/machines/52:54:00:12:34:56/reset", nil)
	req.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("reset: %d", rec.Code)
	}
	if _, err := os.Stat(filepath.Join(mdir, "cow.delta")); !os.IsNotExist(err) {
		t.Errorf("reset kept the copy-on-write layer")
	}
	script = body(t, get(t, h, "/ipxe?mac=52-54-00-12-34-56"))
	tok = regexp.MustCompile(`/san/([0-9a-f]{48})`).FindStringSubmatch(script)[1]
	if r := get(t, h, "/san/"+tok); r.StatusCode != 200 {
		t.Errorf("after reset, over the new image: %d", r.StatusCode)
	}
}

func TestSanbootBadDisk(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "odd.raw")
	os.WriteFile(disk, make([]byte, 1000), 0o644)
	for _, path := range []string{disk, filepath.Join(dir, "missing.raw"), dir} {
		cfg, err := config.Parse("t.conf", strings.NewReader("[server]\ndata = "+dir+"/data\n[profile default]\nsanboot = "+path+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := blobstore.Open(filepath.Join(dir, "data"))
		if _, err := New(cfg, st, nil); err == nil || !strings.Contains(err.Error(), "t.conf:3: profile default: sanboot") {
			t.Errorf("%s: err = %v", path, err)
		}
	}
}
