package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/overboot/overboot/server/state"
)

// Token purposes: what a single-use token may be spent on.
const (
	PurposeDoc    = "doc"    // GET /doc/TOKEN: the boot document
	PurposeSan    = "san"    // GET /san/TOKEN: the sanboot script
	PurposeMenu   = "menu"   // GET /login/TOKEN?username=&password= or /entry/TOKEN/PROFILE: one choice at a menu
	PurposeReport = "report" // POST /report/TOKEN: the agent's phase reports (not single use)
	// PurposeAttest: POST /attest/TOKEN, the start of a TPM attestation
	// (enroll = tpm); spent when the challenge is made (a machine
	// waiting for approval POSTs it again). Its evidence URL is a
	// session of the store (state.AttestSession), single use too.
	PurposeAttest = "attest"
	// PurposeConsoleLogin: POST /login/TOKEN with the username and
	// password the agent asked for on the console (overboot.login);
	// its answer is the user's boot document.
	PurposeConsoleLogin = "console-login"
)

// TokenTTL is how long a boot token waits for its machine: long enough
// for a kernel and an initramfs to load over a slow link, short enough
// that a leaked one is soon worthless.
const TokenTTL = 5 * time.Minute

// MenuTTL is how long a menu's token waits for a choice (a user typing).
const MenuTTL = 10 * time.Minute

// ConsoleLoginTTL is how long a console login's token waits: the kernel
// and initramfs load, then someone types (a wrong password gets a new
// one).
const ConsoleLoginTTL = 15 * time.Minute

// ReportTTL is how long an agent may report its boot's phases.
const ReportTTL = time.Hour

// TokenStore is where tokens live (server/state).
type TokenStore interface {
	PutBootToken(ctx context.Context, hash string, t state.BootToken) error
	TakeBootToken(ctx context.Context, hash, purpose, address string) (state.BootToken, error)
	PeekBootToken(ctx context.Context, hash, purpose string) (state.BootToken, error)
	ExtendBootToken(ctx context.Context, hash string, until time.Time) error
}

// Tokens issues and spends single-use boot tokens. Only a token's SHA-256
// is stored: a copy of the store does not hold live credentials.
type Tokens struct {
	Store TokenStore
	Now   func() time.Time // default time.Now
}

func (t *Tokens) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

// HashToken is how a token is stored and looked up.
func HashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// NewToken is 32 random bytes in hex (URL- and iPXE-safe).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Issue makes a token for bt (its Address is the only one that may spend
// it) valid for ttl.
func (t *Tokens) Issue(ctx context.Context, bt state.BootToken, ttl time.Duration) (string, error) {
	tok, err := NewToken()
	if err != nil {
		return "", err
	}
	bt.Expires = t.now().Add(ttl)
	if err := t.Store.PutBootToken(ctx, HashToken(tok), bt); err != nil {
		return "", err
	}
	return tok, nil
}

// Put stores tok (from NewToken) for bt, valid for ttl: for a token that
// must be known before its record is complete (an attest token: the
// command line that carries it is part of what it records).
func (t *Tokens) Put(ctx context.Context, tok string, bt state.BootToken, ttl time.Duration) error {
	bt.Expires = t.now().Add(ttl)
	return t.Store.PutBootToken(ctx, HashToken(tok), bt)
}

// Peek reads a token for purpose without spending it (reports).
func (t *Tokens) Peek(ctx context.Context, tok, purpose string) (state.BootToken, error) {
	if len(tok) != 64 {
		return state.BootToken{}, state.ErrNotFound
	}
	return t.Store.PeekBootToken(ctx, HashToken(tok), purpose)
}

// Extend keeps an unspent token valid for ttl from now (never shorter):
// an attest token while its machine waits for an administrator.
func (t *Tokens) Extend(ctx context.Context, tok string, ttl time.Duration) error {
	return t.Store.ExtendBootToken(ctx, HashToken(tok), t.now().Add(ttl))
}

// Spend spends a token for purpose from address. Errors wrap
// state.ErrNotFound (unknown, used, expired or for another purpose) or
// state.ErrWrongAddress (the token stays valid for its machine).
func (t *Tokens) Spend(ctx context.Context, tok, purpose, address string) (state.BootToken, error) {
	if len(tok) != 64 {
		return state.BootToken{}, state.ErrNotFound
	}
	return t.Store.TakeBootToken(ctx, HashToken(tok), purpose, address)
}
