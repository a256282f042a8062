package enroll

import (
	"sync"
	"time"

	"github.com/overboot/overboot/server/state"
)

// Limiter is a token bucket per key (a client address, a user name):
// Burst requests at once, then one per Every. It forgets keys whose bucket
// is full again, so made-up keys cannot grow it without bound beyond
// MaxKeys (past which new keys are refused until some are forgotten).
type Limiter struct {
	Every   time.Duration
	Burst   int
	MaxKeys int              // default 100,000
	Now     func() time.Time // default time.Now

	mu      sync.Mutex // guards buckets and swept
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter of burst requests, then one per every.
func NewLimiter(every time.Duration, burst int) *Limiter {
	return &Limiter{Every: every, Burst: burst}
}

// Allow takes one request from key's bucket, if it has one.
func (l *Limiter) Allow(key string) bool {
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	full := time.Duration(l.Burst) * l.Every
	if now.Sub(l.swept) > full {
		for k, b := range l.buckets {
			if now.Sub(b.at) >= full {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		max := l.MaxKeys
		if max == 0 {
			max = 100_000
		}
		if len(l.buckets) >= max {
			return false
		}
		b = &bucket{tokens: float64(l.Burst), at: now}
		l.buckets[key] = b
	}
	var ok bool
	b.tokens, ok = state.Refill(b.tokens, b.at, now, l.Every, l.Burst)
	b.at = now
	return ok
}
