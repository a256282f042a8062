package enroll

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("hash %q", h)
	}
	for _, tc := range []struct {
		name, hash, pw string
		want           bool
	}{
		{"right", h, "correct horse", true},
		{"wrong", h, "correct horsE", false},
		{"empty", h, "", false},
		{"unknown user", "", "correct horse", false},
		{"too long", h, strings.Repeat("x", MaxPasswordLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := CheckPassword(tc.hash, tc.pw)
			if err != nil || ok != tc.want {
				t.Errorf("CheckPassword = %v, %v; want %v", ok, err, tc.want)
			}
		})
	}
	if h2, _ := HashPassword("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"$argon2i$v=19$m=1,t=1,p=1$AA$AA", "plain", "$argon2id$v=19$m=999999999,t=3,p=4$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := CheckPassword(bad, "x"); err == nil {
			t.Errorf("accepted hash %q", bad)
		}
	}
	for _, pw := range []string{"short", "line\nbreak1", strings.Repeat("x", MaxPasswordLen+1)} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("accepted password %q", pw)
		}
	}
}

func TestUserNames(t *testing.T) {
	for name, ok := range map[string]bool{"alice": true, "_svc": true, "a.b-c_9": true, "Alice": false, "9lives": false, "": false, "a b": false, "a/b": false, strings.Repeat("a", 33): false} {
		if err := CheckUserName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func TestTokens(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tk := &Tokens{Store: db}
	tok, err := tk.Issue(ctx, state.BootToken{Purpose: PurposeDoc, MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, time.Minute)
	if err != nil || len(tok) != 64 {
		t.Fatalf("issue: %q %v", tok, err)
	}
	if _, err := tk.Spend(ctx, tok, PurposeDoc, "192.0.2.2"); !errors.Is(err, state.ErrWrongAddress) {
		t.Errorf("another address: %v", err)
	}
	if _, err := tk.Spend(ctx, tok, PurposeDoc, "192.0.2.1"); err != nil {
		t.Errorf("its own address: %v", err)
	}
	if _, err := tk.Spend(ctx, tok, PurposeDoc, "192.0.2.1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("twice: %v", err)
	}
	if _, err := tk.Spend(ctx, "short", PurposeDoc, "192.0.2.1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("malformed: %v", err)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := &Limiter{Every: time.Second, Burst: 3, MaxKeys: 2, Now: func() time.Time { return now }}
	for i := 0; i < 3; i++ {
		if !l.Allow("a") {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.Allow("a") {
		t.Error("past the burst allowed")
	}
	if !l.Allow("b") {
		t.Error("another key refused")
	}
	if l.Allow("c") {
		t.Error("a key past MaxKeys allowed")
	}
	now = now.Add(time.Second)
	if !l.Allow("a") || l.Allow("a") {
		t.Error("refill is not one per Every")
	}
	now = now.Add(time.Hour)
	if !l.Allow("c") {
		t.Error("full buckets were not forgotten")
	}
}

func TestDecide(t *testing.T) {
	approved := &state.Admission{MAC: "m", Profile: "lab", Policy: "approve", Address: "192.0.2.1"}
	for _, tc := range []struct {
		name   string
		policy config.Enroll
		adm    *state.Admission
		addr   string
		want   Decision
	}{
		{"open, new", config.EnrollOpen, nil, "192.0.2.1", Decision{Step: Enter}},
		{"open, admitted", config.EnrollOpen, &state.Admission{Policy: "open"}, "192.0.2.1", Decision{Step: Boot}},
		{"open-insecure, admitted under open", config.EnrollOpenInsecure, &state.Admission{Policy: "open"}, "192.0.2.1", Decision{Step: Enter}},
		{"login, new", config.EnrollLogin, nil, "192.0.2.1", Decision{Step: Enter}},
		{"approve, new", config.EnrollApprove, nil, "192.0.2.1", Decision{Step: Ask, Why: "machine m waits for approval (overboot machine approve m --address 192.0.2.1)"}},
		{"approve, admitted under open", config.EnrollApprove, &state.Admission{Policy: "open", Address: "192.0.2.1"}, "192.0.2.1", Decision{Step: Ask, Why: "machine m waits for approval (overboot machine approve m --address 192.0.2.1)"}},
		{"approved here", config.EnrollApprove, approved, "192.0.2.1", Decision{Step: Boot}},
		{"approved elsewhere", config.EnrollApprove, approved, "192.0.2.66", Decision{Step: Conflict, Why: "machine m is approved at another address, not at 192.0.2.66: refused (an administrator can move it: overboot machine approve m --address 192.0.2.66)"}},
		{"imported", config.EnrollApprove, &state.Admission{Policy: "approve"}, "192.0.2.5", Decision{Step: Boot, Pin: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.policy, "m", tc.adm, tc.addr); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		have, needs Scope
		want        bool
	}{
		{ScopeRead, ScopeRead, true},
		{ScopeRead, ScopeOperate, false},
		{ScopeOperate, ScopeRead, true},
		{ScopeOperate, ScopeAdmin, false},
		{ScopeAdmin, ScopeOperate, true},
		{"", ScopeRead, false},
		{"root", ScopeRead, false},
	} {
		if got := tc.have.Allows(tc.needs); got != tc.want {
			t.Errorf("%q allows %q = %v", tc.have, tc.needs, got)
		}
	}
	if _, err := ParseScope("root"); err == nil {
		t.Error("scope root parsed")
	}
}

func TestSessions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Sessions{TTL: time.Hour, Max: 2, Now: func() time.Time { return now }}
	a, _, _ := s.Open("tokA")
	if id, ok := s.Token(a); !ok || id != "tokA" {
		t.Fatalf("session: %q %v", id, ok)
	}
	if _, ok := s.Token(a[:63] + "x"); ok {
		t.Error("a made-up session passed")
	}
	now = now.Add(time.Minute)
	b, _, _ := s.Open("tokB")
	now = now.Add(time.Minute)
	s.Open("tokC") // past Max: the oldest (a) goes
	if _, ok := s.Token(a); ok {
		t.Error("the oldest session outlived Max")
	}
	s.Close(b)
	if _, ok := s.Token(b); ok {
		t.Error("a closed session lives on")
	}
	c, _, _ := s.Open("tokD")
	now = now.Add(2 * time.Hour)
	if _, ok := s.Token(c); ok {
		t.Error("an expired session lives on")
	}
}
