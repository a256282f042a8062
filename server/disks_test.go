package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/store"
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
	st, _ := store.Open(filepath.Join(dir, "data"))
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
	st, _ := store.Open(filepath.Join(dir, "data"))
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
