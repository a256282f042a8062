package boot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Digest is a content digest in the form "sha256:<64 lowercase hex digits>".
// The zero value means "no digest".
type Digest string

// DigestAlgorithm is the only algorithm overboot uses.
const DigestAlgorithm = "sha256"

// ParseDigest parses "sha256:HEX". Hex digits must be lowercase, so that one
// digest has exactly one spelling.
func ParseDigest(s string) (Digest, error) {
	alg, h, ok := strings.Cut(s, ":")
	if !ok || alg != DigestAlgorithm {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>", s)
	}
	if len(h) != 64 {
		return "", fmt.Errorf("digest %q: want 64 hex digits after sha256:, have %d", s, len(h))
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("digest %q: %q is not a lowercase hex digit", s, c)
		}
	}
	return Digest(s), nil
}

// DigestFromSum builds a Digest from a raw SHA-256 sum.
func DigestFromSum(sum []byte) Digest {
	return Digest(DigestAlgorithm + ":" + hex.EncodeToString(sum))
}

// Hex returns the hex part of the digest.
func (d Digest) Hex() string {
	_, h, _ := strings.Cut(string(d), ":")
	return h
}

// Short returns an abbreviation for logs: "sha256:0123456789ab".
func (d Digest) Short() string {
	if len(d) > 19 {
		return string(d[:19])
	}
	return string(d)
}

func (d Digest) String() string { return string(d) }

// MarshalText and UnmarshalText make Digest strict in JSON too.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = ""
		return nil
	}
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Size is an amount of memory or disk: either an absolute number of bytes or
// a percentage of the machine's RAM. The zero value means "the default".
type Size struct {
	Bytes   int64 // absolute size; used when Percent is 0
	Percent int   // 1..100: share of RAM
}

// ParseSize parses "512M", "2G", "1048576", "64K" (binary units) or "50%".
func ParseSize(s string) (Size, error) {
	if s == "" {
		return Size{}, errors.New("empty size")
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 || p != strconv.Itoa(n) {
			return Size{}, fmt.Errorf("size %q: a percentage must be 1%%..100%%", s)
		}
		return Size{Percent: n}, nil
	}
	mult := int64(1)
	num := s
	switch s[len(s)-1] {
	case 'K', 'k':
		mult, num = 1<<10, s[:len(s)-1]
	case 'M', 'm':
		mult, num = 1<<20, s[:len(s)-1]
	case 'G', 'g':
		mult, num = 1<<30, s[:len(s)-1]
	case 'T', 't':
		mult, num = 1<<40, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || num != strconv.FormatInt(n, 10) {
		return Size{}, fmt.Errorf("size %q: want a positive number of bytes with an optional K, M, G or T suffix, or a percentage like 50%%", s)
	}
	if n > (1<<62)/mult {
		return Size{}, fmt.Errorf("size %q: too large", s)
	}
	return Size{Bytes: n * mult}, nil
}

// IsZero reports whether the size is unset.
func (s Size) IsZero() bool { return s.Bytes == 0 && s.Percent == 0 }

// String formats the size in its shortest exact form; ParseSize reads it back.
func (s Size) String() string {
	switch {
	case s.Percent != 0:
		return strconv.Itoa(s.Percent) + "%"
	case s.Bytes == 0:
		return ""
	}
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if s.Bytes%(1<<u.shift) == 0 {
			return strconv.FormatInt(s.Bytes>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(s.Bytes, 10)
}

// Of resolves the size against the machine's total RAM in bytes.
func (s Size) Of(totalRAM int64) int64 {
	if s.Percent != 0 {
		return totalRAM / 100 * int64(s.Percent)
	}
	return s.Bytes
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = Size{}
		return nil
	}
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Action is what the agent does after a failed boot.
type Action string

// The failure actions.
const (
	// ActionReboot reboots after a delay. The default: an unattended lab
	// machine must not leave a root shell on its console.
	ActionReboot Action = "reboot"
	// ActionShell starts u-root's rescue shell on the console.
	ActionShell Action = "shell"
	// ActionPoweroff powers the machine off after the delay.
	ActionPoweroff Action = "poweroff"
)

// ParseAction parses a failure action.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionReboot, ActionShell, ActionPoweroff:
		return a, nil
	}
	return "", fmt.Errorf("%q: want reboot, shell or poweroff", s)
}

// Duration is a time.Duration that reads and writes Go duration syntax
// ("30s", "1m30s") in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration like 10s or 1m30s", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return v, nil
}

// CheckToken reports whether s can travel as one token on a kernel command
// line and in an iPXE script: no whitespace, quotes, control characters, and
// no iPXE setting expansion. It returns a reason, or "" if s is fine.
func CheckToken(s string) string {
	if strings.Contains(s, "${") {
		return "contains ${, which iPXE would expand"
	}
	for _, c := range s {
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			return "contains whitespace"
		case c == '"':
			return "contains a double quote"
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("contains control character %q", c)
		}
	}
	return ""
}

// Root is a root filesystem on a disk rather than an image: today a
// partition of the iSCSI disk the firmware booted from, as the iBFT
// describes it. The zero value means "no disk root".
type Root struct {
	Partition int // 1-based partition number on the iBFT disk
}

// ParseRoot reads "ibft:N" (N a partition number, 1 to 128).
func ParseRoot(v string) (Root, error) {
	n, ok := strings.CutPrefix(v, "ibft:")
	if !ok {
		return Root{}, fmt.Errorf("%q: want ibft:N, partition N of the iSCSI disk the firmware booted from", v)
	}
	part, err := strconv.Atoi(n)
	if err != nil || part < 1 || part > 128 || strconv.Itoa(part) != n {
		return Root{}, fmt.Errorf("%q: partition %q: want a number from 1 to 128", v, n)
	}
	return Root{Partition: part}, nil
}

// IsZero reports whether no disk root is set.
func (r Root) IsZero() bool { return r.Partition == 0 }

func (r Root) String() string {
	if r.IsZero() {
		return ""
	}
	return "ibft:" + strconv.Itoa(r.Partition)
}
