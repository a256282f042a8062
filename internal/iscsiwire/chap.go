package iscsiwire

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
)

// CHAP (RFC 1994) as iSCSI uses it (RFC 7143 section 12.1.3): the
// response is H(identifier || secret || challenge), challenge and
// response as 0x-hex or 0b-base64 numbers. H is MD5 (CHAP_A=5, the one
// RFC 7143 requires) or SHA-256 (CHAP_A=7: CHAP_A carries RFC 1994's
// Algorithm, whose values IANA's "PPP Authentication Algorithms" registry
// assigns; Linux's target and initiator use 7 for SHA-256). Challenges
// are as long as H's digest. The functions without an algorithm
// (ChapResponse, NewChallenge, VerifyCHAP) are MD5's.
const (
	ChapMD5    = "5"
	ChapSHA256 = "7"
	// MinSecretLen: RFC 7143 section 12.1.3 requires secrets of at least
	// 96 bits when IPsec is not used.
	MinSecretLen = 12
	maxSecretLen = 255
)

// chapHash returns alg's hash function, nil if it is not one we know.
func chapHash(alg string) func() hash.Hash {
	switch alg {
	case ChapMD5:
		return md5.New
	case ChapSHA256:
		return sha256.New
	}
	return nil
}

// ChapDigestSize is the length of alg's responses, and of the challenges
// NewChallengeAlg makes: 16 for MD5, 32 for SHA-256, 0 for an algorithm
// we do not know.
func ChapDigestSize(alg string) int {
	if h := chapHash(alg); h != nil {
		return h().Size()
	}
	return 0
}

// ChooseChapAlgorithm picks the algorithm to answer a CHAP_A offer (a
// list such as "7,5") with: SHA-256 if offered, else MD5; ok is false
// when the offer has neither.
func ChooseChapAlgorithm(offer string) (alg string, ok bool) {
	offered := strings.Split(offer, ",")
	for _, a := range []string{ChapSHA256, ChapMD5} {
		for _, o := range offered {
			if o == a {
				return a, true
			}
		}
	}
	return "", false
}

// ChapResponseAlg is alg's response: H(id || secret || challenge).
func ChapResponseAlg(alg string, id byte, secret Secret, challenge []byte) ([]byte, error) {
	newHash := chapHash(alg)
	if newHash == nil {
		return nil, fmt.Errorf("CHAP_A %q: want %s (MD5) or %s (SHA-256)", Trunc(alg), ChapMD5, ChapSHA256)
	}
	h := newHash()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil), nil
}

// NewChallengeAlg returns a fresh identifier and a challenge as long as
// alg's digest, from crypto/rand.
func NewChallengeAlg(alg string) (byte, []byte, error) {
	n := ChapDigestSize(alg)
	if n == 0 {
		return 0, nil, fmt.Errorf("CHAP_A %q: want %s (MD5) or %s (SHA-256)", Trunc(alg), ChapMD5, ChapSHA256)
	}
	b := make([]byte, 1+n)
	if _, err := rand.Read(b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// VerifyCHAPAlg checks an initiator's CHAP_N/CHAP_R against the expected
// credentials for a challenge under alg, in constant time.
func VerifyCHAPAlg(alg string, want CHAP, id byte, challenge []byte, name, resp string) error {
	r, err := DecodeBinary(resp)
	if err != nil {
		return fmt.Errorf("%w: CHAP_R: %v", ErrAuth, err)
	}
	expected, err := ChapResponseAlg(alg, id, want.Secret, challenge)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	okName := subtle.ConstantTimeCompare([]byte(name), []byte(want.User)) == 1
	okResp := subtle.ConstantTimeCompare(r, expected) == 1
	if !okName || !okResp {
		return fmt.Errorf("%w: wrong CHAP name or secret for user %q", ErrAuth, Trunc(name))
	}
	return nil
}

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

// ChapResponse is MD5(id || secret || challenge).
func ChapResponse(id byte, secret Secret, challenge []byte) []byte {
	r, _ := ChapResponseAlg(ChapMD5, id, secret, challenge)
	return r
}

// NewChallenge returns a fresh identifier and a 16-byte challenge (MD5's).
func NewChallenge() (byte, []byte, error) { return NewChallengeAlg(ChapMD5) }

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

// VerifyCHAP checks an initiator's CHAP_N/CHAP_R under MD5 against the
// expected credentials for a challenge, in constant time.
func VerifyCHAP(want CHAP, id byte, challenge []byte, name, resp string) error {
	return VerifyCHAPAlg(ChapMD5, want, id, challenge, name, resp)
}
