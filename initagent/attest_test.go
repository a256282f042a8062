package initagent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
)

// fakeTPM is an AttestTPM whose credential activation gives secret
// for the credential cred alone.
type fakeTPM struct {
	ek, cert     []byte
	cred, secret []byte
	log          []byte
	logErr       error
	quoted       [][]byte // the nonces quoted
	activated    [][]byte // the secrets handed out, to check they were cleared
}

func (f *fakeTPM) EK() ([]byte, []byte, error) { return f.ek, f.cert, nil }

func (f *fakeTPM) NewAK() (boot.AKParams, error) {
	return boot.AKParams{Public: []byte("ak-public"), CreateData: []byte("cd"), CreateAttestation: []byte("ca"), CreateSignature: []byte("cs")}, nil
}

func (f *fakeTPM) ActivateCredential(cred, secret []byte) ([]byte, error) {
	if !bytes.Equal(cred, f.cred) || !bytes.Equal(secret, []byte("encrypted-seed")) {
		return nil, errors.New("TPM_RC_INTEGRITY")
	}
	s := bytes.Clone(f.secret)
	f.activated = append(f.activated, s)
	return s, nil
}

func (f *fakeTPM) Quote(nonce []byte) ([]boot.TPMQuote, []boot.TPMPCR, error) {
	f.quoted = append(f.quoted, bytes.Clone(nonce))
	return []boot.TPMQuote{{Quote: append([]byte("quote:"), nonce...), Signature: []byte("sig")}},
		[]boot.TPMPCR{{Index: 0, Alg: "sha256", Digest: make([]byte, 32)}, {Index: 7, Alg: "sha256", Digest: bytes.Repeat([]byte{7}, 32)}}, nil
}

func (f *fakeTPM) EventLog() ([]byte, error) { return f.log, f.logErr }

func newFakeTPM() *fakeTPM {
	return &fakeTPM{ek: []byte("ek-public-der"), cred: []byte("credential-blob"),
		secret: []byte("0123456789abcdef-the-activated-secret"), log: []byte("event-log-bytes")}
}

// attestServer is a minimal server side of the exchange: it answers
// pending times 202, then a challenge; it checks the evidence (the proof
// with the secret it gave the fake TPM, the quote over its nonce) and
// seals doc with sealWith. Fields left zero take the good path.
type attestServer struct {
	t        *testing.T
	secret   []byte // the fake TPM's
	sealWith []byte // nil: secret
	doc      boot.Document
	pending  int    // 202 answers before the challenge
	after    string // their Retry-After
	refuse   string // 403 at the start with this text
	refuseEv string // 403 at the evidence with this text
	fail     int    // 500 answers before any other
	// challenge and sealed, when set, replace the good answers' bodies.
	challenge, sealed string
	evidence          string // the challenge's evidence URL ("": /evidence/ev-token)

	mu        sync.Mutex
	starts    []boot.AttestStart
	evidences []boot.AttestEvidence
	nonce     []byte
}

