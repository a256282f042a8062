package enroll

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Sessions are the status page's signed-in browsers: a session is
// opened with an admin token and stands for it (it ends when the token
// is revoked: the caller checks the token at each use) until it expires.
// Only a session's SHA-256 is kept, in memory: a server restart signs
// everyone out.
type Sessions struct {
	TTL time.Duration    // default DefaultSessionTTL
	Max int              // default DefaultMaxSessions; past it the oldest goes
	Now func() time.Time // default time.Now

	mu   sync.Mutex // guards byID
	byID map[string]session
}

type session struct {
	tokenID string
	expires time.Time
}

// Session defaults.
const (
	DefaultSessionTTL  = 8 * time.Hour
	DefaultMaxSessions = 1000
)

func (s *Sessions) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Open starts a session for the admin token tokenID and returns its
// secret (the cookie's value) and how long it lasts.
func (s *Sessions) Open(tokenID string) (string, time.Duration, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", 0, err
	}
	id := hex.EncodeToString(b)
	ttl := s.TTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	max := s.Max
	if max == 0 {
		max = DefaultMaxSessions
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]session{}
	}
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
		}
	}
	for len(s.byID) >= max {
		oldest := ""
		for k, v := range s.byID {
			if oldest == "" || v.expires.Before(s.byID[oldest].expires) {
				oldest = k
			}
		}
		delete(s.byID, oldest)
	}
	s.byID[HashToken(id)] = session{tokenID: tokenID, expires: now.Add(ttl)}
	return id, ttl, nil
}

// Token returns the admin token ID a live session stands for.
func (s *Sessions) Token(id string) (string, bool) {
	if len(id) != 64 {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[HashToken(id)]
	if !ok || !s.now().Before(v.expires) {
		return "", false
	}
	return v.tokenID, true
}

// Close ends a session.
func (s *Sessions) Close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, HashToken(id))
}
