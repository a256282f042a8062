package initagent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
)

// machineTPM is the AttestTPM of a TPM 2.0 through go-attestation: the
// machine's (/dev/tpmrm0, else /dev/tpm0; tpm_crb and tpm_tis are built
// into Debian's kernel), or any command channel (tests: swtpm).
//
// go-attestation keeps an SRK at the persistent handle 0x81000001 (and,
// for the activation, an EK at 0x81010001), making them when they are
// missing: the only state the agent leaves in the TPM. The AK is
// transient: Close flushes it.
type machineTPM struct {
	tpm *attest.TPM
	ek  *attest.EK
	ak  *attest.AK
}

// openMachineTPM opens the machine's TPM 2.0, or returns ErrNoTPM.
func openMachineTPM() (*machineTPM, error) {
	return openTPM(nil)
}

// openTPM opens the TPM behind cfg (nil: the machine's).
func openTPM(cfg *attest.OpenConfig) (*machineTPM, error) {
	t, err := attest.OpenTPM(cfg)
	if errors.Is(err, attest.ErrTPMNotAvailable) {
		return nil, ErrNoTPM
	}
	if err != nil {
		return nil, fmt.Errorf("open the TPM: %w", err)
	}
	return &machineTPM{tpm: t}, nil
}

// EK implements AttestTPM: the TPM's RSA EK, from its certificate in the
// TPM's NV memory when there is one, else made from the standard
// template (the same key).
func (m *machineTPM) EK() (pub, cert []byte, err error) {
	eks, err := m.tpm.EKs()
	if err != nil {
		return nil, nil, err
	}
	if len(eks) == 0 {
		return nil, nil, errors.New("the TPM has no endorsement key")
	}
	ek := eks[0]
	pub, err = x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return nil, nil, fmt.Errorf("endorsement key: %w", err)
	}
	if ek.Certificate != nil {
		cert = ek.Certificate.Raw
	}
	m.ek = &ek
	return pub, cert, nil
}

// NewAK implements AttestTPM: an ECDSA P-256 AK under the SRK. An RSA
// AK (go-attestation's default) took 0.37 s of swtpm's RSA key
// generation in every boot's attest phase (TestAttestAgent's console);
// an ECC key is made in milliseconds, and the server checks either.
func (m *machineTPM) NewAK() (boot.AKParams, error) {
	if m.ak != nil {
		return boot.AKParams{}, errors.New("an attestation key was made already")
	}
	ak, err := m.tpm.NewAK(&attest.AKConfig{Algorithm: attest.ECDSA})
	if err != nil {
		return boot.AKParams{}, err
	}
	m.ak = ak
	p := ak.AttestationParameters()
	return boot.AKParams{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}, nil
}

// ActivateCredential implements AttestTPM.
func (m *machineTPM) ActivateCredential(credential, secret []byte) ([]byte, error) {
	if m.ak == nil {
		return nil, errors.New("no attestation key")
	}
	in := attest.EncryptedCredential{Credential: credential, Secret: secret}
	if m.ek != nil {
		return m.ak.ActivateCredentialWithEK(m.tpm, in, *m.ek)
	}
	return m.ak.ActivateCredential(m.tpm, in)
}

// quoteTries bounds the quotes taken when a PCR changes between reading
// the PCRs and quoting them (IMA extends PCR 10).
const quoteTries = 3

// Quote implements AttestTPM: PCRs 0-23 of the SHA-256 bank, read, then
// quoted, then checked against the quote as the server will, again when
// a PCR changed in between.
func (m *machineTPM) Quote(nonce []byte) ([]boot.TPMQuote, []boot.TPMPCR, error) {
	if m.ak == nil {
		return nil, nil, errors.New("no attestation key")
	}
	pub, err := attest.ParseAKPublic(m.ak.AttestationParameters().Public)
	if err != nil {
		return nil, nil, fmt.Errorf("attestation key: %w", err)
	}
	var lastErr error
	for range quoteTries {
		pcrs, err := m.tpm.PCRs(attest.HashSHA256)
		if err != nil {
			return nil, nil, fmt.Errorf("read the SHA-256 PCRs: %w", err)
		}
		q, err := m.ak.Quote(m.tpm, nonce, attest.HashSHA256)
		if err != nil {
			return nil, nil, fmt.Errorf("quote the SHA-256 PCRs: %w", err)
		}
		if lastErr = pub.Verify(*q, pcrs, nonce); lastErr != nil {
			continue
		}
		out := make([]boot.TPMPCR, len(pcrs))
		for i, p := range pcrs {
			out[i] = boot.TPMPCR{Index: p.Index, Alg: "sha256", Digest: p.Digest}
		}
		return []boot.TPMQuote{{Quote: q.Quote, Signature: q.Signature}}, out, nil
	}
	return nil, nil, fmt.Errorf("the quote does not match the PCRs read %d times: %w", quoteTries, lastErr)
}

// EventLog implements AttestTPM: the machine's TPM reads it from
// securityfs (tpm0/binary_bios_measurements under SecurityFS).
func (m *machineTPM) EventLog() ([]byte, error) {
	return m.tpm.MeasurementLog()
}

// Close flushes the AK and closes the TPM.
func (m *machineTPM) Close() error {
	var err error
	if m.ak != nil {
		err = m.ak.Close(m.tpm)
		m.ak = nil
	}
	return errors.Join(err, m.tpm.Close())
}

// attest performs an Attest step with the machine's TPM, closed before
// it returns.
func (e *LinuxExecutor) attest(ctx context.Context, s Attest) (Result, error) {
	tpm, err := openMachineTPM()
	if err != nil {
		return Result{}, err
	}
	x := attestExchange{Client: e.Client, Step: s, TPM: tpm, Progress: e.progress}
	doc, note, err := x.run(ctx)
	if cerr := tpm.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close the TPM: %w", cerr)
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Note: note, Document: &doc}, nil
}
