package swtpmtest

import (
	"bytes"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/google/go-attestation/attest"
)

var quoted = []int{0, 2, 4, 7, 8, 9}

// boot boots m with log, checks the quote over quoted PCRs, the log's
// replay and its Secure Boot state, and returns the EK (PKIX DER) and
// the quoted PCRs.
func boot(t *testing.T, m *Machine, log []Event) ([]byte, []attest.PCR) {
	t.Helper()
	tpm := m.Boot(log)
	eks, err := tpm.EKs()
	if err != nil || len(eks) == 0 {
		t.Fatalf("EKs: %v %v", eks, err)
	}
	ek, err := x509.MarshalPKIXPublicKey(eks[0].Public)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.NewAK(nil)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("0123456789abcdef")
	q, err := ak.QuotePCRs(tpm, nonce, attest.HashSHA256, quoted)
	if err != nil {
		t.Fatal(err)
	}
	all, err := tpm.PCRs(attest.HashSHA256)
	if err != nil {
		t.Fatal(err)
	}
	var pcrs []attest.PCR
	for _, p := range all {
		if slices.Contains(quoted, p.Index) {
			pcrs = append(pcrs, p)
		}
	}
	pub, err := attest.ParseAKPublic(ak.AttestationParameters().Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(*q, pcrs, nonce); err != nil {
		t.Fatalf("quote: %v", err)
	}
	raw, err := tpm.MeasurementLog()
	if err != nil {
		t.Fatal(err)
	}
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	sb, err := attest.ParseSecurebootState(events)
	if err != nil || !sb.Enabled || len(sb.PostSeparatorAuthority) != 2 || len(sb.PermittedKeys) != 1 || len(sb.ForbiddenHashes) != 1 {
		t.Fatalf("Secure Boot state: %+v %v", sb, err)
	}
	return ek, pcrs
}

// TestBootReplays: the log Boot extended into swtpm replays to the PCRs
// the TPM quotes, go-attestation reads Secure Boot on from it, and a
// reboot on the same state keeps the EK and gives the same PCRs; another
// firmware changes PCR 0 alone.
func TestBootReplays(t *testing.T) {
	if !bytes.Equal(TestCert(), TestCert()) {
		t.Fatal("the test certificate differs between calls")
	}
	b := Boot{SecureBoot: true, Firmware: "1", Config: []byte("cfg"), Kernel: File{"/k", []byte("kernel")},
		Initrds: []File{{"/i", []byte("initrd")}}, Cmdline: "/k console=ttyS0"}
	m := New(t)
	ek1, p1 := boot(t, m, Log(b))
	ek2, p2 := boot(t, m, Log(b))
	if !bytes.Equal(ek1, ek2) {
		t.Error("the EK changed across a reboot")
	}
	if !slices.EqualFunc(p1, p2, func(a, b attest.PCR) bool { return a.Index == b.Index && bytes.Equal(a.Digest, b.Digest) }) {
		t.Error("the same boot twice gave other PCRs")
	}
	b.Firmware = "2"
	_, p3 := boot(t, m, Log(b))
	for i := range p1 {
		if changed := !bytes.Equal(p1[i].Digest, p3[i].Digest); changed != (p1[i].Index == 0) {
			t.Errorf("another firmware: PCR %d changed %v", p1[i].Index, changed)
		}
	}
	if ek3, _ := boot(t, New(t), Log(b)); bytes.Equal(ek1, ek3) {
		t.Error("two TPMs have one EK")
	}
}
