package initagent

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// The Attest step's exchange (boot/attest.go), apart from the TPM: the
// TPM's side is an AttestTPM (tpm_linux.go's is the machine's).
//
//	POST AttestStart -> 202 (pending approval: wait, ask again)
//	                 -> 403 (refused: the reason)
//	                 -> 200 AttestChallenge
//	activate the credential, quote the PCRs over the nonce
//	POST AttestEvidence -> 403 (refused) | 200 AttestSealed
//	OpenDocument(secret, sealed) -> the boot document
//
// The activated secret lives in memory for the exchange only: it is
// never shown, never written anywhere, and cleared at its end.

// AttestTPM is what the Attest step needs of a TPM 2.0.
type AttestTPM interface {
	// EK returns the endorsement key's public part (PKIX DER) and its
	// certificate (DER; nil when the TPM holds none).
	EK() (pub, cert []byte, err error)
	// NewAK makes a new attestation key in the TPM.
	NewAK() (boot.AKParams, error)
	// ActivateCredential (TPM2_ActivateCredential with the EK and the
	// AK) returns the secret the credential carries.
	ActivateCredential(credential, secret []byte) ([]byte, error)
	// Quote quotes the PCRs over nonce with the AK (the SHA-256 bank,
	// PCRs 0-23) and returns the quotes and the values they cover.
	Quote(nonce []byte) ([]boot.TPMQuote, []boot.TPMPCR, error)
	// EventLog returns the firmware's TCG event log.
	EventLog() ([]byte, error)
}

// How long the agent waits for an administrator to approve its TPM, and
// how it asks again meanwhile.
const (
	// AttestPendingPatience bounds the wait for an approval.
	AttestPendingPatience = time.Hour
	// AttestPendingMinWait and AttestPendingMaxWait clamp the
	// Retry-After of a 202 (pending) answer; AttestPendingWait is the
	// wait when it has none.
	AttestPendingMinWait = 5 * time.Second
	AttestPendingMaxWait = time.Minute
	AttestPendingWait    = 10 * time.Second
	// AttestPendingTellEvery is how often the console hears the agent
	// still waits for the approval.
	AttestPendingTellEvery = 30 * time.Second
)

// maxAttestAnswer bounds an answer of the server: a sealed document (a
// boot document and the seal's overhead, in base64 in JSON) and room.
const maxAttestAnswer = 2*boot.MaxDocumentSize + 64<<10

// maxReasonShown bounds a server's reason as the console shows it.
const maxReasonShown = 300

// ErrNoTPM is the Attest step's error on a machine without a TPM 2.0.
var ErrNoTPM = errors.New("no TPM 2.0 found (enroll = tpm needs one)")

// attestExchange runs one Attest step against a server.
type attestExchange struct {
	Client   *http.Client // nil: fetch.DefaultClient()
	Step     Attest
	TPM      AttestTPM
	Sleep    func(context.Context, time.Duration) error // nil: a timer
	Now      func() time.Time                           // nil: time.Now
	Progress func(Phase, string)                        // console lines (nil: none)
}

// run performs the exchange and returns the opened document and a note
// for the console (the EK's fingerprint, what was quoted).
func (x attestExchange) run(ctx context.Context) (boot.Document, string, error) {
	where := fetch.RedactURL(x.Step.URL)
	var took attestTimes
	mark := x.now()
	lap := func(d *time.Duration) { now := x.now(); *d = now.Sub(mark); mark = now }
	ek, ekCert, err := x.TPM.EK()
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("read the TPM's endorsement key: %w", err)
	}
	fp := EKFingerprint(ek)
	lap(&took.ek)
	ak, err := x.TPM.NewAK()
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("make an attestation key in the TPM: %w", err)
	}
	lap(&took.ak)
	start, err := json.Marshal(boot.AttestStart{EK: ek, EKCert: ekCert, AK: ak})
	if err != nil {
		return boot.Document{}, "", err
	}
	ch, err := x.challenge(ctx, start, fp)
	if err != nil {
		return boot.Document{}, "", err
	}
	lap(&took.start)
	evidenceURL, err := resolveEvidence(x.Step.URL, ch.Evidence)
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("attest %s: challenge: %w: %s", where, err, disagree)
	}

	secret, err := x.TPM.ActivateCredential(ch.Credential, ch.Secret)
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("attest %s: activate the server's credential in the TPM: %w: was it made for this TPM's EK (%s)?", where, err, fp)
	}
	defer clear(secret)
	lap(&took.activate)
	proof, err := boot.AttestProof(secret, ch.Nonce)
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("attest %s: %w", where, err)
	}
	quotes, pcrs, err := x.TPM.Quote(ch.Nonce)
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("quote the TPM's PCRs: %w", err)
	}
	lap(&took.quote)
	log, err := x.TPM.EventLog()
	if err == nil && len(log) == 0 {
		err = errors.New("empty")
	}
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("read the firmware's TPM event log: %w: did the firmware hand the kernel one (UEFI with a TPM), is securityfs mounted at %s?", err, SecurityFS)
	}
	evidence, err := json.Marshal(boot.AttestEvidence{Proof: proof, Quotes: quotes, PCRs: pcrs, EventLog: log})
	if err != nil {
		return boot.Document{}, "", err
	}

	ewhere := fetch.RedactURL(evidenceURL)
	lap(&took.log)
	ans, err := x.post(ctx, evidenceURL, evidence)
	if err != nil {
		return boot.Document{}, "", unanswered("attest evidence "+ewhere, err)
	}
	switch ans.code {
	case http.StatusOK:
	case http.StatusForbidden:
		return boot.Document{}, "", fmt.Errorf("attest %s: the server refused this machine's evidence: %s", ewhere, serverText(ans.body))
	case http.StatusNotFound, http.StatusGone:
		return boot.Document{}, "", fmt.Errorf("attest evidence %s: HTTP %d: the challenge was already answered or has expired: reboot the machine to attest again", ewhere, ans.code)
	default:
		return boot.Document{}, "", fmt.Errorf("attest evidence %s: HTTP %d where the sealed document was due: %s", ewhere, ans.code, disagree)
	}
	var sealed boot.AttestSealed
	if err := decodeAnswer(ans.body, &sealed); err != nil || len(sealed.Sealed) == 0 {
		if err == nil {
			err = errors.New("sealed missing")
		}
		return boot.Document{}, "", fmt.Errorf("attest evidence %s: the sealed document: %w: %s", ewhere, err, disagree)
	}
	doc, err := boot.OpenDocument(secret, sealed.Sealed)
	if err != nil {
		return boot.Document{}, "", fmt.Errorf("attest evidence %s: %w", ewhere, err)
	}
	lap(&took.evidence)
	return doc, fmt.Sprintf("EK %s, %d PCRs quoted, event log of %d bytes: document opened (%s)", fp, len(pcrs), len(log), took), nil
}

