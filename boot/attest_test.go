package boot

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSealDocumentRoundTrip(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	doc := Document{Version: DocumentVersion, Lower: Source{HTTP: &HTTPSource{URL: "http://s/blobs/sha256/" + strings.Repeat("a", 64), Digest: Digest("sha256:" + strings.Repeat("a", 64))}}, Upper: Upper{Tmpfs: &TmpfsUpper{}}}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealDocument(secret, raw)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("blobs")) {
		t.Fatal("the sealed document shows its plaintext")
	}
	got, err := OpenDocument(secret, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Lower.HTTP == nil || got.Lower.HTTP.URL != doc.Lower.HTTP.URL {
		t.Fatalf("opened %+v", got)
	}
	// Another TPM's secret, a flipped byte, a cut: each refused.
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := OpenDocument(other, sealed); !errors.Is(err, ErrSealBroken) {
		t.Errorf("another secret: %v", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	if _, err := OpenDocument(secret, flipped); !errors.Is(err, ErrSealBroken) {
		t.Errorf("a flipped byte: %v", err)
	}
	if _, err := OpenDocument(secret, sealed[:10]); !errors.Is(err, ErrSealBroken) {
		t.Errorf("cut short: %v", err)
	}
	if _, err := SealDocument([]byte("short"), raw); err == nil {
		t.Error("a 5-byte secret sealed")
	}
	// Two seals of one document differ (fresh nonce).
	again, _ := SealDocument(secret, raw)
	if bytes.Equal(again, sealed) {
		t.Error("two seals are the same bytes")
	}
}

func TestAttestProof(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	nonce := bytes.Repeat([]byte{2}, AttestNonceSize)
	p, err := AttestProof(secret, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p, secret) || len(p) != 32 {
		t.Fatalf("proof %x", p)
	}
	if !CheckAttestProof(secret, nonce, p) {
		t.Error("a good proof refused")
	}
	other := bytes.Repeat([]byte{3}, AttestNonceSize)
	if CheckAttestProof(secret, other, p) {
		t.Error("a proof for another nonce (a replay) accepted")
	}
	if CheckAttestProof(bytes.Repeat([]byte{9}, 32), nonce, p) {
		t.Error("a proof without the secret accepted")
	}
	if CheckAttestProof(secret, nonce, nil) {
		t.Error("an empty proof accepted")
	}
}

func TestParseAttestStart(t *testing.T) {
	good := `{"ek":"AQ==","ak":{"public":"AQ==","create_data":"AQ==","create_attestation":"AQ==","create_signature":"AQ=="}}`
	if _, err := ParseAttestStart(strings.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"ak":{"public":"AQ==","create_data":"AQ==","create_attestation":"AQ==","create_signature":"AQ=="}}`, "ek missing"},
		{`{"ek":"AQ==","ak":{"public":"AQ==","create_data":"AQ==","create_attestation":"AQ=="}}`, "ak.create_signature missing"},
		{`{"ek":"AQ==","mac":"x"}`, `unknown field "mac"`},
		{good + good, "more than one JSON value"},
		{`{"ek":` + strings.Repeat(" ", MaxAttestSize) + `"AQ=="}`, "larger than"},
		{`{"ek":"not base64"}`, "attest start"},
	} {
		_, err := ParseAttestStart(strings.NewReader(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.60s: %v, want %q", c.body, err, c.want)
		}
	}
}

func TestParseAttestEvidence(t *testing.T) {
	good := `{"proof":"AQ==","quotes":[{"quote":"AQ==","signature":"AQ=="}],"pcrs":[{"index":7,"alg":"sha256","digest":"AQ=="}],"event_log":"AQ=="}`
	if _, err := ParseAttestEvidence(strings.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"quotes":[{"quote":"AQ=="}],"pcrs":[{"index":7,"alg":"sha256"}],"event_log":"AQ=="}`, "proof missing"},
		{`{"proof":"AQ==","pcrs":[{"index":7,"alg":"sha256"}],"event_log":"AQ=="}`, "quotes missing"},
		{`{"proof":"AQ==","quotes":[{}],"event_log":"AQ=="}`, "pcrs missing"},
		{`{"proof":"AQ==","quotes":[{}],"pcrs":[{"index":7,"alg":"sha256"}]}`, "event_log missing"},
		{`{"proof":"AQ==","quotes":[{}],"pcrs":[{"index":24,"alg":"sha256"}],"event_log":"AQ=="}`, "index 24"},
		{`{"proof":"AQ==","quotes":[{}],"pcrs":[{"index":1,"alg":"md5"}],"event_log":"AQ=="}`, `alg "md5"`},
	} {
		_, err := ParseAttestEvidence(strings.NewReader(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.60s: %v, want %q", c.body, err, c.want)
		}
	}
}
