package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	goattest "github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/attest"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// TPM-attested boots (enroll = tpm; boot/attest.go has the exchange).
// The boot answer's command line carries overboot.attest=BASE/attest/TOKEN,
// whose token records what was served (attestBoot); the agent POSTs its
// TPM's EK and a new AK there (attestStart), the server answers a
// challenge once the EK is the machine's approved one, and the evidence
// (attestEvidence) is checked by package server/attest before the
// document, sealed to that TPM, is handed out.

// AttestRetryAfter is how long, in seconds, a machine whose TPM waits
// for approval waits before it POSTs its start again.
const AttestRetryAfter = 10

// attestBoot answers the boot of a tpm profile: a new token whose record
// holds what this answer serves (the kernel, the initrds, the command
// line as GRUB measures it), its URL on that command line.
func (s *Server) attestBoot(w http.ResponseWriter, r *http.Request, q bootReq, p *config.Profile, base string, arts answer.Artifacts, bt state.BootToken) {
	ctx := r.Context()
	if !isGRUB(r) {
		// Only the Secure Boot path measures what it loads: iPXE's boot
		// would have nothing to attest.
		s.failBoot(w, r, q, p, http.StatusOK, fmt.Sprintf("profile %s: enroll = tpm boots by the Secure Boot path only (shim and GRUB measure what they load); this machine came by iPXE", p.Name))
		return
	}
	tok, err := enroll.NewToken()
	if err != nil {
		s.log.Error("issue token", "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot issue a token: see its log")
		return
	}
	a, err := answer.BootFor(base, q.machine(), p, arts, tok)
	if err != nil {
		s.failBoot(w, r, q, p, http.StatusInternalServerError, err.Error())
		return
	}
	k, ok := a.(answer.Kernel)
	if !ok {
		s.failBoot(w, r, q, p, http.StatusInternalServerError, fmt.Sprintf("profile %s: enroll = tpm needs a kernel to boot", p.Name))
		return
	}
	served, err := servedOf(k, arts)
	if err == nil {
		served.Loaders, served.KernelPE, err = s.loaderHashes(arts.Kernel)
	}
	if err != nil {
		s.failBoot(w, r, q, p, http.StatusInternalServerError, err.Error())
		return
	}
	js, _ := json.Marshal(served)
	bt.Served = string(js)
	if err := s.tokens.Put(ctx, tok, bt, enroll.TokenTTL); err != nil {
		s.log.Error("issue token", "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot issue a token: see its log")
		return
	}
	s.reply(w, r, http.StatusOK, a)
}

// servedOf is what GRUB is to measure of the boot answer k: the blobs'
// digests and the command line of its linux command (the kernel's file
// name, as package server/grub writes it, then the arguments).
func servedOf(k answer.Kernel, arts answer.Artifacts) (attest.Served, error) {
	u, err := url.Parse(k.Kernel)
	if err != nil {
		return attest.Served{}, fmt.Errorf("kernel URL: %w", err)
	}
	name := u.EscapedPath()
	if u.RawQuery != "" {
		name += "?" + u.RawQuery
	}
	sv := attest.Served{Kernel: arts.Kernel, Initrds: []boot.Digest{arts.Initramfs}, Cmdline: attest.GRUBCmdline(append([]string{name}, k.Args...))}
	if arts.Driver != "" {
		sv.Initrds = append(sv.Initrds, arts.Driver)
	}
	return sv, nil
}

// peHashes caches Authenticode hashes (hex): files by path, size and
// modification time, blobs by digest.
type peHashes struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *peHashes) get(key string, hash func() ([]byte, error)) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.m[key]; ok {
		return h, nil
	}
	b, err := hash()
	if err != nil {
		return "", err
	}
	if c.m == nil {
		c.m = map[string]string{}
	}
	c.m[key] = hex.EncodeToString(b)
	return c.m[key], nil
}

