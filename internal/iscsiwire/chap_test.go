package iscsiwire

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestChooseChapAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		offer, want string
		ok          bool
	}{
		{"5", ChapMD5, true},
		{"7", ChapSHA256, true},
		{"7,6,5", ChapSHA256, true}, // Linux's target
		{"5,7", ChapSHA256, true},   // SHA-256 wherever it is offered
		{"8,7,6,5", ChapSHA256, true},
		{"6,5", ChapMD5, true},
		{"6", "", false},
		{"", "", false},
		{"55", "", false},
		{"5 ", "", false},
		{"None", "", false},
	} {
		got, ok := ChooseChapAlgorithm(tc.offer)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ChooseChapAlgorithm(%q) = %q, %v; want %q, %v", tc.offer, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCHAPSHA256(t *testing.T) {
	secret := Secret("twelve-bytes-secret")
	ch := bytes.Repeat([]byte{0xa5}, 32)
	want := sha256.Sum256(append(append([]byte{9}, secret...), ch...))
	got, err := ChapResponseAlg(ChapSHA256, 9, secret, ch)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("SHA-256 response %x, %v; want %x", got, err, want)
	}
	c := CHAP{User: "m1", Secret: secret}
	if err := VerifyCHAPAlg(ChapSHA256, c, 9, ch, "m1", EncodeBinary(want[:])); err != nil {
		t.Errorf("good SHA-256 response refused: %v", err)
	}
	md := md5.Sum(append(append([]byte{9}, secret...), ch...))
	for name, resp := range map[string][]byte{
		"MD5's response":     md[:],
		"truncated":          want[:16],
		"one bit off":        append(append([]byte(nil), want[:31]...), want[31]^1),
		"empty":              {},
		"SHA-256 of nothing": func() []byte { s := sha256.Sum256(nil); return s[:] }(),
	} {
		if err := VerifyCHAPAlg(ChapSHA256, c, 9, ch, "m1", EncodeBinary(resp)); !errors.Is(err, ErrAuth) {
			t.Errorf("%s accepted under SHA-256", name)
		}
	}
	if err := VerifyCHAPAlg(ChapMD5, c, 9, ch, "m1", EncodeBinary(want[:])); !errors.Is(err, ErrAuth) {
		t.Errorf("a SHA-256 response accepted under MD5")
	}
	if err := VerifyCHAPAlg("6", c, 9, ch, "m1", EncodeBinary(want[:])); !errors.Is(err, ErrAuth) {
		t.Errorf("an unknown algorithm verified")
	}
	if _, err := ChapResponseAlg("6", 9, secret, ch); err == nil {
		t.Errorf("a response under an unknown algorithm")
	}
}

// TestChallenges: challenges are as long as the digest, and new each
// time; MD5's functions are unchanged.
func TestChallenges(t *testing.T) {
	for alg, n := range map[string]int{ChapMD5: 16, ChapSHA256: 32} {
		if got := ChapDigestSize(alg); got != n {
			t.Errorf("ChapDigestSize(%s) = %d, want %d", alg, got, n)
		}
		seen := map[string]bool{}
		for range 100 {
			_, c, err := NewChallengeAlg(alg)
			if err != nil || len(c) != n {
				t.Fatalf("NewChallengeAlg(%s): %d bytes, %v; want %d", alg, len(c), err, n)
			}
			if seen[string(c)] {
				t.Fatalf("NewChallengeAlg(%s) repeated a challenge", alg)
			}
			seen[string(c)] = true
		}
	}
	if _, _, err := NewChallengeAlg("6"); err == nil {
		t.Errorf("a challenge for an unknown algorithm")
	}
	if _, c, err := NewChallenge(); err != nil || len(c) != 16 {
		t.Errorf("NewChallenge: %d bytes, %v; want MD5's 16", len(c), err)
	}
	secret := Secret("twelve-bytes-secret")
	ch := []byte{1, 2, 3}
	want := md5.Sum(append(append([]byte{4}, secret...), ch...))
	if got := ChapResponse(4, secret, ch); !bytes.Equal(got, want[:]) {
		t.Errorf("ChapResponse is not MD5's: %x, want %x", got, want)
	}
	if err := VerifyCHAP(CHAP{User: "u", Secret: secret}, 4, ch, "u", EncodeBinary(want[:])); err != nil {
		t.Errorf("VerifyCHAP refused MD5's response: %v", err)
	}
}
