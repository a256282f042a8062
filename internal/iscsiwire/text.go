package iscsiwire

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text key=value limits (RFC 7143 section 6.1: keys up to 63 bytes,
// values up to 255 bytes, or 8192 for some keys).
const (
	maxKeyLen   = 63
	maxValueLen = 8192
	maxTextLen  = 64 << 10
)

// KV is one key=value pair; order matters in negotiation answers.
type KV struct{ Key, Value string }

// ParseText parses NUL-terminated key=value pairs. Duplicate keys,
// malformed pairs and non-UTF-8 are errors.
func ParseText(b []byte) ([]KV, error) {
	if len(b) > maxTextLen {
		return nil, fmt.Errorf("%w: text of %d bytes", ErrProtocol, len(b))
	}
	var out []KV
	seen := map[string]bool{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		var item []byte
		if i < 0 {
			item, b = b, nil
		} else {
			item, b = b[:i], b[i+1:]
		}
		if len(item) == 0 {
			continue // padding
		}
		if !utf8.Valid(item) {
			return nil, fmt.Errorf("%w: text key not UTF-8", ErrProtocol)
		}
		k, v, ok := strings.Cut(string(item), "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: text item %q has no '='", ErrProtocol, Trunc(string(item)))
		case k == "" || len(k) > maxKeyLen:
			return nil, fmt.Errorf("%w: text key %q", ErrProtocol, Trunc(k))
		case len(v) > maxValueLen:
			return nil, fmt.Errorf("%w: value of %s longer than %d bytes", ErrProtocol, k, maxValueLen)
		case seen[k]:
			return nil, fmt.Errorf("%w: key %s twice", ErrProtocol, k)
		}
		for _, c := range k {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == '@' || c == '_') {
				return nil, fmt.Errorf("%w: text key %q", ErrProtocol, Trunc(k))
			}
		}
		seen[k] = true
		out = append(out, KV{k, v})
	}
	return out, nil
}

func Trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// MarshalText encodes pairs as key=value\0...
func MarshalText(kvs []KV) []byte {
	var b bytes.Buffer
	for _, kv := range kvs {
		b.WriteString(kv.Key)
		b.WriteByte('=')
		b.WriteString(kv.Value)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// lookup returns the value of key in kvs.
func Lookup(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}
