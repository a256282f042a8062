package target

import (
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// TestNoWayAroundCHAP: no sequence of login requests reaches full
// feature phase (or the operational stage) without a CHAP response that
// proves the secret.
func TestNoWayAroundCHAP(t *testing.T) {
	_, addr := startMutual(t)
	names := []KV{kv("InitiatorName", "iqn.2026-11.test:m1"), kv("SessionType", "Normal"), kv("TargetName", testIQN)}
	good := CHAP{User: testUser, Secret: testPass}
	for _, tc := range []struct {
		name  string
		login func(r *rawLogin) (loginAnswer, error) // the last step's answer
		want  uint16                                 // its status; 0: in stage 0, no transit
	}{
		{"AuthMethod=None", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 3, true, append(names, kv("AuthMethod", "None"))...)
		}, loginAuthFailure},
		{"no AuthMethod, straight to full feature", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 3, true, names...)
		}, 0},
		{"CHAP or None, straight to full feature", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 3, true, append(names, kv("AuthMethod", "CHAP,None"))...)
		}, 0},
		{"operational stage first", func(r *rawLogin) (loginAnswer, error) {
			return r.step(1, 3, true, append(names, kv("HeaderDigest", "None"))...)
		}, loginAuthFailure},
		{"operational stage after the challenge", func(r *rawLogin) (loginAnswer, error) {
			r.startCHAP("iqn.2026-11.test:m1", testIQN, iscsiwire.ChapMD5)
			return r.operational()
		}, loginAuthFailure},
		{"stage 3", func(r *rawLogin) (loginAnswer, error) {
			return r.step(3, 3, true, names...)
		}, loginInitiatorError},
		{"CHAP_R before a challenge", func(r *rawLogin) (loginAnswer, error) {
			if _, err := r.step(0, 0, false, append(names, kv("AuthMethod", "CHAP"))...); err != nil {
				return loginAnswer{}, err
			}
			return r.step(0, 3, true, kv("CHAP_N", testUser), kv("CHAP_R", iscsiwire.EncodeBinary(make([]byte, 16))))
		}, loginAuthFailure},
		{"CHAP_R in the first request", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 3, true, append(names, kv("AuthMethod", "CHAP"), kv("CHAP_A", "5"), kv("CHAP_N", testUser), kv("CHAP_R", "0x00"))...)
		}, loginAuthFailure},
		{"wrong user, right secret", func(r *rawLogin) (loginAnswer, error) {
			ch := r.startCHAP("iqn.2026-11.test:m1", testIQN, iscsiwire.ChapMD5)
			return r.respond(ch, CHAP{User: "machine2", Secret: testPass}, 3)
		}, loginAuthFailure},
		{"mutual CHAP with none configured", func(r *rawLogin) (loginAnswer, error) {
			ch := r.startCHAP("iqn.2026-11.test:m1", testIQN, iscsiwire.ChapMD5)
			return r.respond(ch, good, 3, kv("CHAP_I", "1"), kv("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"))
		}, loginAuthFailure},
		{"mutual CHAP reflecting our challenge", func(r *rawLogin) (loginAnswer, error) {
			ch := r.startCHAP("iqn.2026-11.test:m3", mutualIQN, iscsiwire.ChapMD5)
			return r.respond(ch, mutualInitiatorCHAP, 3, kv("CHAP_I", "1"), kv("CHAP_C", iscsiwire.EncodeBinary(ch.challenge)))
		}, loginAuthFailure},
		{"duplicate key", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 0, false, append(names, kv("AuthMethod", "CHAP"), kv("AuthMethod", "None"))...)
		}, loginInitiatorError},
		{"key too long", func(r *rawLogin) (loginAnswer, error) {
			return r.step(0, 0, false, append(names, kv(strings.Repeat("K", 64), "x"))...)
		}, loginInitiatorError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawLogin(t, addr)
			a, err := tc.login(r)
			if err != nil {
				t.Fatalf("the connection ended: %v", err)
			}
			if a.status != tc.want {
				t.Fatalf("status 0x%04x, want 0x%04x", a.status, tc.want)
			}
			if tc.want != 0 {
				return
			}
			// Still in the security stage: no transit, and the
			// operational stage is refused.
			if a.flags&0x80 != 0 || a.flags>>2&3 != 0 {
				t.Fatalf("answer flags 0x%02x: the target left the security stage without CHAP", a.flags)
			}
			if a, err := r.operational(); err == nil && a.status != loginAuthFailure {
				t.Fatalf("the operational stage without CHAP: status 0x%04x", a.status)
			}
		})
	}
}

// TestChallengesFresh: every login gets a new challenge from the
// target, 16 bytes under MD5, 32 under SHA-256, and a new identifier
// most of the time.
func TestChallengesFresh(t *testing.T) {
	_, addr, _, _ := startTargetServer(t, func(s *Target) { s.SetLimits(Limits{PerAddress: 100}) })
	for alg, size := range map[string]int{iscsiwire.ChapMD5: 16, iscsiwire.ChapSHA256: 32} {
		seen := map[string]bool{}
		ids := map[byte]bool{}
		for range 20 {
			r := newRawLogin(t, addr)
			ch := r.startCHAP("iqn.2026-11.test:m1", testIQN, alg)
			r.nc.Close()
			if len(ch.challenge) != size {
				t.Fatalf("CHAP_A=%s: a %d-byte challenge, want %d", alg, len(ch.challenge), size)
			}
			if seen[string(ch.challenge)] {
				t.Fatalf("CHAP_A=%s: a challenge repeated", alg)
			}
			seen[string(ch.challenge)] = true
			ids[ch.id] = true
		}
		if len(ids) < 5 {
			t.Errorf("CHAP_A=%s: %d identifiers in 20 logins", alg, len(ids))
		}
	}
}