// loaderHashes are the Authenticode hashes of what this server serves a
// Secure Boot machine: shim and GRUB (DATA/tftp's copies, else the
// files [server] shim and grub-net name), and the kernel blob k.
func (s *Server) loaderHashes(k boot.Digest) (loaders []string, kernel string, err error) {
	cfg := s.cfg.Load()
	for _, f := range []struct{ name, src, key string }{{ShimFile, cfg.Shim, "shim"}, {GRUBFile, cfg.GRUBNet, "grub-net"}} {
		p := filepath.Join(cfg.Data, TFTPDir, f.name)
		fi, err := os.Stat(p)
		if err != nil {
			p = f.src
			if fi, err = os.Stat(p); err != nil {
				return nil, "", fmt.Errorf("the %s the machine loads: %w (set %s in [server])", f.key, err, f.key)
			}
		}
		h, err := s.pe.get(fmt.Sprintf("file %s %d %d", p, fi.Size(), fi.ModTime().UnixNano()), func() ([]byte, error) {
			fh, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			defer fh.Close()
			return attest.AuthenticodeSHA256(fh, fi.Size())
		})
		if err != nil {
			return nil, "", fmt.Errorf("the %s the machine loads (%s): %w", f.key, p, err)
		}
		loaders = append(loaders, h)
	}
	kernel, err = s.pe.get("blob "+k.String(), func() ([]byte, error) {
		f, err := s.blobs.OpenBlob(k)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		return attest.AuthenticodeSHA256(f, fi.Size())
	})
	if err != nil {
		return nil, "", fmt.Errorf("kernel %s: %w", k, err)
	}
	return loaders, kernel, nil
}

// EKFingerprint is how an EK is named and pinned: sha256:HEX of its
// public key's PKIX DER.
func EKFingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(h[:])
}

