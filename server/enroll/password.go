package enroll

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: RFC 9106 section 4's second recommended option
// (t=3, 64 MiB, 4 lanes), a 16-byte salt and a 32-byte tag. Stored with
// each hash (PHC string format), so they can change without breaking old
// hashes.
const (
	argonTime    = 3
	argonMemory  = 64 << 10 // KiB
	argonThreads = 4
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MaxPasswordLen bounds what is hashed: a longer password is refused, not
// truncated (and cannot make the server hash megabytes).
const MaxPasswordLen = 256

// MinPasswordLen is the shortest password accepted when one is set.
const MinPasswordLen = 8

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// CheckUserName accepts POSIX-style user names: a lowercase letter or _,
// then up to 31 lowercase letters, digits, '_', '.' or '-'. They name
// disks and iSCSI targets, so nothing else.
func CheckUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: want a lowercase letter or _ then up to 31 of a-z 0-9 _ . -", name)
	}
	return nil
}

// CheckNewPassword says why a password cannot be set.
func CheckNewPassword(pw string) error {
	switch {
	case len(pw) < MinPasswordLen:
		return fmt.Errorf("password: at least %d characters", MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("password: at most %d bytes", MaxPasswordLen)
	case strings.ContainsAny(pw, "\x00\r\n"):
		return errors.New("password: no NUL or line breaks")
	}
	return nil
}

// HashPassword returns the argon2id hash of pw in PHC string format:
// $argon2id$v=19$m=65536,t=3,p=4$SALT$TAG (unpadded base64).
func HashPassword(pw string) (string, error) {
	if err := CheckNewPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	tag := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(tag)), nil
}

// dummyHash is checked against when a user does not exist, so that a
// wrong name costs the same time as a wrong password.
// Made on first use: hashing costs tens of milliseconds.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("overboot-no-such-user")
	if err != nil {
		return "$argon2id$v=19$m=65536,t=3,p=4$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	return h
})

// CheckPassword reports whether pw matches the PHC hash. An empty hash
// (unknown user) is checked against a dummy and never matches.
func CheckPassword(hash, pw string) (bool, error) {
	known := hash != ""
	if !known {
		hash = dummyHash()
	}
	if len(pw) > MaxPasswordLen {
		return false, nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash: not an argon2id PHC string")
	}
	var v int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("password hash: version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m < 8 || m > 1<<22 || t < 1 || t > 100 || p < 1 {
		return false, fmt.Errorf("password hash: parameters %q", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errors.New("password hash: salt")
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 {
		return false, errors.New("password hash: tag")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return known && subtle.ConstantTimeCompare(got, want) == 1, nil
}
