package telemetry

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/overboot/overboot/server/state"
)

// Store is where boots are kept (server/state).
type Store interface {
	StartBoot(ctx context.Context, b state.Boot, first state.BootEvent) (state.Boot, error)
	AddBootEvent(ctx context.Context, bootID int64, e state.BootEvent) (state.Boot, error)
}

// Event sources.
const (
	SourceServer = "server"
	SourceAgent  = "agent"
)

// Outcomes, as the agent reports them (boot.PhaseReport) and the server
// records its own steps.
const (
	Running = "running"
	OK      = "ok"
	Failed  = "failed"
)

// Recorder records boots and their events, and tells the status page.
type Recorder struct {
	store   Store
	metrics *Metrics
	hub     *hub
	log     *slog.Logger

	mu     sync.Mutex       // guards byAddr, shown
	byAddr map[string]int64 // client address -> its latest boot, to attribute downloads
	shown  map[int64]shown  // boot ID -> what the page was last told (Follow)
}

// NewRecorder records into store; metrics may be nil.
func NewRecorder(store Store, metrics *Metrics, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{store: store, metrics: metrics, hub: newHub(), log: log, byAddr: map[string]int64{}, shown: map[int64]shown{}}
}

// Start records a new boot (a machine asked for its script) and returns
// its ID; 0 when it could not be recorded (logged: telemetry never fails
// a boot).
func (r *Recorder) Start(ctx context.Context, b state.Boot, phase string) int64 {
	b, err := r.store.StartBoot(ctx, b, state.BootEvent{Source: SourceServer, Phase: phase, Outcome: OK})
	if err != nil {
		r.log.Error("record boot", "mac", b.MAC, "err", err)
		return 0
	}
	r.mu.Lock()
	r.byAddr[b.Address] = b.ID
	r.mu.Unlock()
	r.publish(b)
	return b.ID
}

// Event adds an event to boot id. The error (also logged) is for callers
// that answer for the event, like the agent's reports: the server's own
// steps never fail a boot for telemetry.
func (r *Recorder) Event(ctx context.Context, id int64, e state.BootEvent) error {
	if id == 0 {
		return nil
	}
	b, err := r.store.AddBootEvent(ctx, id, e)
	if err != nil {
		r.log.Error("record boot event", "boot", id, "phase", e.Phase, "err", err)
		return err
	}
	if r.metrics != nil {
		r.metrics.event(e)
	}
	r.publish(b)
	return nil
}

// Download attributes a finished artifact download of n bytes, which
// took seconds, to the latest boot of the address it went to (a machine
// booted with a static command line has none).
func (r *Recorder) Download(ctx context.Context, addr, kind string, n int64, seconds float64) {
	r.mu.Lock()
	id := r.byAddr[addr]
	r.mu.Unlock()
	r.Event(ctx, id, state.BootEvent{Source: SourceServer, Phase: kind, Outcome: OK, Bytes: n, Seconds: seconds}) // logged there
}

// Changed tells the status page that a machine's row changed (approval,
// reset, delete) without a boot event.
func (r *Recorder) Changed(mac string) {
	r.hub.send(update{MAC: mac})
}

// Version counts the changes the recorder has seen (boots, events,
// machines changed): equal versions, equal status tables.
func (r *Recorder) Version() uint64 { return r.hub.version.Load() }

func (r *Recorder) publish(b state.Boot) {
	if r.fresh(b) {
		r.hub.send(update{MAC: b.MAC, Boot: &b})
	}
}

// update is one server-sent event: a machine whose row changed, with its
// latest boot when the change was one.
type update struct {
	MAC  string      `json:"mac"`
	Boot *state.Boot `json:"boot,omitempty"`
}

// hub fans updates out to the status page's open streams, and keeps the
// MACs changed since the status table last took them (takeDirty).
type hub struct {
	mu   sync.Mutex // guards subs, dirty, overflow
	subs map[chan []byte]struct{}
	// dirty are the machines changed since the last takeDirty; past
	// MaxDirty of them, overflow: the table is built whole.
	dirty    map[string]struct{}
	overflow bool
	// version counts updates sent: the status page's table is built
	// again only when it moved.
	version atomic.Uint64
}

func newHub() *hub {
	return &hub{subs: map[chan []byte]struct{}{}, dirty: map[string]struct{}{}}
}

// MaxDirty is how many changed machines the status table brings up to
// date row by row; more, and it is built again whole.
const MaxDirty = 256

// takeDirty returns the machines changed since the last call, or all
// when there were more than MaxDirty (or a change named none), and
// forgets them.
func (h *hub) takeDirty() (macs []string, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all = h.overflow
	if !all {
		for m := range h.dirty {
			macs = append(macs, m)
		}
	}
	clear(h.dirty)
	h.overflow = false
	return macs, all
}

func (h *hub) subscribe() chan []byte {
	c := make(chan []byte, 64)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *hub) unsubscribe(c chan []byte) {
	h.mu.Lock()
	delete(h.subs, c)
	h.mu.Unlock()
}

// send never blocks: a stream too slow to keep up misses updates (the
// page also fetches its whole table every 30 s; see status.html).
func (h *hub) send(u update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Marked before the version moves: a table that sees the new
	// version finds the machine among the changed.
	if u.MAC == "" || len(h.dirty) >= MaxDirty {
		h.overflow = true
	} else {
		h.dirty[u.MAC] = struct{}{}
	}
	h.version.Add(1)
	b, err := json.Marshal(u)
	if err != nil {
		return
	}
	for c := range h.subs {
		select {
		case c <- b:
		default:
		}
	}
}
