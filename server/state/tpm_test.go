package state

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTPMEnrolment(t *testing.T) { eachStore(t, testTPMEnrolment) }

func testTPMEnrolment(t *testing.T, d *DB) {
	ctx := context.Background()
	const mac = "52:54:00:00:00:01"
	if _, err := d.TPMOf(ctx, mac); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown machine: %v", err)
	}
	if _, err := d.ApproveTPM(ctx, mac, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approve with nothing pending: %v", err)
	}
	if err := d.AskTPM(ctx, mac, "sha256:aa", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if tp, _ := d.TPMOf(ctx, mac); tp.Pending != "sha256:aa" || tp.PendingAddress != "192.0.2.1" || tp.EK != "" {
		t.Fatalf("after ask: %+v", tp)
	}
	// Someone else's EK replaced the waiting one: the administrator
	// named the one seen, and the approval is refused, naming the other.
	if err := d.AskTPM(ctx, mac, "sha256:ee", "192.0.2.66"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ApproveTPM(ctx, mac, "sha256:aa"); !errors.Is(err, ErrTPMNotShown) || !strings.Contains(err.Error(), "sha256:ee (from 192.0.2.66)") {
		t.Fatalf("approve a replaced EK: %v", err)
	}
	if err := d.AskTPM(ctx, mac, "sha256:aa", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	tp, err := d.ApproveTPM(ctx, mac, "sha256:aa")
	if err != nil || tp.EK != "sha256:aa" || tp.Pending != "" {
		t.Fatalf("approve: %+v %v", tp, err)
	}
	if err := d.AskTPM(ctx, mac, "sha256:bb", "192.0.2.2"); !errors.Is(err, ErrTPMPinned) {
		t.Errorf("ask when pinned: %v", err)
	}
	if err := d.PinTPM(ctx, mac, "sha256:bb"); !errors.Is(err, ErrTPMPinned) {
		t.Errorf("pin another: %v", err)
	}
	if err := d.PinTPM(ctx, mac, "sha256:aa"); err != nil {
		t.Errorf("pin the pinned one again: %v", err)
	}
	if err := d.RefuseTPM(ctx, mac, "sha256:bb", "192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.SetTPMBaseline(ctx, mac, "sha256:aa", "B1"); !ok || err != nil {
		t.Fatalf("first baseline: %v %v", ok, err)
	}
	if ok, _ := d.SetTPMBaseline(ctx, mac, "sha256:aa", "B2"); ok {
		t.Error("a second baseline replaced the first")
	}
	tp, _ = d.TPMOf(ctx, mac)
	if tp.EK != "sha256:aa" || tp.Baseline != "B1" || tp.Refused != "sha256:bb" || tp.RefusedAddress != "192.0.2.2" || tp.Refusals != 1 {
		t.Fatalf("after refusal and baseline: %+v", tp)
	}
	// Approve again without naming it (a firmware update): the baseline
	// goes, the EK stays.
	if tp, err := d.ApproveTPM(ctx, mac, ""); err != nil || tp.EK != "sha256:aa" || tp.Baseline != "" {
		t.Fatalf("approve the pinned one again: %+v %v", tp, err)
	}
	// The machine's TPM was replaced: the refused EK, named, is pinned,
	// and what the last TPM could read is forgotten.
	if _, err := d.Enter(ctx, Machine{MAC: mac, Profile: "tpm"}, PolicyTPM, Quota{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetHostKeys(ctx, mac, "tpm", "KEYS"); err != nil {
		t.Fatal(err)
	}
	if tp, err := d.ApproveTPM(ctx, mac, "sha256:bb"); err != nil || tp.EK != "sha256:bb" || tp.Refused != "" || tp.Refusals != 1 {
		t.Fatalf("approve the refused one: %+v %v", tp, err)
	}
	if a, err := d.Admission(ctx, mac, "tpm"); err != nil || a.HostKeys != "" {
		t.Errorf("another TPM approved, and the host keys stay: %q %v", a.HostKeys, err)
	}
	if _, err := d.ApproveTPM(ctx, mac, "sha256:zz"); !errors.Is(err, ErrTPMNotShown) || !strings.Contains(err.Error(), "none waits") {
		t.Errorf("approve an EK never shown: %v", err)
	}
	if err := d.PinTPM(ctx, "52:54:00:00:00:02", "sha256:cc"); err != nil {
		t.Errorf("first use: %v", err)
	}
	if all, err := d.TPMs(ctx); err != nil || len(all) != 2 {
		t.Errorf("TPMs: %d %v", len(all), err)
	}
}

func TestAttestSessions(t *testing.T) { eachStore(t, testAttestSessions) }

func testAttestSessions(t *testing.T, d *DB) {
	ctx := context.Background()
	s := AttestSession{MAC: "m", Profile: "p", Address: "192.0.2.1", BootID: 7, EK: "sha256:aa", AK: []byte{1, 2}, Nonce: []byte{3}, Secret: bytes.Repeat([]byte{9}, 32), Served: `{"x":1}`, Expires: time.Now().Add(time.Minute)}
	if err := d.PutAttestSession(ctx, "h1", s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TakeAttestSession(ctx, "h1", "192.0.2.9"); !errors.Is(err, ErrWrongAddress) {
		t.Errorf("another address: %v", err)
	}
	got, err := d.TakeAttestSession(ctx, "h1", "192.0.2.1")
	if err != nil || got.MAC != "m" || got.BootID != 7 || !bytes.Equal(got.Secret, s.Secret) || !bytes.Equal(got.AK, s.AK) || got.Served != s.Served {
		t.Fatalf("take: %+v %v", got, err)
	}
	if _, err := d.TakeAttestSession(ctx, "h1", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("twice: %v", err)
	}
	if err := d.PutBootToken(ctx, "t1", BootToken{Purpose: "attest", MAC: "m", Profile: "p", Address: "192.0.2.1", Expires: time.Now().Add(time.Minute), Served: `{"k":1}`}); err != nil {
		t.Fatal(err)
	}
	if bt, err := d.PeekBootToken(ctx, "t1", "attest"); err != nil || bt.Served != `{"k":1}` {
		t.Errorf("peek: served %q %v", bt.Served, err)
	}
	if bt, err := d.TakeBootToken(ctx, "t1", "attest", "192.0.2.1"); err != nil || bt.Served != `{"k":1}` {
		t.Errorf("take: served %q %v", bt.Served, err)
	}
	s.Expires = time.Now().Add(-time.Second)
	d.PutAttestSession(ctx, "h2", s)
	if _, err := d.TakeAttestSession(ctx, "h2", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired: %v", err)
	}
}

func TestExtendBootToken(t *testing.T) { eachStore(t, testExtendBootToken) }

// testExtendBootToken: a token's expiry (and its served record's) moves
// later, never earlier; a spent token stays spent.
func testExtendBootToken(t *testing.T, d *DB) {
	ctx := context.Background()
	soon := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := d.PutBootToken(ctx, "h", BootToken{Purpose: "attest", MAC: "m", Profile: "p", Address: "192.0.2.1", Expires: soon, Served: `{"k":1}`}); err != nil {
		t.Fatal(err)
	}
	later := soon.Add(time.Hour)
	if err := d.ExtendBootToken(ctx, "h", later); err != nil {
		t.Fatal(err)
	}
	if tok, err := d.PeekBootToken(ctx, "h", "attest"); err != nil || !tok.Expires.Equal(later) || tok.Served != `{"k":1}` {
		t.Fatalf("extended: %+v %v, want expiry %v", tok, err, later)
	}
	if err := d.ExtendBootToken(ctx, "h", soon); err != nil {
		t.Fatal(err)
	}
	if tok, _ := d.PeekBootToken(ctx, "h", "attest"); !tok.Expires.Equal(later) {
		t.Errorf("an earlier expiry shortened the token: %v", tok.Expires)
	}
	if _, err := d.TakeBootToken(ctx, "h", "attest", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	d.ExtendBootToken(ctx, "h", later.Add(time.Hour))
	if _, err := d.TakeBootToken(ctx, "h", "attest", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a spent token extended and spent again: %v", err)
	}
}
