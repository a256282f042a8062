package target

import (
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// mutualIQN is a target with mutual CHAP, added by startMutual.
const mutualIQN = testIQN + "-mutual"

var (
	mutualInitiatorCHAP = CHAP{User: "machine3", Secret: "initiator-secret-3"}
	mutualTargetCHAP    = CHAP{User: "target3", Secret: "target-secret-three"}
)

func startMutual(t *testing.T) (*Target, string) {
	t.Helper()
	s, addr, _, _ := startTargetServer(t, func(s *Target) {
		ro := exported(s, testIQN).cfg.LUNs[0]
		if err := s.AddTarget(TargetConfig{IQN: mutualIQN, LUNs: []Backing{ro}, CHAP: mutualInitiatorCHAP, MutualCHAP: &mutualTargetCHAP}); err != nil {
			t.Fatal(err)
		}
	})
	return s, addr
}

// TestCHAPAlgorithms: the target answers a CHAP_A offer with SHA-256
// (7) when it is offered, else MD5 (5), with a challenge as long as the
// digest, and checks the response (and answers mutual CHAP) with that
// algorithm; an offer of neither is refused.
func TestCHAPAlgorithms(t *testing.T) {
	_, addr := startMutual(t)
	good := CHAP{User: testUser, Secret: testPass}
	for _, tc := range []struct {
		offer, alg string
		size       int
	}{
		{"5", iscsiwire.ChapMD5, 16},        // iPXE, libiscsi, iscsid by default
		{"7", iscsiwire.ChapSHA256, 32},     //
		{"7,6,5", iscsiwire.ChapSHA256, 32}, // what Linux's target offers
		{"5,7", iscsiwire.ChapSHA256, 32},   // preferred wherever it is in the offer
		{"8,6,5", iscsiwire.ChapMD5, 16},    // SHA3-256 and SHA-1 unknown here
		{"5," + strings.Repeat("9,", 100) + "7", iscsiwire.ChapSHA256, 32},
	} {
		t.Run(tc.offer[:min(len(tc.offer), 8)], func(t *testing.T) {
			r := newRawLogin(t, addr)
			ch := r.startCHAP("iqn.2026-11.test:m1", testIQN, tc.offer)
			if ch.alg != tc.alg || len(ch.challenge) != tc.size {
				t.Fatalf("offer %s: the target chose CHAP_A=%s with a %d-byte challenge, want %s and %d", tc.offer, ch.alg, len(ch.challenge), tc.alg, tc.size)
			}
			a, err := r.respond(ch, good, 3)
			if err != nil || a.status != 0 {
				t.Fatalf("the right %s response: status 0x%04x, %v", ch.alg, a.status, err)
			}
			// The response under the other algorithm is refused.
			r = newRawLogin(t, addr)
			ch = r.startCHAP("iqn.2026-11.test:m2", testIQN+"-other", tc.offer)
			other := map[string]string{iscsiwire.ChapMD5: iscsiwire.ChapSHA256, iscsiwire.ChapSHA256: iscsiwire.ChapMD5}[ch.alg]
			wrong := ch
			wrong.alg = other
			if a, err := r.respond(wrong, CHAP{User: "machine2", Secret: "another-secret-16"}, 3); !refused(a, err) {
				t.Errorf("a response under %s accepted for a %s challenge", other, ch.alg)
			}
		})
	}

	t.Run("neither", func(t *testing.T) {
		for _, offer := range []string{"6", "8", "", "None", "5 ", "md5"} {
			r := newRawLogin(t, addr)
			if a, err := r.step(0, 0, false, kv("InitiatorName", "iqn.2026-11.test:m1"), kv("SessionType", "Normal"), kv("TargetName", testIQN), kv("AuthMethod", "CHAP")); err != nil || a.status != 0 {
				t.Fatalf("first request: 0x%04x %v", a.status, err)
			}
			a, err := r.step(0, 0, false, kv("CHAP_A", offer))
			if err == nil && a.status != loginAuthFailure {
				t.Errorf("CHAP_A=%q: status 0x%04x, want 0x%04x", offer, a.status, loginAuthFailure)
			}
		}
	})

	t.Run("mutual", func(t *testing.T) {
		for _, offer := range []string{"5", "7"} {
			r := newRawLogin(t, addr)
			ch := r.startCHAP("iqn.2026-11.test:m3", mutualIQN, offer)
			mine := []byte("an initiator challenge of 32 b.")
			a, err := r.respond(ch, mutualInitiatorCHAP, 1, kv("CHAP_I", "77"), kv("CHAP_C", iscsiwire.EncodeBinary(mine)))
			if err != nil || a.status != 0 {
				t.Fatalf("CHAP_A=%s, mutual: status 0x%04x, %v", offer, a.status, err)
			}
			name, _ := iscsiwire.Lookup(a.kvs, "CHAP_N")
			resp, _ := iscsiwire.Lookup(a.kvs, "CHAP_R")
			if err := iscsiwire.VerifyCHAPAlg(ch.alg, mutualTargetCHAP, 77, mine, name, resp); err != nil {
				t.Errorf("CHAP_A=%s: the target's mutual response: %v", offer, err)
			}
			if a, err := r.operational(); err != nil || a.status != 0 {
				t.Errorf("CHAP_A=%s, mutual: operational stage: status 0x%04x, %v", offer, a.status, err)
			}
		}
	})
}
