package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server/config"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/swtpmtest"
	"github.com/overboot/overboot/server/attest"
	"github.com/overboot/overboot/server/identity"
	"github.com/overboot/overboot/server/telemetry"
)

// The TPM-attested boot with a real TPM (swtpm), through the handlers:
// the GRUB config, the start, the challenge activated by the TPM, the
// evidence quoted by it, the sealed document; and every refusal.

const tpmMAC = "52:54:00:00:00:81"

// tpmRig is a server with a tpm profile and one machine with its TPM,
// enrolled (approved) and not yet attested.
type tpmRig struct {
	t *testing.T
	f *fix
	m *swtpmtest.Machine
}

func newTPMRig(t *testing.T) *tpmRig {
	t.Helper()
	m := swtpmtest.New(t)
	f := newFixServer(t, "url = http://10.0.2.100\n", `[profile tpm]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
cmdline = console=ttyS0 quiet
secure-boot = yes
enroll = tpm
[machine `+tpmMAC+`]
profile = tpm
hostname = attested-01
`, func(data string) {
		if err := os.WriteFile(filepath.Join(filepath.Dir(data), "signed"), fakePE(t, true), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	r := &tpmRig{t: t, f: f, m: m}
	// Enrolment: the first start waits for approval; the administrator
	// approves that EK.
	sv := r.grub()
	tpm := m.Boot(swtpmtest.Log(sv.boot()))
	resp := r.postStart(sv.token, ekOf(t, tpm), newAK(t, tpm))
	if msg := body(t, resp); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("enrolment: %d %q", resp.StatusCode, msg)
	}
	if tp, err := f.s.db.ApproveTPM(context.Background(), tpmMAC, EKFingerprint(ekOf(t, tpm))); err != nil || tp.EK != EKFingerprint(ekOf(t, tpm)) {
		t.Fatalf("approve: %+v %v", tp, err)
	}
	return r
}

// served is what the GRUB config of one boot loads, as GRUB would read
// it: the files fetched from the server, the linux command's arguments.
type served struct {
	token   string
	config  []byte
	kernel  swtpmtest.File
	initrds []swtpmtest.File
	argv    []string
	// The Authenticode hashes the firmware measures into PCR 4: the
	// served shim and GRUB, and the kernel.
	loaders  [][]byte
	kernelPE []byte
}

var (
	linuxRE  = regexp.MustCompile(`(?m)^\s*if linux (.*); then$`)
	initrdRE = regexp.MustCompile(`(?m)^\s*if initrd (.*); then$`)
	argRE    = regexp.MustCompile(`'([^']*)'`)
	attestRE = regexp.MustCompile(`^overboot\.attest=http://10\.0\.2\.100/attest/([0-9a-f]{64})$`)
)

func (r *tpmRig) grub() served {
	t := r.t
	t.Helper()
	resp := r.f.do(http.MethodGet, "/grub?mac="+tpmMAC+"&buildarch=x86_64&platform=efi", "", nil)
	cfg := body(t, resp)
	args := func(re *regexp.Regexp) []string {
		m := re.FindStringSubmatch(cfg)
		if m == nil {
			t.Fatalf("no %s in the GRUB config:\n%s", re, cfg)
		}
		var out []string
		for _, a := range argRE.FindAllStringSubmatch(m[1], -1) {
			out = append(out, a[1])
		}
		return out
	}
	fetch := func(path string) swtpmtest.File {
		resp := r.f.get(path)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return swtpmtest.File{Name: path, Content: []byte(b)}
	}
	sv := served{config: []byte(cfg), argv: args(linuxRE)}
	sv.kernel = fetch(sv.argv[0])
	sv.loaders, sv.kernelPE = loadersPE(r.t), peOf(r.t, sv.kernel.Content)
	for _, p := range args(initrdRE) {
		sv.initrds = append(sv.initrds, fetch(p))
	}
	for _, a := range sv.argv {
		if m := attestRE.FindStringSubmatch(a); m != nil {
			sv.token = m[1]
		}
	}
	if sv.token == "" {
		t.Fatalf("no overboot.attest in the GRUB config:\n%s", cfg)
	}
	return sv
}

// boot is the honest boot of sv: Secure Boot on, the first firmware,
// what was served loaded as it was. (The arguments have no space nor
// quote: GRUB's command line is them joined by spaces.)
func (sv served) boot() swtpmtest.Boot {
	return swtpmtest.Boot{SecureBoot: true, Firmware: "1", Config: sv.config, Kernel: sv.kernel, Initrds: sv.initrds, Cmdline: strings.Join(sv.argv, " "),
		Loaders: sv.loaders, KernelPE: sv.kernelPE}
}

// peOf is the Authenticode hash of data, a PE image.
func peOf(t *testing.T, data []byte) []byte {
	t.Helper()
	h, err := attest.AuthenticodeSHA256(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// loadersPE are the Authenticode hashes of the shim and GRUB the
// server serves (its [server] shim and grub-net: Debian's).
func loadersPE(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range []string{config.DefaultShim, config.DefaultGRUBNet} {
		testneed.File(t, p, "shim-signed grub-efi-amd64-signed")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, peOf(t, b))
	}
	return out
}

func ekOf(t *testing.T, tpm *goattest.TPM) []byte {
	t.Helper()
	eks, err := tpm.EKs()
	if err != nil || len(eks) == 0 {
		t.Fatalf("EKs: %v %v", eks, err)
	}
	der, err := x509.MarshalPKIXPublicKey(eks[0].Public)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newAK makes an AK as the agent does (ECDSA P-256, initagent's
// machineTPM.NewAK).
func newAK(t *testing.T, tpm *goattest.TPM) *goattest.AK {
	t.Helper()
	ak, err := tpm.NewAK(&goattest.AKConfig{Algorithm: goattest.ECDSA})
	if err != nil {
		t.Fatal(err)
	}
	return ak
}

func (r *tpmRig) postStart(token string, ek []byte, ak *goattest.AK) *http.Response {
	r.t.Helper()
	p := ak.AttestationParameters()
	b, _ := json.Marshal(boot.AttestStart{EK: ek, AK: boot.AKParams{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature}})
	return r.f.do(http.MethodPost, "/attest/"+token, "", bytes.NewReader(b))
}

func challengeOf(t *testing.T, resp *http.Response) boot.AttestChallenge {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %d %q", resp.StatusCode, b)
	}
	var ch boot.AttestChallenge
	if err := json.Unmarshal([]byte(b), &ch); err != nil {
		t.Fatalf("challenge %q: %v", b, err)
	}
	return ch
}

func activate(t *testing.T, tpm *goattest.TPM, ak *goattest.AK, ch boot.AttestChallenge) []byte {
	t.Helper()
	secret, err := ak.ActivateCredential(tpm, goattest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret})
	if err != nil {
		t.Fatalf("activate the credential: %v", err)
	}
	return secret
}

// evidenceOf is what the agent sends: the proof from secret, a quote of
// the PCRs attest.QuotedPCRs over the nonce, their values, the log.
func evidenceOf(t *testing.T, tpm *goattest.TPM, ak *goattest.AK, nonce, secret []byte) []byte {
	t.Helper()
	proof, err := boot.AttestProof(secret, nonce)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ak.QuotePCRs(tpm, nonce, goattest.HashSHA256, attest.QuotedPCRs)
	if err != nil {
		t.Fatal(err)
	}
	all, err := tpm.PCRs(goattest.HashSHA256)
	if err != nil {
		t.Fatal(err)
	}
	ev := boot.AttestEvidence{Proof: proof, Quotes: []boot.TPMQuote{{Quote: q.Quote, Signature: q.Signature}}}
	for _, p := range all {
		if slices.Contains(attest.QuotedPCRs, p.Index) {
			ev.PCRs = append(ev.PCRs, boot.TPMPCR{Index: p.Index, Alg: "sha256", Digest: p.Digest})
		}
	}
	if ev.EventLog, err = tpm.MeasurementLog(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	return b
}

func (r *tpmRig) postEvidence(url string, ev []byte) *http.Response {
	r.t.Helper()
	path, ok := strings.CutPrefix(url, "http://10.0.2.100")
	if !ok {
		r.t.Fatalf("evidence URL %q", url)
	}
	return r.f.do(http.MethodPost, path, "", bytes.NewReader(ev))
}

// attested is one boot's attestation as the agent made it.
type attested struct {
	tpm      *goattest.TPM
	ak       *goattest.AK
	ch       boot.AttestChallenge
	secret   []byte
	evidence []byte
}

// attest boots the machine (the honest boot changed by edit), starts,
// activates and quotes, and POSTs the evidence.
func (r *tpmRig) attest(edit func(*swtpmtest.Boot)) (attested, *http.Response) {
	r.t.Helper()
	a := r.begin(edit)
	return a, r.postEvidence(a.ch.Evidence, a.evidence)
}

// begin is attest up to the evidence, not POSTed.
func (r *tpmRig) begin(edit func(*swtpmtest.Boot)) attested {
	t := r.t
	t.Helper()
	sv := r.grub()
	b := sv.boot()
	if edit != nil {
		edit(&b)
	}
	a := attested{tpm: r.m.Boot(swtpmtest.Log(b))}
	a.ak = newAK(t, a.tpm)
	a.ch = challengeOf(t, r.postStart(sv.token, ekOf(t, a.tpm), a.ak))
	a.secret = activate(t, a.tpm, a.ak, a.ch)
	a.evidence = evidenceOf(t, a.tpm, a.ak, a.ch.Nonce, a.secret)
	return a
}

// sealed checks a 200 AttestSealed and opens it with secret.
func sealed(t *testing.T, resp *http.Response, secret []byte) boot.Document {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("evidence: %d %q", resp.StatusCode, b)
	}
	var s boot.AttestSealed
	if err := json.Unmarshal([]byte(b), &s); err != nil || len(s.Sealed) == 0 {
		t.Fatalf("sealed %q: %v", b, err)
	}
	if bytes.Contains(s.Sealed, []byte("PRIVATE KEY")) {
		t.Error("the sealed document shows its host key in clear")
	}
	doc, err := boot.OpenDocument(secret, s.Sealed)
	if err != nil {
		t.Fatalf("open the document: %v", err)
	}
	other := bytes.Repeat([]byte{1}, len(secret))
	if _, err := boot.OpenDocument(other, s.Sealed); !errors.Is(err, boot.ErrSealBroken) {
		t.Errorf("another secret opens the document: %v", err)
	}
	return doc
}

// refused checks a refusal of the evidence at url: 403 naming why,
// nothing sealed, the refusal in the log and the boot's events, and the
// session gone: the same URL gives nothing to the honest evidence after.
func (r *tpmRig) refused(resp *http.Response, why, url string, honest []byte) {
	t := r.t
	t.Helper()
	r.refusedStart(resp, why)
	if url == "" {
		return
	}
	again := r.postEvidence(url, honest)
	if b := body(t, again); again.StatusCode != http.StatusNotFound || strings.Contains(b, "sealed") {
		t.Errorf("the session after its refusal: %d %q", again.StatusCode, b)
	}
}

// refusedStart checks a refusal: 403 naming why, nothing sealed, the
// refusal in the server's log and among the machine's boot events.
func (r *tpmRig) refusedStart(resp *http.Response, why string) {
	t := r.t
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(b, why) || strings.Contains(b, "sealed") {
		t.Errorf("refusal: %d %q, want 403 naming %q", resp.StatusCode, b, why)
	}
	if !slices.ContainsFunc(strings.Split(r.f.logs.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "attestation refused") && strings.Contains(l, why)
	}) {
		t.Errorf("no refusal naming %q in the log:\n%s", why, r.f.logs)
	}
	if !r.bootEvent(why) {
		t.Errorf("no failed attest event naming %q among the boots of %s", why, tpmMAC)
	}
}

func (r *tpmRig) bootEvent(why string) bool {
	ctx := context.Background()
	boots, err := r.f.s.db.Boots(ctx, tpmMAC, 100)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, b := range boots {
		evs, err := r.f.s.db.BootEvents(ctx, b.ID)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Phase == boot.PhaseAttest && e.Outcome == telemetry.Failed && strings.Contains(e.Message, why) {
				return true
			}
		}
	}
	return false
}

func (r *tpmRig) baseline() attest.Baseline {
	r.t.Helper()
	tp, err := r.f.s.db.TPMOf(context.Background(), tpmMAC)
	if err != nil {
		r.t.Fatal(err)
	}
	if tp.Baseline == "" {
		return nil
	}
	var b attest.Baseline
	if err := json.Unmarshal([]byte(tp.Baseline), &b); err != nil {
		r.t.Fatalf("baseline %q: %v", tp.Baseline, err)
	}
	return b
}

// TestAttestTPMGood: an approved machine's boot, attested by its TPM,
// gets its document sealed to that TPM, with its identity (hostname and
// SSH host key); the first records the firmware baseline (the quoted
// PCRs 0, 2, 4, 7); a second boot on the same firmware passes and keeps
// it; the spent evidence URL gives nothing again.
func TestAttestTPMGood(t *testing.T) {
	r := newTPMRig(t)
	if r.baseline() != nil {
		t.Fatal("a baseline before the first attested boot")
	}
	a, resp := r.attest(nil)
	doc := sealed(t, resp, a.secret)
	if doc.Identity == nil || doc.Identity.Hostname != "attested-01" {
		t.Fatalf("identity: %+v", doc.Identity)
	}
	if !slices.ContainsFunc(doc.Identity.Files, func(f boot.IdentityFile) bool {
		return f.Path == identity.HostKeyPath && strings.Contains(f.Data, "PRIVATE KEY")
	}) {
		t.Errorf("no SSH host key in the attested document: %+v", doc.Identity.Files)
	}
	base := r.baseline()
	pcrs, err := a.tpm.PCRs(goattest.HashSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != len(attest.FirmwarePCRs) {
		t.Errorf("baseline %v, want PCRs %v", base, attest.FirmwarePCRs)
	}
	for _, i := range attest.FirmwarePCRs {
		if base[i] != hex.EncodeToString(pcrs[i].Digest) || pcrs[i].Index != i {
			t.Errorf("baseline PCR %d = %s, the TPM's %x", i, base[i], pcrs[i].Digest)
		}
	}
	if !strings.Contains(r.f.logs.String(), "TPM firmware baseline recorded") {
		t.Error("the baseline is not in the log")
	}

	// A spent evidence URL: nothing, and nothing recorded as attested.
	again := r.postEvidence(a.ch.Evidence, a.evidence)
	if b := body(t, again); again.StatusCode != http.StatusNotFound || strings.Contains(b, "sealed") {
		t.Errorf("the evidence POSTed again: %d %q", again.StatusCode, b)
	}

	a2, resp := r.attest(nil)
	doc2 := sealed(t, resp, a2.secret)
	if doc2.Identity == nil || doc2.Identity.MachineID != doc.Identity.MachineID {
		t.Errorf("second boot's identity %+v, first %+v", doc2.Identity, doc.Identity)
	}
	// The attested machine keeps its SSH host keys from boot to boot.
	if hostKey(t, doc2) != hostKey(t, doc) {
		t.Error("the second attested boot got other SSH host keys than the first")
	}
	if b2 := r.baseline(); !equalBaseline(b2, base) {
		t.Errorf("baseline after the second boot %v, was %v", b2, base)
	}
}

func equalBaseline(a, b attest.Baseline) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAttestTPMRefusals: each attack on an enrolled machine's attested
// boot is refused with the failed check named, nothing sealed, the
// refusal logged and among the boot's events, the session gone, and no
// baseline recorded by a refused boot.
func TestAttestTPMRefusals(t *testing.T) {
	edited := func(edit func(*swtpmtest.Boot), why error) func(t *testing.T, r *tpmRig) {
		return func(t *testing.T, r *tpmRig) {
			a := r.begin(edit)
			r.refused(r.postEvidence(a.ch.Evidence, a.evidence), why.Error(), a.ch.Evidence, a.evidence)
		}
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, r *tpmRig)
		// attested: the case has an honest attested boot too (its
		// baseline stands); else no baseline may be recorded.
		attested bool
	}{
		{"wrong proof", func(t *testing.T, r *tpmRig) {
			a := r.begin(nil)
			wrong := evidenceOf(t, a.tpm, a.ak, a.ch.Nonce, bytes.Repeat([]byte{0x5a}, len(a.secret)))
			r.refused(r.postEvidence(a.ch.Evidence, wrong), attest.ErrProof.Error(), a.ch.Evidence, a.evidence)
		}, false},
		{"replayed evidence", func(t *testing.T, r *tpmRig) {
			first, resp := r.attest(nil)
			sealed(t, resp, first.secret)
			a := r.begin(nil)
			r.refused(r.postEvidence(a.ch.Evidence, first.evidence), attest.ErrProof.Error(), a.ch.Evidence, a.evidence)
		}, true},
		{"Secure Boot off", edited(func(b *swtpmtest.Boot) { b.SecureBoot = false }, attest.ErrSecureOff), false},
		{"changed command line", edited(func(b *swtpmtest.Boot) { b.Cmdline += " init=/bin/sh" }, attest.ErrCmdline), false},
		{"changed initramfs", edited(func(b *swtpmtest.Boot) { b.Initrds[0].Content = []byte("INITRAMFS with a backdoor") }, attest.ErrInitrd), false},
		{"an extra initrd", edited(func(b *swtpmtest.Boot) {
			b.Initrds = append(b.Initrds, swtpmtest.File{Name: "(http)/evil.cpio", Content: []byte("an /init of the attacker's")})
		}, attest.ErrExtraFile), false},
		{"changed kernel", edited(func(b *swtpmtest.Boot) { b.Kernel.Content = append(b.Kernel.Content, 0) }, attest.ErrKernel), false},
		// An older GRUB, signed by Debian too (one with a known hole):
		// Secure Boot lets it run, PCR 4 shows it was not the one served.
		{"an older signed GRUB", edited(func(b *swtpmtest.Boot) {
			old := sha256.Sum256([]byte("grubnetx64.efi.signed 2.04, BootHole"))
			b.Loaders = [][]byte{b.Loaders[0], old[:]}
		}, attest.ErrLoader), false},
		{"firmware changed since the baseline", func(t *testing.T, r *tpmRig) {
			first, resp := r.attest(nil)
			sealed(t, resp, first.secret)
			base := r.baseline()
			a := r.begin(func(b *swtpmtest.Boot) { b.Firmware = "2" })
			r.refused(r.postEvidence(a.ch.Evidence, a.evidence), "PCR 0 (firmware) "+attest.ErrFirmware.Error(), a.ch.Evidence, a.evidence)
			if !equalBaseline(r.baseline(), base) {
				t.Errorf("the refused boot changed the baseline: %v, was %v", r.baseline(), base)
			}
		}, true},
		{"another TPM claims the MAC", func(t *testing.T, r *tpmRig) {
			sv := r.grub()
			other := swtpmtest.New(t).Boot(swtpmtest.Log(sv.boot()))
			ek2, ak2 := ekOf(t, other), newAK(t, other)
			for range 2 {
				r.refusedStart(r.postStart(sv.token, ek2, ak2), "this machine shows "+EKFingerprint(ek2)+": refused")
			}
			if tp, err := r.f.s.db.TPMOf(context.Background(), tpmMAC); err != nil || tp.Refused != EKFingerprint(ek2) || tp.Refusals != 2 {
				t.Errorf("the other TPM's refusals: %+v %v", tp, err)
			}
			// The enrolled TPM still attests with that boot's URL.
			tpm := r.m.Boot(swtpmtest.Log(sv.boot()))
			ak := newAK(t, tpm)
			ch := challengeOf(t, r.postStart(sv.token, ekOf(t, tpm), ak))
			secret := activate(t, tpm, ak, ch)
			sealed(t, r.postEvidence(ch.Evidence, evidenceOf(t, tpm, ak, ch.Nonce, secret)), secret)
		}, true},
		{"AK of another TPM than the EK", func(t *testing.T, r *tpmRig) {
			sv := r.grub()
			tpm := r.m.Boot(swtpmtest.Log(sv.boot()))
			other := swtpmtest.New(t).Boot(swtpmtest.Log(sv.boot()))
			ak2 := newAK(t, other)
			ch := challengeOf(t, r.postStart(sv.token, ekOf(t, tpm), ak2))
			if _, err := ak2.ActivateCredential(other, goattest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret}); err == nil {
				t.Fatal("a TPM activated a credential made for another TPM's EK")
			}
			guess := evidenceOf(t, other, ak2, ch.Nonce, bytes.Repeat([]byte{0x5a}, 32))
			r.refused(r.postEvidence(ch.Evidence, guess), attest.ErrProof.Error(), ch.Evidence, guess)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTPMRig(t)
			tc.run(t, r)
			if b := r.baseline(); b != nil && !tc.attested {
				t.Errorf("a refused boot recorded a baseline: %v", b)
			}
		})
	}
}

// TestAttestMalformedEvidenceSpendsNothing: a malformed evidence body
// (truncated, unknown field, no event log) is refused with 400 and
// spends nothing: the machine's honest evidence to the same URL still
// gets its sealed document.
func TestAttestMalformedEvidenceSpendsNothing(t *testing.T) {
	r := newTPMRig(t)
	a := r.begin(nil)
	for _, junk := range []string{`{"proof":`, `{"proof":"AQ==","mac":"x"}`, `{"proof":"AQ==","quotes":[{}],"pcrs":[{"index":0,"alg":"sha256"}]}`} {
		resp := r.postEvidence(a.ch.Evidence, []byte(junk))
		if b := body(t, resp); resp.StatusCode != http.StatusBadRequest || strings.Contains(b, "sealed") {
			t.Errorf("malformed evidence %.30s: %d %q", junk, resp.StatusCode, b)
		}
	}
	sealed(t, r.postEvidence(a.ch.Evidence, a.evidence), a.secret)
}
