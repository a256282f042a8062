package server

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overboot/overboot/server/answer"
)

// storeHealth remembers the last check of the state store, so that a
// burst of failing requests checks it once a second at most.
type storeHealth struct {
	mu   sync.Mutex // held during a check: the others wait for its answer
	at   time.Time
	down bool
	// last is down as of the last check, read without waiting for one
	// (storeWasDown).
	last atomic.Bool
}

// storeWasDown reports whether the last check found the store down,
// without checking again or waiting for a check in progress: for what
// can do without the store (a download's boot event).
func (s *Server) storeWasDown() bool { return s.health.last.Load() }

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
		h.last.Store(down)
	}
	h.at = time.Now()
	return h.down
}

// StoreWaitMessage is what a machine's console shows while the server's
// state store cannot be reached (the server's name follows it).
const StoreWaitMessage = "the server's state store is unavailable: waiting"

// failScript answers a failed script request (iPXE's /ipxe, a menu's
// choice, a login) with code and why, as fail does, except that a 500
// while the state store cannot be reached becomes a script that says so,
// waits RetryAfter seconds and asks for the machine's script again: iPXE
// shows a 200's script only, so that a 503 would wait silently (its HTTP
// code retries a 503 with Retry-After) where a machine's console should
// say why it waits. The machine goes on by itself once the store answers.
func (s *Server) failScript(w http.ResponseWriter, r *http.Request, code int, why string) {
	if code == http.StatusInternalServerError && s.storeDown(r.Context()) {
		if base, err := s.base(r); err == nil {
			s.metrics.Refused("store_down")
			s.reply(w, r, http.StatusOK, answer.Wait{Server: base, Message: answer.Text(StoreWaitMessage + " (server " + s.label(base) + ")"), Wait: RetryAfter * time.Second})
			return
		}
	}
	s.fail(w, r, code, why)
}

// label names this server for a machine's console: its registered name,
// or else the base URL the machine reached it at.
func (s *Server) label(base string) string {
	if n := s.Name(); n != "" {
		return n + " at " + base
	}
	return base
}
