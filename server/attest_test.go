package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/attest"
	"github.com/overboot/overboot/server/enroll"
)

// attestStartBody is an AttestStart with a new EK (the AK is not a real
// TPM's: enough for the steps before the challenge).
func attestStartBody(t *testing.T) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(boot.AttestStart{EK: der, AK: boot.AKParams{Public: []byte{1}, CreateData: []byte{2}, CreateAttestation: []byte{3}, CreateSignature: []byte{4}}})
	return string(b), EKFingerprint(der)
}

// TestAttestEnrolment: a tpm profile's GRUB config carries
// overboot.attest (no overboot.doc), whose token records what was served
// (the command line as GRUB measures it); its start from another address
// is refused; an unknown EK waits (202, Retry-After, the token unspent);
// once approved, another EK for the MAC is refused and recorded; with
// tpm-first-use the first EK is pinned at once.
func TestAttestEnrolment(t *testing.T) {
	f := newFixServer(t, "url = http://10.0.2.100\n", `[profile tpm]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
cmdline = console=ttyS0
secure-boot = yes
enroll = tpm
[profile tofu]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
secure-boot = yes
enroll = tpm
tpm-first-use = yes
[machine 52:54:00:00:00:71]
profile = tpm
[machine 52:54:00:00:00:72]
profile = tofu
`, func(data string) {
		if err := os.WriteFile(filepath.Join(filepath.Dir(data), "signed"), fakePE(t, true), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	grubCfg := func(mac string) (string, string) {
		r := f.do(http.MethodGet, "/grub?mac="+mac+"&buildarch=x86_64&platform=efi", "", nil)
		text := body(t, r)
		if strings.Contains(text, "overboot.doc") {
			t.Fatalf("a tpm profile's config carries overboot.doc:\n%s", text)
		}
		tok := find(t, `'overboot\.attest=http://10\.0\.2\.100/attest/([0-9a-f]{64})'`, text)
		return tok, text
	}
	tok, text := grubCfg("52:54:00:00:00:71")
	kernel := find(t, `if linux '/blobs/sha256/([0-9a-f]{64})'`, text)
	bt, err := f.s.db.PeekBootToken(ctx, enroll.HashToken(tok), enroll.PurposeAttest)
	if err != nil {
		t.Fatal(err)
	}
	var sv attest.Served
	if err := json.Unmarshal([]byte(bt.Served), &sv); err != nil {
		t.Fatalf("served %q: %v", bt.Served, err)
	}
	wantCmdline := "/blobs/sha256/" + kernel + " console=ttyS0 overboot.attest=http://10.0.2.100/attest/" + tok
	if sv.Kernel.Hex() != kernel || len(sv.Initrds) != 1 || sv.Cmdline != wantCmdline {
		t.Errorf("served %+v, want kernel %s and command line %q", sv, kernel, wantCmdline)
	}

	start, ek := attestStartBody(t)
	if r := f.do(http.MethodPost, "/attest/"+tok, "192.0.2.99", strings.NewReader(start)); r.StatusCode != http.StatusForbidden {
		t.Errorf("another address: %d", r.StatusCode)
	}
	for i := range 2 {
		r := f.do(http.MethodPost, "/attest/"+tok, "", strings.NewReader(start))
		msg := body(t, r)
		want := "machine 52:54:00:00:00:71 waits for approval of its TPM (EK " + ek + "): overboot machine approve 52:54:00:00:00:71"
		if r.StatusCode != http.StatusAccepted || r.Header.Get("Retry-After") != "10" || strings.TrimSpace(msg) != want {
			t.Fatalf("pending, try %d: %d %q %q", i, r.StatusCode, r.Header.Get("Retry-After"), msg)
		}
	}
	if tp, err := f.s.db.ApproveTPM(ctx, "52:54:00:00:00:71", ""); err != nil || tp.EK != ek {
		t.Fatalf("approve: %+v %v", tp, err)
	}
	other, ek2 := attestStartBody(t)
	r := f.do(http.MethodPost, "/attest/"+tok, "", strings.NewReader(other))
	msg := body(t, r)
	if r.StatusCode != http.StatusForbidden || !strings.Contains(msg, "enrolled with TPM EK "+ek+", this machine shows "+ek2+": refused") {
		t.Errorf("another EK: %d %q", r.StatusCode, msg)
	}
	if tp, _ := f.s.db.TPMOf(ctx, "52:54:00:00:00:71"); tp.EK != ek || tp.Refused != ek2 || tp.Refusals != 1 {
		t.Errorf("after the other EK: %+v", tp)
	}
	// The approved EK with an AK no TPM made: refused before any challenge.
	r = f.do(http.MethodPost, "/attest/"+tok, "", strings.NewReader(start))
	if msg := body(t, r); r.StatusCode != http.StatusForbidden || !strings.Contains(msg, "attestation key is not fit") {
		t.Errorf("a made-up AK: %d %q", r.StatusCode, msg)
	}

	tok2, _ := grubCfg("52:54:00:00:00:72")
	start3, ek3 := attestStartBody(t)
	f.do(http.MethodPost, "/attest/"+tok2, "", strings.NewReader(start3))
	if tp, err := f.s.db.TPMOf(ctx, "52:54:00:00:00:72"); err != nil || tp.EK != ek3 {
		t.Errorf("first use: %+v %v", tp, err)
	}
	if _, err := f.s.db.TPMOf(ctx, "52:54:00:00:00:71"); err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, "/attest/evidence/"+strings.Repeat("ab", 32), "", strings.NewReader(`{"proof":"AQ==","quotes":[{"quote":"AQ==","signature":"AQ=="}],"pcrs":[{"index":0,"alg":"sha256","digest":"AQ=="}],"event_log":"AQ=="}`)); r.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown evidence URL: %d", r.StatusCode)
	}
}
