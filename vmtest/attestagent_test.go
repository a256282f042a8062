package vmtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/testneed"
)

// attestVerifier is a minimal server side of the attestation exchange
// (boot/attest.go), made of go-attestation's checks: the AK's creation
// (CheckAKParameters), a credential to the EK bound to the AK
// (Generate), the proof of its activation, the quote over the nonce
// (ParseAKPublic.Verify) and the event log replayed against the quoted
// PCRs (ParseEventLog, Verify). It asks the machine to wait for approval
// once, then seals doc to the activated secret. Everything the machine
// sent is saved in dir.
type attestVerifier struct {
	t   *testing.T
	dir string
	doc boot.Document

	mu       sync.Mutex
	starts   int
	secret   []byte
	nonce    []byte
	akPublic []byte
	events   map[int]int // events per PCR, of the replayed log
	replayed int         // events replayed
	listed   []string    // the replayed events: PCR, type, size
	sealed   bool
}

func (v *attestVerifier) refuse(w http.ResponseWriter, format string, args ...any) {
	v.t.Errorf("attest server: "+format, args...)
	http.Error(w, fmt.Sprintf(format, args...), http.StatusForbidden)
}

func (v *attestVerifier) save(name string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, boot.MaxAttestSize+1))
	if err != nil {
		return nil, err
	}
	return b, os.WriteFile(filepath.Join(v.dir, name), b, 0o600)
}

func (v *attestVerifier) start(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.starts++
	body, err := v.save(fmt.Sprintf("attest-start-%d.json", v.starts), r.Body)
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	st, err := boot.ParseAttestStart(bytes.NewReader(body))
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	if v.starts == 1 {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "this machine's TPM waits for approval (test)")
		return
	}
	ek, err := x509.ParsePKIXPublicKey(st.EK)
	if err != nil {
		v.refuse(w, "EK: %v", err)
		return
	}
	params := attest.ActivationParameters{EK: ek, AK: attest.AttestationParameters{
		Public: st.AK.Public, CreateData: st.AK.CreateData, CreateAttestation: st.AK.CreateAttestation, CreateSignature: st.AK.CreateSignature}}
	if err := params.CheckAKParameters(); err != nil {
		v.refuse(w, "AK: %v", err)
		return
	}
	secret, ec, err := params.Generate()
	if err != nil {
		v.refuse(w, "make credential: %v", err)
		return
	}
	v.secret, v.akPublic = secret, st.AK.Public
	v.nonce = make([]byte, boot.AttestNonceSize)
	rand.Read(v.nonce)
	json.NewEncoder(w).Encode(boot.AttestChallenge{Credential: ec.Credential, Secret: ec.Secret, Nonce: v.nonce, Evidence: "/attest/evidence/ev-0123456789"})
}

func (v *attestVerifier) evidence(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	body, err := v.save("attest-evidence.json", r.Body)
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	if v.secret == nil || v.sealed {
		http.Error(w, "no challenge outstanding", http.StatusGone)
		return
	}
	e, err := boot.ParseAttestEvidence(bytes.NewReader(body))
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	if !boot.CheckAttestProof(v.secret, v.nonce, e.Proof) {
		v.refuse(w, "the proof does not match the credential's secret")
		return
	}
	ak, err := attest.ParseAKPublic(v.akPublic)
	if err != nil {
		v.refuse(w, "AK: %v", err)
		return
	}
	var pcrs []attest.PCR
	for _, p := range e.PCRs {
		if p.Alg != "sha256" {
			continue
		}
		pcrs = append(pcrs, attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: crypto.SHA256})
	}
	var quotes []attest.Quote
	for _, q := range e.Quotes {
		quotes = append(quotes, attest.Quote{Quote: q.Quote, Signature: q.Signature})
	}
	if err := ak.VerifyAll(quotes, pcrs, v.nonce); err != nil {
		v.refuse(w, "quote: %v", err)
		return
	}
	el, err := attest.ParseEventLog(e.EventLog)
	if err != nil {
		v.refuse(w, "event log: %v", err)
		return
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		v.refuse(w, "event log replay: %v", err)
		return
	}
	v.replayed, v.events = len(events), map[int]int{}
	for _, ev := range events {
		v.events[ev.Index]++
		d := ""
		if ev.Index == 9 || ev.Type.String() == "EV_EVENT_TAG" || ev.Type.String() == "EV_IPL" {
			d = fmt.Sprintf(" %q", strings.Trim(string(ev.Data), "\x00"))
		}
		v.listed = append(v.listed, fmt.Sprintf("PCR %d %s (%d bytes)%s", ev.Index, ev.Type, len(ev.Data), d))
	}
	raw, err := v.doc.Marshal()
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	sealed, err := boot.SealDocument(v.secret, raw)
	if err != nil {
		v.refuse(w, "%v", err)
		return
	}
	v.sealed = true
	json.NewEncoder(w).Encode(boot.AttestSealed{Sealed: sealed})
}

// TestAttestAgent boots a UEFI machine with a TPM 2.0 (swtpm, tpm-crb
// on q35; OVMF hands the kernel the firmware's event log) directly into
// the agent with overboot.attest: the agent reads the EK, makes an AK,
// waits once for approval, activates the credential, quotes its PCRs
// over the nonce and sends the event log; a verifier made of
// go-attestation's checks replays the log against the quote and seals
// the boot document to the activated secret; the agent opens it and
// the root is reached.
func TestAttestAgent(t *testing.T) {
	a := needVM(t)
	testneed.Tool(t, "swtpm")
	testneed.File(t, OVMFCode, "ovmf")
	dir := t.TempDir()
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	v := &attestVerifier{t: t, dir: dir, doc: boot.Document{Version: 1, Machine: "tpm-vm",
		Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://" + GuestServer + "/" + filepath.Base(a.Root), Digest: a.RootSum, Size: a.RootSize}},
		Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /attest/tok-0123456789", v.start)
	mux.HandleFunc("POST /attest/evidence/ev-0123456789", v.evidence)
	mux.Handle("GET /", http.FileServer(http.Dir(filepath.Dir(a.Root))))
	addr := serveHTTP(t, mux)
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs,
		Append: directCmdline("overboot.attest=http://"+GuestServer+"/attest/tok-0123456789",
			"overboot.onfail=poweroff", "overboot.onfail.delay=1s"),
		UEFIVars: vars,
		TPMState: filepath.Join(dir, "tpm"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	for _, want := range []string{"awaits approval", "this machine's TPM waits for approval (test)", "attest: ok", "document: ok", "machine tpm-vm"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "attest:") || strings.Contains(l.Text, "TPMEventLog") || strings.Contains(l.Text, "tpm_crb") || strings.Contains(l.Text, "tpm tpm0") {
			t.Logf("console %s", l)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.sealed {
		t.Fatalf("no document was sealed")
	}
	idx := make([]int, 0, len(v.events))
	for i := range v.events {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var per []string
	for _, i := range idx {
		per = append(per, fmt.Sprintf("PCR %d: %d", i, v.events[i]))
	}
	t.Logf("the machine's AttestStart and AttestEvidence: %s/attest-*.json", dir)
	t.Logf("event log: %d events replayed against the quoted PCRs (%s)", v.replayed, strings.Join(per, ", "))
	for _, e := range v.listed {
		t.Logf("event: %s", e)
	}
	if v.replayed == 0 {
		t.Errorf("the event log replayed no event")
	}
}