// attestTimes is where an attestation's time went: the TPM's operations
// and the server's two answers (each with its round trip), for the
// console and the figures.
type attestTimes struct {
	ek, ak, start, activate, quote, log, evidence time.Duration
}

func (t attestTimes) String() string {
	s := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	return "TPM: ek " + s(t.ek) + ", ak " + s(t.ak) + ", activate " + s(t.activate) + ", quote " + s(t.quote) + ", event log " + s(t.log) +
		"; server: challenge " + s(t.start) + ", evidence and seal " + s(t.evidence)
}

// disagree ends the errors of answers this agent cannot read.
const disagree = "the server and this agent disagree on the attestation exchange: are they the same overboot version?"

// challenge POSTs the AttestStart until the server answers with a
// challenge, waiting while the machine's TPM awaits approval.
func (x attestExchange) challenge(ctx context.Context, start []byte, fp string) (boot.AttestChallenge, error) {
	where := fetch.RedactURL(x.Step.URL)
	var pendingSince, told time.Time
	for {
		ans, err := x.post(ctx, x.Step.URL, start)
		if err != nil {
			return boot.AttestChallenge{}, unanswered("attest "+where, err)
		}
		switch ans.code {
		case http.StatusOK:
			var ch boot.AttestChallenge
			if err := decodeAnswer(ans.body, &ch); err != nil {
				return boot.AttestChallenge{}, fmt.Errorf("attest %s: challenge: %w: %s", where, err, disagree)
			}
			if err := checkChallenge(ch); err != nil {
				return boot.AttestChallenge{}, fmt.Errorf("attest %s: challenge: %w: %s", where, err, disagree)
			}
			return ch, nil
		case http.StatusAccepted:
		case http.StatusForbidden:
			return boot.AttestChallenge{}, fmt.Errorf("attest %s: the server refused this machine's TPM (EK %s): %s", where, fp, serverText(ans.body))
		case http.StatusNotFound, http.StatusGone:
			return boot.AttestChallenge{}, fmt.Errorf("attest %s: HTTP %d: the token was already used or has expired: reboot the machine to get a new one", where, ans.code)
		default:
			return boot.AttestChallenge{}, fmt.Errorf("attest %s: HTTP %d where a challenge was due: %s", where, ans.code, disagree)
		}
		// 202: pending approval.
		now := x.now()
		if pendingSince.IsZero() {
			pendingSince = now
		}
		waited := now.Sub(pendingSince)
		if waited >= AttestPendingPatience {
			return boot.AttestChallenge{}, fmt.Errorf("attest %s: this machine's TPM (EK %s) still awaits approval after %v (the server says: %s): approve it on the server, then reboot the machine",
				where, fp, AttestPendingPatience, serverText(ans.body))
		}
		wait := pendingWait(ans.retryAfter, now)
		if told.IsZero() || now.Sub(told) >= AttestPendingTellEvery {
			told = now
			x.progress(fmt.Sprintf("the server says: %s; this machine's TPM (EK %s) awaits approval: asking again every %v (waited %v of at most %v)",
				serverText(ans.body), fp, wait, waited.Round(time.Second), AttestPendingPatience))
		}
		if err := x.sleep(ctx, min(wait, AttestPendingPatience-waited)); err != nil {
			return boot.AttestChallenge{}, err
		}
	}
}