func (s *attestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusMethodNotAllowed)
		return
	}
	if s.fail > 0 {
		s.fail--
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	switch r.URL.Path {
	case "/attest/tok-start":
		st, err := boot.ParseAttestStart(r.Body)
		if err != nil {
			s.t.Errorf("server: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.starts = append(s.starts, st)
		if s.refuse != "" {
			http.Error(w, s.refuse, http.StatusForbidden)
			return
		}
		if s.pending > 0 {
			s.pending--
			if s.after != "" {
				w.Header().Set("Retry-After", s.after)
			}
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintln(w, "waiting for approval: overboot machine approve")
			return
		}
		if s.challenge != "" {
			io.WriteString(w, s.challenge)
			return
		}
		s.nonce = bytes.Repeat([]byte{byte(len(s.starts))}, boot.AttestNonceSize)
		ev := s.evidence
		if ev == "" {
			ev = "/evidence/ev-token"
		}
		json.NewEncoder(w).Encode(boot.AttestChallenge{Credential: []byte("credential-blob"), Secret: []byte("encrypted-seed"), Nonce: s.nonce, Evidence: ev})
	case "/evidence/ev-token":
		e, err := boot.ParseAttestEvidence(r.Body)
		if err != nil {
			s.t.Errorf("server: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.evidences = append(s.evidences, e)
		if !boot.CheckAttestProof(s.secret, s.nonce, e.Proof) {
			http.Error(w, "the proof does not match: credential not activated", http.StatusForbidden)
			return
		}
		if len(e.Quotes) != 1 || !bytes.Equal(e.Quotes[0].Quote, append([]byte("quote:"), s.nonce...)) {
			http.Error(w, "the quote is not over this nonce", http.StatusForbidden)
			return
		}
		if s.refuseEv != "" {
			http.Error(w, s.refuseEv, http.StatusForbidden)
			return
		}
		if s.sealed != "" {
			io.WriteString(w, s.sealed)
			return
		}
		raw, err := s.doc.Marshal()
		if err != nil {
			s.t.Fatal(err)
		}
		with := s.sealWith
		if with == nil {
			with = s.secret
		}
		sealed, err := boot.SealDocument(with, raw)
		if err != nil {
			s.t.Fatal(err)
		}
		json.NewEncoder(w).Encode(boot.AttestSealed{Sealed: sealed})
	default:
		http.NotFound(w, r)
	}
}

// attestDoc is the document the test servers seal.
var attestDoc = boot.Document{Version: 1, Machine: "tpm1",
	Lower:    boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/blob", Digest: digest}},
	Upper:    boot.Upper{Tmpfs: &boot.TmpfsUpper{}},
	Identity: &boot.Identity{Hostname: "tpm1", Files: []boot.IdentityFile{{Path: "/etc/ssh/ssh_host_ed25519_key", Mode: 0o600, Data: "PRIVATE KEY"}}},
}

// exchangeRun runs the exchange against srv with a fake clock: sleeps
// advance it. It returns the console lines, each stamped with the
// clock's time since the start.
type exchangeRun struct {
	lines []string
	at    []time.Duration
	waits []time.Duration
}

func runExchange(t *testing.T, srv *attestServer, tpm *fakeTPM) (boot.Document, string, *exchangeRun, error) {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := start
	run := &exchangeRun{}
	x := attestExchange{
		Client: hs.Client(),
		Step:   Attest{URL: hs.URL + "/attest/tok-start", Attempts: 3, Stall: 10 * time.Second},
		TPM:    tpm,
		Sleep: func(_ context.Context, d time.Duration) error {
			run.waits = append(run.waits, d)
			now = now.Add(d)
			return nil
		},
		Now: func() time.Time { return now },
		Progress: func(p Phase, line string) {
			if p != PhaseAttest {
				t.Errorf("progress in phase %s", p)
			}
			run.lines = append(run.lines, line)
			run.at = append(run.at, now.Sub(start))
		},
	}
	doc, note, err := x.run(context.Background())
	return doc, note, run, err
}

// secretShown reports whether the fake TPM's secret, in any usual
// encoding, is in s.
func secretShown(tpm *fakeTPM, s string) bool {
	for _, enc := range []string{string(tpm.secret), hex.EncodeToString(tpm.secret), base64.StdEncoding.EncodeToString(tpm.secret)} {
		if strings.Contains(s, enc) {
			return true
		}
	}
	return false
}

// TestAttestApproved: pending twice (Retry-After clamped to 5-60 s, the
// console told), then the challenge; the evidence proves the activation
// and quotes the server's nonce; the sealed document opens to what the
// server sealed, and the secret is cleared and shown nowhere.
func TestAttestApproved(t *testing.T) {
	tpm := newFakeTPM()
	srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc, pending: 2, after: "1"}
	doc, note, run, err := runExchange(t, srv, tpm)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(attestDoc, doc); d != "" {
		t.Errorf("document (-sealed +opened):\n%s", d)
	}
	if len(srv.starts) != 3 {
		t.Fatalf("%d starts, want 3 (two pending, one approved)", len(srv.starts))
	}
	for _, st := range srv.starts {
		if !bytes.Equal(st.EK, tpm.ek) || string(st.AK.Public) != "ak-public" {
			t.Errorf("start carries EK %q AK %q", st.EK, st.AK.Public)
		}
	}
	if len(srv.evidences) != 1 || string(srv.evidences[0].EventLog) != "event-log-bytes" || len(srv.evidences[0].PCRs) != 2 {
		t.Errorf("evidence: %+v", srv.evidences)
	}
	if len(tpm.quoted) != 1 || !bytes.Equal(tpm.quoted[0], srv.nonce) {
		t.Errorf("quoted nonces %x, want the server's %x", tpm.quoted, srv.nonce)
	}
	if d := cmp.Diff([]time.Duration{AttestPendingMinWait, AttestPendingMinWait}, run.waits); d != "" {
		t.Errorf("waits (-want +got):\n%s", d)
	}
	if len(run.lines) != 1 || !strings.Contains(run.lines[0], `"waiting for approval: overboot machine approve"`) ||
		!strings.Contains(run.lines[0], "awaits approval") || !strings.Contains(run.lines[0], EKFingerprint(tpm.ek)) {
		t.Errorf("console (told once: the second wait is within %v):\n%s", AttestPendingTellEvery, strings.Join(run.lines, "\n"))
	}
	if !strings.Contains(note, EKFingerprint(tpm.ek)) {
		t.Errorf("note %q lacks the EK's fingerprint", note)
	}
	for _, s := range tpm.activated {
		if !bytes.Equal(s, make([]byte, len(s))) {
			t.Errorf("the activated secret was not cleared")
		}
	}
	if secretShown(tpm, strings.Join(run.lines, "\n")+note) {
		t.Errorf("the secret was shown")
	}
}

// TestAttestPendingGivesUp: a machine never approved asks again as told
// (Retry-After clamped), tells the console at most every 30 s, and
// gives up after an hour with an error naming the fix.
func TestAttestPendingGivesUp(t *testing.T) {
	for _, after := range []string{"", "2", "600", "Sun, 06 Dec 2026 12:00:20 GMT"} {
		t.Run("retry-after="+after, func(t *testing.T) {
			tpm := newFakeTPM()
			srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc, pending: 1 << 30, after: after}
			_, _, run, err := runExchange(t, srv, tpm)
			if err == nil || !strings.Contains(err.Error(), "still awaits approval after 1h0m0s") || !strings.Contains(err.Error(), "approve it on the server") {
				t.Fatalf("err = %v", err)
			}
			var total time.Duration
			for _, w := range run.waits {
				total += w
				if w < AttestPendingMinWait || w > AttestPendingMaxWait {
					t.Fatalf("waited %v, outside [%v, %v]", w, AttestPendingMinWait, AttestPendingMaxWait)
				}
			}
			if total != AttestPendingPatience {
				t.Errorf("waited %v in all, want %v", total, AttestPendingPatience)
			}
			for i := 1; i < len(run.at); i++ {
				if gap := run.at[i] - run.at[i-1]; gap < AttestPendingTellEvery {
					t.Errorf("console told at %v and %v: less than %v apart", run.at[i-1], run.at[i], AttestPendingTellEvery)
				}
			}
			if len(run.lines) < int(AttestPendingPatience/AttestPendingMaxWait) {
				t.Errorf("console told %d times in an hour", len(run.lines))
			}
			if len(srv.evidences) != 0 || len(tpm.quoted) != 0 {
				t.Errorf("evidence sent without a challenge")
			}
		})
	}
}

// TestAttestRefusals: a 403 fails the phase with the server's reason,
// one line, bounded, without control characters; nothing is sealed.
func TestAttestRefusals(t *testing.T) {
	evil := "EK not enrolled\x1b[2J\r\nmore\x00" + strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name string
		srv  *attestServer
		want string
	}{
		{"start", &attestServer{refuse: evil}, `the server refused this machine's TPM (EK sha256:`},
		{"evidence", &attestServer{refuseEv: "PCR 7 changed: Secure Boot is off"}, `the server refused this machine's evidence: "PCR 7 changed: Secure Boot is off"`},
		{"used token", &attestServer{evidence: "/gone"}, "the challenge was already answered or has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpm := newFakeTPM()
			srv := tc.srv
			srv.t, srv.secret, srv.doc = t, tpm.secret, attestDoc
			_, _, _, err := runExchange(t, srv, tpm)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\x1b\r\n\x00") {
				t.Errorf("control characters in %q", err)
			}
			if len(err.Error()) > 2*maxReasonShown+200 {
				t.Errorf("error of %d bytes: the reason is not bounded", len(err.Error()))
			}
		})
	}
}