// attestStart answers POST /attest/{token}: the agent's EK and AK.
func (s *Server) attestStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := remoteIP(r)
	if !s.scriptRate.Allow(addr) {
		s.metrics.Refused("rate_limit")
		http.Error(w, "too many requests from "+addr+": wait a minute and retry", http.StatusTooManyRequests)
		return
	}
	tok := r.PathValue("token")
	t, err := s.tokens.Peek(ctx, tok, enroll.PurposeAttest)
	switch {
	case errors.Is(err, state.ErrNotFound):
		s.metrics.Refused("bad_token")
		http.Error(w, "unknown, used or expired URL: reboot the machine for a new one", http.StatusNotFound)
		return
	case err != nil:
		s.log.Error("read token", "err", err)
		http.Error(w, "the server cannot read its tokens: see its log", http.StatusInternalServerError)
		return
	case t.Address != addr:
		s.metrics.Refused("wrong_address")
		s.log.Warn("token refused: spent from another address than the one it was handed to", "purpose", enroll.PurposeAttest, "mac", t.MAC, "address", addr, "handed_to", t.Address)
		http.Error(w, "this URL belongs to another machine", http.StatusForbidden)
		return
	}
	start, err := boot.ParseAttestStart(http.MaxBytesReader(w, r.Body, boot.MaxAttestSize+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ekPub, err := x509.ParsePKIXPublicKey(start.EK)
	if err != nil {
		http.Error(w, "attest start: ek: not a PKIX public key: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := s.sets.Load().Profile(t.Profile)
	if p == nil || p.Policy() != config.EnrollTPM {
		http.Error(w, "the profile of this boot changed: reboot the machine", http.StatusConflict)
		return
	}
	ek := EKFingerprint(start.EK)
	refuse := func(why string) {
		s.log.Warn("attestation refused", "mac", t.MAC, "address", addr, "reason", why)
		s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: boot.PhaseAttest, Outcome: telemetry.Failed, Message: why})
		http.Error(w, why, http.StatusForbidden)
	}
	tpm, err := s.db.TPMOf(ctx, t.MAC)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		s.log.Error("read TPM enrolment", "mac", t.MAC, "err", err)
		http.Error(w, "the server cannot read its records: see its log", http.StatusInternalServerError)
		return
	}
	switch {
	case tpm.EK == "" && p.TPMFirstUse:
		err = s.db.PinTPM(ctx, t.MAC, ek)
		if err == nil {
			s.log.Info("TPM pinned at first use", "mac", t.MAC, "ek", ek, "address", addr)
			tpm.EK = ek
		}
	case tpm.EK == "":
		if err = s.db.AskTPM(ctx, t.MAC, ek, addr); err == nil {
			why := fmt.Sprintf("machine %s waits for approval of its TPM (EK %s): overboot machine approve %s", t.MAC, ek, t.MAC)
			s.metrics.Refused("pending")
			s.log.Info("TPM waits for approval", "mac", t.MAC, "ek", ek, "address", addr)
			s.rec.Changed(t.MAC)
			// The URL stays good while the machine asks again, however
			// long the administrator takes (the agent waits up to an hour).
			if err := s.tokens.Extend(ctx, tok, enroll.TokenTTL); err != nil {
				s.log.Error("extend a waiting machine's attest token", "mac", t.MAC, "err", err)
			}
			w.Header().Set("Retry-After", strconv.Itoa(AttestRetryAfter))
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintln(w, why)
			return
		}
	}
	if errors.Is(err, state.ErrTPMPinned) {
		// Pinned meanwhile (another server, an approval): read it again.
		tpm, err = s.db.TPMOf(ctx, t.MAC)
	}
	if err != nil {
		s.log.Error("record TPM", "mac", t.MAC, "err", err)
		http.Error(w, "the server cannot record this machine: see its log", http.StatusInternalServerError)
		return
	}
	if tpm.EK != ek {
		s.metrics.Refused("conflict")
		if err := s.db.RefuseTPM(ctx, t.MAC, ek, addr); err != nil {
			s.log.Error("record TPM refusal", "mac", t.MAC, "err", err)
		}
		s.rec.Changed(t.MAC)
		refuse(fmt.Sprintf("machine %s is enrolled with TPM EK %s, this machine shows %s: refused", t.MAC, tpm.EK, ek))
		return
	}
	ap := goattest.ActivationParameters{EK: ekPub, AK: goattest.AttestationParameters{
		Public: start.AK.Public, CreateData: start.AK.CreateData, CreateAttestation: start.AK.CreateAttestation, CreateSignature: start.AK.CreateSignature}}
	if err := ap.CheckAKParameters(); err != nil {
		refuse("the attestation key is not fit for attestation: " + err.Error())
		return
	}
	secret, cred, err := ap.Generate()
	if err != nil {
		refuse("cannot make a credential for this EK and AK: " + err.Error())
		return
	}
	nonce := make([]byte, boot.AttestNonceSize)
	rand.Read(nonce)
	base, err := s.base(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	evTok, err := enroll.NewToken()
	if err == nil {
		err = s.db.PutAttestSession(ctx, enroll.HashToken(evTok), state.AttestSession{MAC: t.MAC, User: t.User, Profile: t.Profile, Address: t.Address, BootID: t.BootID,
			EK: ek, AK: start.AK.Public, Nonce: nonce, Secret: secret, Served: t.Served, Expires: t.Expires})
	}
	if err != nil {
		s.log.Error("record attestation session", "mac", t.MAC, "err", err)
		http.Error(w, "the server cannot record this attestation: see its log", http.StatusInternalServerError)
		return
	}
	if _, err := s.tokens.Spend(ctx, tok, enroll.PurposeAttest, addr); err != nil {
		// Spent meanwhile by a second POST of the same start: this
		// challenge's session stays unreachable and expires.
		http.Error(w, "unknown, used or expired URL: reboot the machine for a new one", http.StatusNotFound)
		return
	}
	evBase := base
	if sec := s.secure(base); sec != "" {
		evBase = sec
	}
	s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: boot.PhaseAttest, Outcome: telemetry.OK, Message: "challenge for TPM EK " + ek})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(boot.AttestChallenge{Credential: cred.Credential, Secret: cred.Secret, Nonce: nonce, Evidence: evBase + "/attest/evidence/" + evTok})
}

