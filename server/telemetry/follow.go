package telemetry

import (
	"context"
	"time"

	"github.com/overboot/overboot/server/state"
)

// Boots is what Follow reads: the boots updated since a time.
type Boots interface {
	BootsUpdatedSince(ctx context.Context, since time.Time, limit int) ([]state.Boot, error)
}

// Follow polls store every every (default FollowEvery) until ctx ends and
// tells the status page of each boot that changed since the last poll:
// the boots other servers sharing the store record reach this server's
// page within every, plus its MinRebuild. Each poll rereads a margin
// (FollowMargin) before the last one, for servers whose clocks are a
// little apart and transactions that commit late; a boot already shown as
// it is is not sent again.
func (r *Recorder) Follow(ctx context.Context, store Boots, every time.Duration) {
	if every <= 0 {
		every = FollowEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	since := time.Now().Add(-FollowMargin)
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		started := time.Now()
		bs, err := store.BootsUpdatedSince(ctx, since, followBatch)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			r.log.Warn("status: cannot read the boots other servers record", "err", err)
		case err == nil && failing:
			failing = false
			r.log.Info("status: reading the boots other servers record again")
		}
		if err != nil {
			continue
		}
		for _, b := range bs {
			r.publish(b)
		}
		if len(bs) == followBatch {
			// More than a batch changed: go on from the last one read.
			since = bs[len(bs)-1].Updated
		} else {
			since = started.Add(-FollowMargin)
		}
		r.forget(started.Add(-2 * FollowMargin))
	}
}

// FollowEvery is how often Follow polls by default, and FollowMargin how
// far before the last poll each poll reads again.
const (
	FollowEvery  = time.Second
	FollowMargin = 10 * time.Second
	followBatch  = 1000
	maxShown     = 100_000
)

// shown is what the status page was last told of a boot.
type shown struct {
	updated time.Time
	phase   string
	outcome string
	message string
}

// fresh records b as shown and reports whether it differs from what was
// shown of it before.
func (r *Recorder) fresh(b state.Boot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := shown{b.Updated, b.Phase, b.Outcome, b.Message}
	if old, ok := r.shown[b.ID]; ok && old == s {
		return false
	}
	r.shown[b.ID] = s
	if len(r.shown) > maxShown {
		// Without Follow nothing else forgets: bound what is kept.
		clear(r.shown)
		r.shown[b.ID] = s
	}
	return true
}

// forget drops what it keeps of boots shown as updated before t.
func (r *Recorder) forget(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, s := range r.shown {
		if s.updated.Before(t) {
			delete(r.shown, id)
		}
	}
}