// TestAttestSealedForAnother: a document sealed with another secret
// (another TPM's, or changed on the way) is refused as such.
func TestAttestSealedForAnother(t *testing.T) {
	tpm := newFakeTPM()
	srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc, sealWith: []byte("another-TPM's-secret-of-32-bytes")}
	_, _, _, err := runExchange(t, srv, tpm)
	if !errors.Is(err, boot.ErrSealBroken) {
		t.Fatalf("err = %v, want ErrSealBroken", err)
	}
}

// TestAttestMalformed: answers this agent cannot read fail the phase
// naming what was wrong, before anything is activated when it is the
// challenge.
func TestAttestMalformed(t *testing.T) {
	good := func(mod func(*boot.AttestChallenge)) string {
		ch := boot.AttestChallenge{Credential: []byte("credential-blob"), Secret: []byte("encrypted-seed"), Nonce: make([]byte, boot.AttestNonceSize), Evidence: "/evidence/ev-token"}
		mod(&ch)
		b, _ := json.Marshal(ch)
		return string(b)
	}
	for _, tc := range []struct {
		name              string
		challenge, sealed string
		want              string
	}{
		{"challenge not JSON", "<html>", "", "challenge: invalid character"},
		{"challenge unknown field", `{"credential":"YQ==","secret":"YQ==","nonce":"YQ==","evidence":"/e","extra":1}`, "", `unknown field "extra"`},
		{"challenge two values", good(func(*boot.AttestChallenge) {}) + "{}", "", "more than one JSON value"},
		{"short nonce", good(func(c *boot.AttestChallenge) { c.Nonce = []byte("short") }), "", "nonce of 5 bytes, want 32"},
		{"no credential", good(func(c *boot.AttestChallenge) { c.Credential = nil }), "", "credential missing"},
		{"evidence ftp", good(func(c *boot.AttestChallenge) { c.Evidence = "ftp://x/e" }), "", `scheme "ftp"`},
		{"no evidence", good(func(c *boot.AttestChallenge) { c.Evidence = "" }), "", "evidence URL missing"},
		{"sealed not JSON", "", "sealed", "the sealed document: invalid character"},
		{"sealed empty", "", `{"sealed":""}`, "sealed missing"},
		{"sealed short", "", `{"sealed":"AAAA"}`, "sealed document of 3 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpm := newFakeTPM()
			srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc, challenge: tc.challenge, sealed: tc.sealed}
			_, _, _, err := runExchange(t, srv, tpm)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.challenge != "" && len(tpm.activated) != 0 {
				t.Errorf("a malformed challenge was activated")
			}
		})
	}
}

