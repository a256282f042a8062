package boot

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The TPM attestation exchange (profiles with enroll = tpm). The kernel
// command line carries overboot.attest=URL (a single-use token bound to
// the machine's address, nothing secret). Then:
//
//  1. The agent POSTs an AttestStart to that URL: its TPM's endorsement
//     key (EK) and a new attestation key (AK) made in that TPM.
//  2. The server answers 200 with an AttestChallenge: a credential only
//     that TPM can activate (TPM2_MakeCredential to the EK, bound to the
//     AK's name), a fresh nonce and a single-use Evidence URL. It answers
//     202 Accepted with Retry-After while the EK waits for an
//     administrator's approval (the same token may be POSTed again), and
//     403 with a text/plain reason when it refuses.
//  3. The agent activates the credential (the secret), quotes its PCRs
//     over the nonce with the AK, and POSTs an AttestEvidence to the
//     Evidence URL: the proof that it holds the secret, the quotes, the
//     PCR values and the firmware's event log.
//  4. The server checks all of it (the AK's creation data, the proof, the
//     quote's signature and nonce, the event log replayed against the
//     quoted PCRs and against what it served this machine) and answers
//     200 with an AttestSealed: the boot document sealed with a key only
//     the secret gives (SealDocument), so what it carries (CHAP secrets,
//     SSH host keys) is readable by that TPM's holder alone, over plain
//     HTTP too. Any failed check: 403 with the reason, nothing sealed.

// MaxAttestSize bounds an AttestStart or AttestEvidence body (an event
// log of a real machine is tens of KiB; this leaves room for hundreds).
const MaxAttestSize = 2 << 20

// AttestStart is what the agent POSTs to the overboot.attest URL.
type AttestStart struct {
	// EK is the public endorsement key of the machine's TPM (PKIX DER):
	// the machine's identity under enroll = tpm.
	EK []byte `json:"ek"`
	// EKCert is the EK's certificate (DER), when the TPM holds one.
	EKCert []byte `json:"ek_cert,omitempty"`
	// AK is a new attestation key, made in the TPM for this boot.
	AK AKParams `json:"ak"`
}

// AKParams are a TPM 2.0 attestation key's public area and the TPM's
// statement that it made it (TPM2_Create's creation data, its
// TPMS_ATTEST and the signature over it), as the server needs them to
// check the key is restricted, signing-only and resident in a TPM.
type AKParams struct {
	Public            []byte `json:"public"`             // TPM2B_PUBLIC contents (TPMT_PUBLIC)
	CreateData        []byte `json:"create_data"`        // TPMS_CREATION_DATA
	CreateAttestation []byte `json:"create_attestation"` // TPMS_ATTEST
	CreateSignature   []byte `json:"create_signature"`   // TPMT_SIGNATURE
}

// AttestChallenge is the server's answer to an AttestStart.
type AttestChallenge struct {
	Credential []byte `json:"credential"` // TPM2_MakeCredential's credentialBlob
	Secret     []byte `json:"secret"`     // and its encrypted seed (TPM2B_ENCRYPTED_SECRET)
	Nonce      []byte `json:"nonce"`      // AttestNonceSize fresh random bytes the quote covers
	Evidence   string `json:"evidence"`   // where to POST the AttestEvidence (single use)
}

// AttestNonceSize is the length of AttestChallenge.Nonce.
const AttestNonceSize = 32

// AttestEvidence is what the agent POSTs to AttestChallenge.Evidence.
type AttestEvidence struct {
	Proof    []byte     `json:"proof"`     // AttestProof(activated secret, nonce)
	Quotes   []TPMQuote `json:"quotes"`    // one per PCR bank quoted
	PCRs     []TPMPCR   `json:"pcrs"`      // the PCR values the quotes cover
	EventLog []byte     `json:"event_log"` // the firmware's TCG event log, as the kernel exposes it
}

// TPMQuote is a TPM2_Quote: the TPMS_ATTEST and the AK's signature.
type TPMQuote struct {
	Quote     []byte `json:"quote"`
	Signature []byte `json:"signature"`
}

// TPMPCR is one PCR's value in one bank.
type TPMPCR struct {
	Index  int    `json:"index"`
	Alg    string `json:"alg"` // "sha1" or "sha256"
	Digest []byte `json:"digest"`
}

// AttestSealed is the server's answer to good evidence.
type AttestSealed struct {
	// Sealed is the boot document's JSON sealed by SealDocument with the
	// activated secret.
	Sealed []byte `json:"sealed"`
}

// Key derivation labels: one key per use of the activated secret.
const (
	proofLabel = "overboot attest proof v1"
	sealLabel  = "overboot attest document v1"
)

