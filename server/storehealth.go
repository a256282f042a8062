package server

import (
	"context"
	"sync"
	"time"
)

// storeHealth remembers the last check of the state store, so that a
// burst of failing requests checks it once a second at most.
type storeHealth struct {
	mu   sync.Mutex // held during a check: the others wait for its answer
	at   time.Time
	down bool
}

// storeDown reports whether the state store cannot be reached now (a
// PostgreSQL server down or unreachable): checked at most once a second,
// each check bounded by 2 s. A store that answers is not down, whatever
// else failed.
func (s *Server) storeDown(ctx context.Context) bool {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.at) < time.Second {
		return h.down
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err := s.db.Ping(pctx)
	if down := err != nil; down != h.down {
		if down {
			s.log.Error("the state store cannot be reached: answering 503 until it can", "err", err)
		} else {
			s.log.Info("the state store answers again")
		}
		h.down = down
	}
	h.at = time.Now()
	return h.down
}