// TestAttestRetries: server errors are retried with the agent's policy;
// its attempts run out with an error saying what to check.
func TestAttestRetries(t *testing.T) {
	tpm := newFakeTPM()
	srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc, fail: 2}
	doc, _, run, err := runExchange(t, srv, tpm)
	if err != nil || doc.Machine != "tpm1" {
		t.Fatalf("doc %q, err %v", doc.Machine, err)
	}
	if len(run.lines) != 2 || !strings.Contains(run.lines[0], "attempt 1 failed (HTTP 500") {
		t.Errorf("console:\n%s", strings.Join(run.lines, "\n"))
	}
	srv = &attestServer{t: t, secret: tpm.secret, doc: attestDoc, fail: 3}
	_, _, _, err = runExchange(t, srv, tpm)
	if err == nil || !strings.Contains(err.Error(), "no answer after 3 attempts") || !strings.Contains(err.Error(), "/attest/...") || strings.Contains(err.Error(), "tok-start") {
		t.Errorf("err = %v", err)
	}
}

// TestAttestNoEventLog: without an event log the phase fails saying
// where it looked, and sends no evidence.
func TestAttestNoEventLog(t *testing.T) {
	tpm := newFakeTPM()
	tpm.log, tpm.logErr = nil, errors.New("open /sys/kernel/security/tpm0/binary_bios_measurements: no such file or directory")
	srv := &attestServer{t: t, secret: tpm.secret, doc: attestDoc}
	_, _, _, err := runExchange(t, srv, tpm)
	if err == nil || !strings.Contains(err.Error(), "read the firmware's TPM event log") || !strings.Contains(err.Error(), "binary_bios_measurements") {
		t.Fatalf("err = %v", err)
	}
	if len(srv.evidences) != 0 {
		t.Errorf("evidence sent without an event log")
	}
}