// checkChallenge checks what the agent needs of a challenge.
func checkChallenge(ch boot.AttestChallenge) error {
	switch {
	case len(ch.Credential) == 0:
		return errors.New("credential missing")
	case len(ch.Secret) == 0:
		return errors.New("secret missing")
	case len(ch.Nonce) != boot.AttestNonceSize:
		return fmt.Errorf("nonce of %d bytes, want %d", len(ch.Nonce), boot.AttestNonceSize)
	case ch.Evidence == "":
		return errors.New("evidence URL missing")
	}
	return nil
}

// resolveEvidence resolves the challenge's evidence URL against the
// attest URL: absolute, or relative to it; http or https, and never from
// https down to http.
func resolveEvidence(base, evidence string) (string, error) {
	b, err := neturl.Parse(base)
	if err != nil {
		return "", fmt.Errorf("attest URL: %w", err)
	}
	e, err := neturl.Parse(evidence)
	if err != nil {
		return "", errors.New("evidence URL unparsable")
	}
	u := b.ResolveReference(e)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("evidence URL of scheme %q: want http or https", u.Scheme)
	case b.Scheme == "https" && u.Scheme == "http":
		return "", errors.New("evidence URL over http after an attest URL over https")
	case u.Host == "":
		return "", errors.New("evidence URL without a host")
	}
	return u.String(), nil
}

// attestAnswer is an answer the exchange reads: 200, 202, 403, 404, 410.
type attestAnswer struct {
	code       int
	body       []byte
	retryAfter string
}

// post POSTs body to url with the agent's retry policy (package fetch):
// connection errors, stalls and 5xx are retried, a 503 with Retry-After
// waited out as fetchDocument does; any other 4xx is final.
func (x attestExchange) post(ctx context.Context, url string, body []byte) (attestAnswer, error) {
	client := fetch.WithRetryAfter(x.Client)
	stall := cmp.Or(x.Step.Stall, fetch.DefaultStall)
	progress := x.Progress
	if progress == nil {
		progress = func(Phase, string) {}
	}
	pol := fetch.Policy{Attempts: max(x.Step.Attempts, 1), Stall: stall, Sleep: x.Sleep,
		Retrying: retrying(PhaseAttest, progress), Waiting: storeWaiting(PhaseAttest, url, progress)}
	var ans attestAnswer
	err := pol.Retry(ctx, func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, stall)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fetch.Permanent(errors.New("bad URL"))
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			var ue *neturl.Error
			if errors.As(err, &ue) { // it quotes the URL and its token
				err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
			}
			return err
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusAccepted, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		default:
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			return &fetch.StatusError{Code: resp.StatusCode, Status: resp.Status}
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAttestAnswer+1))
		if err != nil {
			return fmt.Errorf("HTTP %s: body: %w", resp.Status, err)
		}
		if len(b) > maxAttestAnswer {
			return fetch.Permanent(fmt.Errorf("HTTP %s: answer larger than %d bytes", resp.Status, maxAttestAnswer))
		}
		ans = attestAnswer{code: resp.StatusCode, body: b, retryAfter: resp.Header.Get("Retry-After")}
		return nil
	})
	return ans, err
}

// unanswered explains a request that got no usable answer.
func unanswered(what string, err error) error {
	var ex *fetch.ExhaustedError
	if errors.As(err, &ex) {
		return fmt.Errorf("%s: no answer after %d attempts: %w: is the server running and reachable from this machine?", what, ex.Attempts, ex.Err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// decodeAnswer reads a JSON answer strictly, as the server reads what
// the agent sends (boot.ParseAttestStart).
func decodeAnswer(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// pendingWait is the wait a 202's Retry-After asks (seconds, or an HTTP
// date; RFC 9110 10.2.3), clamped to [AttestPendingMinWait,
// AttestPendingMaxWait]; AttestPendingWait without one.
func pendingWait(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	d := AttestPendingWait
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, AttestPendingMinWait), AttestPendingMaxWait)
}

// serverText is a server's text answer as the console may show it: valid
// UTF-8, printable, on one line, at most maxReasonShown bytes, in double
// quotes (those inside become single ones).
func serverText(b []byte) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), 4*maxReasonShown)]), "?")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case unicode.IsPrint(r):
			return r
		}
		return ' '
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReasonShown {
		cut := maxReasonShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	if s == "" {
		return "(no reason given)"
	}
	return `"` + s + `"`
}

// EKFingerprint names a TPM by its EK (PKIX DER) as the console and the
// server's approval show it: sha256: and the hex of its SHA-256.
func EKFingerprint(ek []byte) string {
	sum := sha256.Sum256(ek)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (x attestExchange) now() time.Time {
	if x.Now == nil {
		return time.Now()
	}
	return x.Now()
}

func (x attestExchange) sleep(ctx context.Context, d time.Duration) error {
	if x.Sleep != nil {
		return x.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

func (x attestExchange) progress(line string) {
	if x.Progress != nil {
		x.Progress(PhaseAttest, line)
	}
}
