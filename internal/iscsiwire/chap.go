package iscsiwire

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// CHAP (RFC 1994) as iSCSI uses it (RFC 7143 section 12.1.3): MD5 only
// (CHAP_A=5), challenge and response as 0x-hex or 0b-base64 numbers.
const (
	ChapMD5         = "5"
	chapChallengeSz = 16
	// MinSecretLen: RFC 7143 section 12.1.3 requires secrets of at least
	// 96 bits when IPsec is not used.
	MinSecretLen = 12
	maxSecretLen = 255
)

// ErrAuth is an authentication failure.
var ErrAuth = errors.New("authentication failed")

// Secret is a CHAP secret. It never prints: String and LogValue redact.
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (s Secret) GoString() string           { return "iscsi.Secret([redacted])" }
func (s Secret) Format(f fmt.State, _ rune) { f.Write([]byte("[redacted]")) }

// CHAP is one side's credentials.
type CHAP struct {
	User   string
	Secret Secret
}

// Validate checks the lengths RFC 7143 asks for.
func (c CHAP) Validate() error {
	switch {
	case c.User == "" || len(c.User) > 255 || strings.ContainsAny(c.User, "\x00="):
		return fmt.Errorf("chap user %q: want 1 to 255 bytes without NUL or '='", c.User)
	case len(c.Secret) < MinSecretLen || len(c.Secret) > maxSecretLen:
		return fmt.Errorf("chap secret for %s: want %d to %d bytes (RFC 7143 12.1.3), have %d", c.User, MinSecretLen, maxSecretLen, len(c.Secret))
	}
	return nil
}

// chapResponse is MD5(id || secret || challenge).
func ChapResponse(id byte, secret Secret, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// newChallenge returns a fresh identifier and challenge.
func NewChallenge() (byte, []byte, error) {
	b := make([]byte, 1+chapChallengeSz)
	if _, err := rand.Read(b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// encodeBinary writes a binary value as iSCSI 0x-hex.
func EncodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// decodeBinary reads a 0x-hex or 0b-base64 value (RFC 7143 section 6.1).
func DecodeBinary(s string) ([]byte, error) {
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		return hex.DecodeString(h)
	case len(s) > 2 && (s[:2] == "0b" || s[:2] == "0B"):
		return base64.StdEncoding.DecodeString(s[2:])
	}
	return nil, fmt.Errorf("binary value %q: want 0x<hex> or 0b<base64>", Trunc(s))
}

// verifyCHAP checks an initiator's CHAP_N/CHAP_R against the expected
// credentials for a challenge, in constant time.
func VerifyCHAP(want CHAP, id byte, challenge []byte, name, resp string) error {
	r, err := DecodeBinary(resp)
	if err != nil {
		return fmt.Errorf("%w: CHAP_R: %v", ErrAuth, err)
	}
	expected := ChapResponse(id, want.Secret, challenge)
	okName := subtle.ConstantTimeCompare([]byte(name), []byte(want.User)) == 1
	okResp := subtle.ConstantTimeCompare(r, expected) == 1
	if !okName || !okResp {
		return fmt.Errorf("%w: wrong CHAP name or secret for user %q", ErrAuth, name)
	}
	return nil
}
