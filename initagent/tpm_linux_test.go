package initagent

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/testneed"
)

// swtpmChannel is a command channel to swtpm with a fixed event log.
type swtpmChannel struct {
	net.Conn
	log []byte
}

func (c swtpmChannel) MeasurementLog() ([]byte, error) { return c.log, nil }

// startSwtpm starts a TPM 2.0 simulator (swtpm) in a directory of the
// test's, initialised and started, and returns a connection to it and
// its socket (it takes another connection when that one is closed).
func startSwtpm(t *testing.T) (net.Conn, string) {
	t.Helper()
	bin := testneed.Tool(t, "swtpm")
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "c"),
		"--flags", "startup-clear,not-need-init")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// swtpm makes its socket once it listens: poll for it, generously.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			return c, sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm does not listen on %s: %v; its stderr: %s", sock, err, stderr.String())
		}
	}
}

// TestMachineTPMOnSwtpm runs the agent's TPM side against swtpm and the
// server's checks of go-attestation: the EK read, an AK whose creation
// the TPM certified, a credential made to the EK and the AK activated
// to the same secret (and one made to another EK not), a quote of the
// SHA-256 PCRs over a nonce that verifies with the AK (and not over
// another nonce or other PCR values), the event log read, and the AK
// flushed at Close.
func TestMachineTPMOnSwtpm(t *testing.T) {
	conn, sock := startSwtpm(t)
	log := bytes.Repeat([]byte("L"), 64)
	m, err := openTPM(&attest.OpenConfig{CommandChannel: swtpmChannel{conn, log}})
	if err != nil {
		t.Fatal(err)
	}
	var tpm AttestTPM = m
	ekDER, cert, err := tpm.EK()
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		t.Errorf("swtpm without swtpm_setup has an EK certificate of %d bytes", len(cert))
	}
	ek, err := x509.ParsePKIXPublicKey(ekDER)
	if err != nil {
		t.Fatalf("EK: %v", err)
	}
	if _, ok := ek.(*rsa.PublicKey); !ok {
		t.Fatalf("EK of type %T, want RSA", ek)
	}
	ak, err := tpm.NewAK()
	if err != nil {
		t.Fatal(err)
	}
	params := attest.ActivationParameters{EK: ek, AK: attest.AttestationParameters{
		Public: ak.Public, CreateData: ak.CreateData, CreateAttestation: ak.CreateAttestation, CreateSignature: ak.CreateSignature}}
	if err := params.CheckAKParameters(); err != nil {
		t.Fatalf("the server's check of the AK: %v", err)
	}
	secret, ec, err := params.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpm.ActivateCredential(ec.Credential, ec.Secret)
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Errorf("activated %x, want %x", got, secret)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	wrong := params
	wrong.EK = &other.PublicKey
	_, ec2, err := wrong.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := tpm.ActivateCredential(ec2.Credential, ec2.Secret); err == nil {
		t.Errorf("a credential made to another EK activated to %x", s)
	}

	nonce := make([]byte, boot.AttestNonceSize)
	rand.Read(nonce)
	quotes, pcrs, err := tpm.Quote(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if len(quotes) != 1 || len(pcrs) != 24 {
		t.Fatalf("%d quotes of %d PCRs, want 1 of 24", len(quotes), len(pcrs))
	}
	akPub, err := attest.ParseAKPublic(ak.Public)
	if err != nil {
		t.Fatal(err)
	}
	q := attest.Quote{Quote: quotes[0].Quote, Signature: quotes[0].Signature}
	var aps []attest.PCR
	for i, p := range pcrs {
		if p.Alg != "sha256" || p.Index != i || len(p.Digest) != 32 {
			t.Errorf("pcrs[%d] = %d %s %d bytes", i, p.Index, p.Alg, len(p.Digest))
		}
		aps = append(aps, attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: crypto.SHA256})
	}
	if err := akPub.Verify(q, aps, nonce); err != nil {
		t.Errorf("the quote does not verify: %v", err)
	}
	if err := akPub.Verify(q, aps, bytes.Repeat([]byte{1}, boot.AttestNonceSize)); err == nil {
		t.Errorf("the quote verifies over another nonce")
	}
	aps[7].Digest = bytes.Repeat([]byte{7}, 32)
	if err := akPub.Verify(q, aps, nonce); err == nil {
		t.Errorf("the quote verifies with PCR 7 changed")
	}

	if got, err := tpm.EventLog(); err != nil || !bytes.Equal(got, log) {
		t.Errorf("event log %q, %v", got, err)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// The AK is flushed: no transient object is left in the TPM.
	conn, err = net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	handles, _, err := tpm2.GetCapability(conn, tpm2.CapabilityHandles, 16, uint32(tpm2.HandleTypeTransient)<<24)
	if err != nil {
		t.Fatal(err)
	}
	if len(handles) != 0 {
		t.Errorf("transient objects left in the TPM after Close: %v", handles)
	}
}