func TestPendingWait(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", AttestPendingWait},
		{"junk", AttestPendingWait},
		{"0", AttestPendingMinWait},
		{"7", 7 * time.Second},
		{"99999", AttestPendingMaxWait},
		{"Sun, 06 Dec 2026 12:00:30 GMT", 30 * time.Second},
		{"Sun, 06 Dec 2026 11:00:00 GMT", AttestPendingMinWait},
	} {
		if got := pendingWait(tc.in, now); got != tc.want {
			t.Errorf("pendingWait(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestServerText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "(no reason given)"},
		{"  \n\t", "(no reason given)"},
		{"refused: EK unknown\n", `"refused: EK unknown"`},
		{"a\x1b[31mb\x00c\xffd", `"a [31mb c?d"`},
		{`say "no" \ twice`, `"say 'no' \ twice"`},
		{"é" + strings.Repeat("é", maxReasonShown), `"` + strings.Repeat("é", maxReasonShown/2) + `..."`},
	} {
		if got := serverText([]byte(tc.in)); got != tc.want {
			t.Errorf("serverText(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzAttestChallenge: whatever the server answers, reading it never
// panics, and a challenge the agent accepts has what it needs: a nonce
// of the contract's size and an http(s) evidence URL, never https down
// to http; the server's text shows on one printable line.
func FuzzAttestChallenge(f *testing.F) {
	good, _ := json.Marshal(boot.AttestChallenge{Credential: []byte("c"), Secret: []byte("s"), Nonce: make([]byte, boot.AttestNonceSize), Evidence: "/evidence/x"})
	f.Add(good, "https://s/attest/t")
	f.Add([]byte(`{"evidence":"http://other/e"}`), "https://s/attest/t")
	f.Add([]byte("\x1b[2J refused\n"), "http://s/a")
	f.Fuzz(func(t *testing.T, body []byte, base string) {
		if s := serverText(body); strings.ContainsAny(s, "\n\r\x1b\x00") || len(s) > maxReasonShown+5 {
			t.Errorf("serverText(%q) = %q", body, s)
		}
		var ch boot.AttestChallenge
		if decodeAnswer(body, &ch) != nil || checkChallenge(ch) != nil {
			return
		}
		if len(ch.Nonce) != boot.AttestNonceSize {
			t.Errorf("accepted a nonce of %d bytes", len(ch.Nonce))
		}
		u, err := resolveEvidence(base, ch.Evidence)
		if err != nil {
			return
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") || strings.HasPrefix(base, "https:") && strings.HasPrefix(u, "http:") {
			t.Errorf("evidence URL %q from %q and %q", u, base, ch.Evidence)
		}
	})
}