// attestKey derives a 32-byte key for label from the activated secret.
func attestKey(secret []byte, label string) ([]byte, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("attestation secret of %d bytes: want at least 16", len(secret))
	}
	return hkdf.Key(sha256.New, secret, nil, label, 32)
}

// AttestProof is the proof that the agent activated the credential: an
// HMAC of the nonce under a key derived from the secret (the secret
// itself never travels).
func AttestProof(secret, nonce []byte) ([]byte, error) {
	k, err := attestKey(secret, proofLabel)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, k)
	m.Write(nonce)
	return m.Sum(nil), nil
}

// CheckAttestProof reports whether proof is AttestProof(secret, nonce),
// in constant time.
func CheckAttestProof(secret, nonce, proof []byte) bool {
	want, err := AttestProof(secret, nonce)
	return err == nil && hmac.Equal(want, proof)
}

// SealDocument seals doc (a boot document's JSON) with AES-256-GCM under
// a key derived from the activated secret: a random 12-byte nonce, then
// the ciphertext and its tag.
func SealDocument(secret, doc []byte) ([]byte, error) {
	return sealDocument(secret, doc, rand.Reader)
}

func sealDocument(secret, doc []byte, random io.Reader) ([]byte, error) {
	aead, err := documentAEAD(secret)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, fmt.Errorf("seal document: %w", err)
	}
	return aead.Seal(nonce, nonce, doc, []byte(sealLabel)), nil
}

// ErrSealBroken is OpenDocument's error for a sealed document that the
// secret does not open: another TPM's, or changed on the way.
var ErrSealBroken = errors.New("the sealed document does not open with this TPM's secret: changed on the way, or sealed for another TPM")

// OpenDocument opens what SealDocument sealed and parses the document.
func OpenDocument(secret, sealed []byte) (Document, error) {
	aead, err := documentAEAD(secret)
	if err != nil {
		return Document{}, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return Document{}, fmt.Errorf("sealed document of %d bytes: %w", len(sealed), ErrSealBroken)
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(sealLabel))
	if err != nil {
		return Document{}, ErrSealBroken
	}
	return ParseDocument(bytes.NewReader(plain))
}

func documentAEAD(secret []byte) (cipher.AEAD, error) {
	k, err := attestKey(secret, sealLabel)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ParseAttestStart reads an AttestStart strictly: unknown fields, a
// missing EK or AK part, or a body over MaxAttestSize are errors naming
// what was wrong.
func ParseAttestStart(r io.Reader) (AttestStart, error) {
	var s AttestStart
	if err := decodeAttest(r, &s, "attest start"); err != nil {
		return AttestStart{}, err
	}
	for name, v := range map[string][]byte{"ek": s.EK, "ak.public": s.AK.Public, "ak.create_data": s.AK.CreateData,
		"ak.create_attestation": s.AK.CreateAttestation, "ak.create_signature": s.AK.CreateSignature} {
		if len(v) == 0 {
			return AttestStart{}, fmt.Errorf("attest start: %s missing", name)
		}
	}
	return s, nil
}

// ParseAttestEvidence reads an AttestEvidence strictly, as
// ParseAttestStart does.
func ParseAttestEvidence(r io.Reader) (AttestEvidence, error) {
	var e AttestEvidence
	if err := decodeAttest(r, &e, "attest evidence"); err != nil {
		return AttestEvidence{}, err
	}
	switch {
	case len(e.Proof) == 0:
		return AttestEvidence{}, errors.New("attest evidence: proof missing")
	case len(e.Quotes) == 0:
		return AttestEvidence{}, errors.New("attest evidence: quotes missing")
	case len(e.PCRs) == 0:
		return AttestEvidence{}, errors.New("attest evidence: pcrs missing")
	case len(e.EventLog) == 0:
		return AttestEvidence{}, errors.New("attest evidence: event_log missing: the kernel exposes none (no TPM event log from the firmware?)")
	}
	for i, p := range e.PCRs {
		if p.Index < 0 || p.Index > 23 {
			return AttestEvidence{}, fmt.Errorf("attest evidence: pcrs[%d]: index %d out of 0-23", i, p.Index)
		}
		if p.Alg != "sha1" && p.Alg != "sha256" {
			return AttestEvidence{}, fmt.Errorf("attest evidence: pcrs[%d]: alg %q: want sha1 or sha256", i, p.Alg)
		}
	}
	return e, nil
}

func decodeAttest(r io.Reader, v any, what string) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxAttestSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(data) > MaxAttestSize {
		return fmt.Errorf("%s: larger than %d bytes", what, MaxAttestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: more than one JSON value", what)
	}
	return nil
}