// attestEvidence answers POST /attest/evidence/{token}: the evidence is
// checked (package server/attest) and, when it holds, the document is
// sealed to the TPM that activated the credential.
func (s *Server) attestEvidence(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := remoteIP(r)
	if !s.scriptRate.Allow(addr) {
		s.metrics.Refused("rate_limit")
		http.Error(w, "too many requests from "+addr+": wait a minute and retry", http.StatusTooManyRequests)
		return
	}
	tok := r.PathValue("token")
	if len(tok) != 64 {
		http.Error(w, "unknown, used or expired URL: reboot the machine for a new one", http.StatusNotFound)
		return
	}
	// Validate before acting: a malformed body spends nothing.
	ev, err := boot.ParseAttestEvidence(http.MaxBytesReader(w, r.Body, boot.MaxAttestSize+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ses, err := s.db.TakeAttestSession(ctx, enroll.HashToken(tok), addr)
	switch {
	case errors.Is(err, state.ErrWrongAddress):
		s.metrics.Refused("wrong_address")
		s.log.Warn("attestation session refused: spent from another address than the one it was handed to", "address", addr, "err", err)
		http.Error(w, "this URL belongs to another machine", http.StatusForbidden)
		return
	case errors.Is(err, state.ErrNotFound):
		s.metrics.Refused("bad_token")
		http.Error(w, "unknown, used or expired URL: reboot the machine for a new one", http.StatusNotFound)
		return
	case err != nil:
		s.log.Error("read attestation session", "err", err)
		http.Error(w, "the server cannot read its records: see its log", http.StatusInternalServerError)
		return
	}
	// The session is gone: whatever follows, this evidence URL is spent.
	refuse := func(code int, why string) {
		s.log.Warn("attestation refused", "mac", ses.MAC, "address", addr, "reason", why)
		s.rec.Event(ctx, ses.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: boot.PhaseAttest, Outcome: telemetry.Failed, Message: why})
		http.Error(w, why, code)
	}
	var served attest.Served
	if err := json.Unmarshal([]byte(ses.Served), &served); err != nil {
		s.log.Error("attestation session: what was served", "mac", ses.MAC, "err", err)
		refuse(http.StatusInternalServerError, "the server cannot read what it served this boot: see its log")
		return
	}
	tpm, err := s.db.TPMOf(ctx, ses.MAC)
	if err != nil {
		s.log.Error("read TPM enrolment", "mac", ses.MAC, "err", err)
		refuse(http.StatusInternalServerError, "the server cannot read its records: see its log")
		return
	}
	if tpm.EK != ses.EK {
		refuse(http.StatusForbidden, fmt.Sprintf("machine %s is no longer enrolled with TPM EK %s: refused", ses.MAC, ses.EK))
		return
	}
	var baseline attest.Baseline
	if tpm.Baseline != "" {
		if err := json.Unmarshal([]byte(tpm.Baseline), &baseline); err != nil {
			s.log.Error("TPM baseline", "mac", ses.MAC, "err", err)
			refuse(http.StatusInternalServerError, "the server cannot read the machine's firmware baseline: see its log")
			return
		}
	}
	now, err := attest.Verify(attest.Input{Secret: ses.Secret, Nonce: ses.Nonce, AK: ses.AK, Evidence: ev, Served: served, Baseline: baseline})
	if err != nil {
		s.metrics.Refused("attestation")
		refuse(http.StatusForbidden, err.Error())
		return
	}
	p := s.sets.Load().Profile(ses.Profile)
	if p == nil || p.Policy() != config.EnrollTPM {
		refuse(http.StatusConflict, "the profile of this boot changed: reboot the machine")
		return
	}
	t := state.BootToken{Purpose: enroll.PurposeAttest, MAC: ses.MAC, User: ses.User, Profile: ses.Profile, Address: ses.Address, BootID: ses.BootID}
	f, code, why := s.documentFacts(r, t, p)
	if code != 0 {
		refuse(code, why)
		return
	}
	doc, err := answer.Document(f)
	if err != nil {
		s.log.Error("boot document", "mac", ses.MAC, "err", err)
		refuse(http.StatusInternalServerError, "the server made an invalid document: see its log")
		return
	}
	js, err := json.Marshal(doc)
	if err == nil {
		js, err = boot.SealDocument(ses.Secret, js)
	}
	if err != nil {
		s.log.Error("seal document", "mac", ses.MAC, "err", err)
		refuse(http.StatusInternalServerError, "the server cannot seal the document: see its log")
		return
	}
	// The baseline is recorded only by a boot that gets its document.
	if baseline == nil {
		js, _ := json.Marshal(now)
		if _, err := s.db.SetTPMBaseline(ctx, ses.MAC, ses.EK, string(js)); err != nil {
			s.log.Error("record TPM baseline", "mac", ses.MAC, "err", err)
			refuse(http.StatusInternalServerError, "the server cannot record the machine's firmware baseline: see its log")
			return
		}
		s.log.Info("TPM firmware baseline recorded", "mac", ses.MAC, "ek", ses.EK)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(boot.AttestSealed{Sealed: js})
	s.rec.Event(ctx, ses.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: boot.PhaseAttest, Outcome: telemetry.OK, Message: "attested: TPM EK " + ses.EK + ", host " + f.Identity.Hostname})
}
