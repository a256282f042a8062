package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/overboot/overboot/server/state"
)

// APITokenPrefix starts every admin token, so a leaked one is recognisable
// (secret scanners look for such prefixes).
const APITokenPrefix = "obt_"

// APITokens is where admin tokens live (server/state).
type APITokens interface {
	AddAPIToken(ctx context.Context, t state.APIToken) error
	APITokenByID(ctx context.Context, id string) (state.APIToken, error)
}

// ErrBadToken: a missing, malformed, unknown or revoked admin token.
var ErrBadToken = errors.New("invalid admin token")

// NewAPIToken creates an admin token named name of scope and returns it:
// the only time the whole token exists outside its holder (the store
// keeps its ID and the SHA-256 of its secret; 256 random bits need no
// slow hash).
func NewAPIToken(ctx context.Context, store APITokens, name string, scope Scope) (string, state.APIToken, error) {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\x00\r\n") {
		return "", state.APIToken{}, fmt.Errorf("token name %q: want 1 to 64 characters on one line", name)
	}
	if _, err := ParseScope(string(scope)); err != nil {
		return "", state.APIToken{}, err
	}
	idb, sec := make([]byte, 8), make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", state.APIToken{}, err
	}
	if _, err := rand.Read(sec); err != nil {
		return "", state.APIToken{}, err
	}
	id, secret := hex.EncodeToString(idb), hex.EncodeToString(sec)
	h := sha256.Sum256([]byte(secret))
	t := state.APIToken{ID: id, Name: name, Scope: string(scope), Hash: hex.EncodeToString(h[:])}
	if err := store.AddAPIToken(ctx, t); err != nil {
		return "", state.APIToken{}, err
	}
	return APITokenPrefix + id + "_" + secret, t, nil
}

// CheckAPIToken verifies a presented admin token and returns its record.
func CheckAPIToken(ctx context.Context, store APITokens, tok string) (state.APIToken, error) {
	rest, ok := strings.CutPrefix(tok, APITokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 16 || len(secret) != 64 {
		return state.APIToken{}, ErrBadToken
	}
	t, err := store.APITokenByID(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return state.APIToken{}, ErrBadToken
	}
	if err != nil {
		return state.APIToken{}, err
	}
	h := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(h[:])), []byte(t.Hash)) != 1 {
		return state.APIToken{}, ErrBadToken
	}
	return t, nil
}
