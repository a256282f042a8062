package server

import (
	"context"
	"sync"
	"time"

	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// A boot document's token is spent before the document is made (one
// winner among servers), and making it needs the store too. When the
// store fails in between (PostgreSQL restarted), the agent is told 503
// and asks again with the same single-use URL: the token is given back,
// so that its next try can work, instead of a boot that can only end in
// "unknown, used or expired URL: reboot". Until it is back in the store,
// a try with it is answered 503 as well, not 404.

// givebacks are the tokens (by hash) being given back. The zero value is
// ready.
type givebacks struct {
	mu      sync.Mutex
	pending map[string]bool
}

func (g *givebacks) set(hash string, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[string]bool{}
	}
	if on {
		g.pending[hash] = true
	} else {
		delete(g.pending, hash)
	}
}

// has reports whether the token of hash is being given back.
func (g *givebacks) has(hash string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending[hash]
}

// giveBackEvery is how often a token is offered back to a store that
// refuses it.
const giveBackEvery = 250 * time.Millisecond

// giveBack puts the spent token tok (t) back into the store, trying again
// until the store takes it, the token expires, or the server closes. The
// agent's next try with it waits for that (see spend).
func (s *Server) giveBack(tok string, t state.BootToken) {
	hash := enroll.HashToken(tok)
	s.given.set(hash, true)
	put := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.db.PutBootToken(ctx, hash, t)
	}
	go func() {
		defer s.given.set(hash, false)
		tick := time.NewTicker(giveBackEvery)
		defer tick.Stop()
		for {
			err := put()
			if err == nil {
				s.log.Info("a boot's document token given back after a failure: the machine's next try can spend it", "mac", t.MAC)
				return
			}
			if time.Now().After(t.Expires) {
				s.log.Warn("a boot's document token could not be given back before it expired: the machine must reboot", "mac", t.MAC, "err", err)
				return
			}
			select {
			case <-s.closing:
				return
			case <-tick.C:
			}
		}
	}()
}
