package fetch

import (
	"net/url"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct {
		in, token, image string
	}{
		{"http://s/doc/tok123", "http://s/doc/...", "http://s/doc/tok123"},
		{"http://s/doc/tok?x=secret", "http://s/doc/...?...", "http://s/doc/tok?..."},
		{"http://s/", "http://s/", "http://s/"},
		{"http://u:pw@s/report/tok", "http://s/report/...", "http://s/report/tok"},
		{"https://s:8443/r/tok#frag", "https://s:8443/r/...", "https://s:8443/r/tok"},
		{"http://s/blobs/sha256/ab%2Fcd", "http://s/blobs/sha256/...", "http://s/blobs/sha256/ab/cd"},
		{"http://[fd00::1]:8080/doc/t", "http://[fd00::1]:8080/doc/...", "http://[fd00::1]:8080/doc/t"},
		{"http://s/\x7f", "(unparsable URL)", "(unparsable URL)"},
	} {
		if got := RedactURL(tt.in); got != tt.token {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.token)
		}
		if got := RedactImageURL(tt.in); got != tt.image {
			t.Errorf("RedactImageURL(%q) = %q, want %q", tt.in, got, tt.image)
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{"http://u:pw@s/doc/tok?x=1#f", "http://s/", "https://s:1/a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, got := range []string{RedactURL(raw), RedactImageURL(raw)} {
			if got == "(unparsable URL)" {
				continue
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatalf("%q redacts to %q, which does not parse: %v", raw, got, err)
			}
			if u.User != nil || (u.RawQuery != "" && u.RawQuery != "...") || u.Fragment != "" {
				t.Fatalf("%q redacts to %q, which keeps user, query or fragment", raw, got)
			}
		}
	})
}
