package telemetry

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// View is what the status page reads (server/state).
type View interface {
	Machines(ctx context.Context) ([]state.Machine, error)
	Admissions(ctx context.Context, mac string) ([]state.Admission, error)
	Requests(ctx context.Context, mac string) ([]state.Request, error)
	LatestBoots(ctx context.Context) ([]state.Boot, error)
	ActiveBoots(ctx context.Context, since time.Time, done string) ([]state.Boot, error)
	Disks(ctx context.Context) ([]state.Disk, error)
	TPMs(ctx context.Context) ([]state.TPM, error)
	// One machine's, for a table brought up to date row by row.
	Machine(ctx context.Context, mac string) (state.Machine, error)
	Boots(ctx context.Context, mac string, limit int) ([]state.Boot, error)
	DisksOf(ctx context.Context, ownerKind, owner string) ([]state.Disk, error)
	TPMOf(ctx context.Context, mac string) (state.TPM, error)
}

// Row is one machine on the status page.
type Row struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	Profile  string `json:"profile"`
	// Enrolment is its standing in that profile: the policy that admitted
	// it (open, open-insecure, login, approved) or pending.
	Enrolment string `json:"enrolment"`
	// TPM is its TPM enrolment (enroll = tpm): "EK sha256:..." pinned,
	// or "waits: EK sha256:... from ADDRESS" for an administrator.
	TPM string `json:"tpm,omitempty"`
	// Address is where its latest boot came from (a pending machine's:
	// its latest request's); Pinned the address an approval pinned.
	Address string `json:"address"`
	Pinned  string `json:"pinned,omitempty"`
	Phase   string `json:"phase"`   // of its latest boot
	Outcome string `json:"outcome"` // running, ok, failed
	Image   string `json:"image,omitempty"`
	User    string `json:"user,omitempty"`
	Disk    string `json:"disk,omitempty"` // e.g. "upper 4.0 GiB"
	Error   string `json:"error,omitempty"`
	Updated string `json:"updated,omitempty"`
	// ImageDigest is Image whole; UpdatedAt is Updated as a time (both
	// for the console, not the status page's JSON).
	ImageDigest string    `json:"-"`
	UpdatedAt   time.Time `json:"-"`
	// Conflict says what does not add up: requests naming an approved
	// machine from another address, or boots of one MAC from two
	// addresses at once (two machines, or one and someone saying its
	// MAC). Neither is merged into the row's boot.
	Conflict string `json:"conflict,omitempty"`
}

// ConflictWindow is how recent two unfinished boots of one MAC must be to
// be shown as one conflict.
const ConflictWindow = 10 * time.Minute

// Rows builds the status table: every machine the store knows, with its
// latest boot, sorted by MAC.
func Rows(ctx context.Context, v View) ([]Row, error) {
	ms, err := v.Machines(ctx)
	if err != nil {
		return nil, err
	}
	boots, err := v.LatestBoots(ctx)
	if err != nil {
		return nil, err
	}
	ks, err := v.Disks(ctx)
	if err != nil {
		return nil, err
	}
	adms, err := v.Admissions(ctx, "")
	if err != nil {
		return nil, err
	}
	reqs, err := v.Requests(ctx, "")
	if err != nil {
		return nil, err
	}
	tpms, err := v.TPMs(ctx)
	if err != nil {
		return nil, err
	}
	tpmOf := map[string]state.TPM{}
	for _, t := range tpms {
		tpmOf[t.MAC] = t
	}
	running, err := v.ActiveBoots(ctx, time.Now().Add(-ConflictWindow), boot.PhaseSwitchRoot)
	if err != nil {
		return nil, err
	}
	byMAC := map[string]state.Boot{}
	for _, b := range boots {
		byMAC[b.MAC] = b
	}
	admsOf := map[string][]state.Admission{}
	for _, a := range adms {
		admsOf[a.MAC] = append(admsOf[a.MAC], a)
	}
	reqsOf := map[string][]state.Request{}
	for _, r := range reqs {
		reqsOf[r.MAC] = append(reqsOf[r.MAC], r)
	}
	runFrom := map[string][]string{}
	for _, b := range running {
		if !slices.Contains(runFrom[b.MAC], b.Address) {
			runFrom[b.MAC] = append(runFrom[b.MAC], b.Address)
		}
	}
	disk := map[string]string{}
	for _, k := range ks {
		disk[diskKey(k.OwnerKind, k.Owner, k.Profile)] = fmt.Sprintf("%s %s", k.Kind, humanBytes(k.Size))
	}
	rows := make([]Row, 0, len(ms))
	for _, m := range ms {
		var b *state.Boot
		if x, ok := byMAC[m.MAC]; ok {
			b = &x
		}
		var t *state.TPM
		if x, ok := tpmOf[m.MAC]; ok {
			t = &x
		}
		rows = append(rows, rowOf(m, b, admsOf[m.MAC], reqsOf[m.MAC], t, disk, runFrom[m.MAC]))
	}
	return rows, nil
}

// diskKey finds a disk in rowOf's map: "machine MAC PROFILE" or
// "user NAME PROFILE".
func diskKey(kind, owner, profile string) string { return kind + " " + owner + " " + profile }

// rowOf is one machine's row: its latest boot b (nil: none), its
// admissions, requests and TPM (nil: none), the disks by diskKey, and the
// addresses its unfinished recent boots come from.
func rowOf(m state.Machine, b *state.Boot, adms []state.Admission, reqs []state.Request, t *state.TPM, disk map[string]string, runFrom []string) Row {
	if m.Profile == "" && len(reqs) > 0 {
		m.Profile = reqs[0].Profile // asked, never admitted
	}
	st := enroll.StandingOf(m, adms, reqs)
	r := Row{MAC: m.MAC, Hostname: m.Hostname, Profile: m.Profile, Address: m.Address, Enrolment: st.Enrolment, Pinned: st.Pinned}
	var conflicts []string
	if t != nil {
		r.TPM, conflicts = tpmStanding(*t)
		if t.EK == "" && t.Pending != "" {
			r.Enrolment = "pending"
		}
	}
	for _, q := range st.Conflicts {
		conflicts = append(conflicts, fmt.Sprintf("asked for %s from %s (%d times) while approved elsewhere", q.Profile, q.Address, q.Asked))
	}
	if len(runFrom) > 1 {
		conflicts = append(conflicts, "booting from "+strings.Join(runFrom, " and ")+" at once")
	}
	r.Conflict = strings.Join(conflicts, "; ")
	if b != nil {
		r.Address = b.Address
		r.Phase, r.Outcome, r.User, r.Updated = b.Phase, b.Outcome, b.User, b.Updated.Format(time.RFC3339)
		r.ImageDigest, r.UpdatedAt = b.Image, b.Updated
		if len(b.Image) > 19 {
			r.Image = b.Image[:19]
		}
		if b.Outcome == Failed {
			r.Error = b.Message
		}
		if b.User != "" {
			r.Disk = disk[diskKey(state.OwnerUser, b.User, b.Profile)]
		}
	}
	if r.Disk == "" {
		r.Disk = disk[diskKey(state.OwnerMachine, m.MAC, m.Profile)]
	}
	return r
}

// RowOf reads one machine's row from v; ok is false when the store no
// longer has the machine.
func RowOf(ctx context.Context, v View, mac string) (r Row, ok bool, err error) {
	m, err := v.Machine(ctx, mac)
	if errors.Is(err, state.ErrNotFound) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, err
	}
	adms, err := v.Admissions(ctx, mac)
	if err != nil {
		return Row{}, false, err
	}
	reqs, err := v.Requests(ctx, mac)
	if err != nil {
		return Row{}, false, err
	}
	var t *state.TPM
	switch x, err := v.TPMOf(ctx, mac); {
	case err == nil:
		t = &x
	case !errors.Is(err, state.ErrNotFound):
		return Row{}, false, err
	}
	// Its unfinished recent boots: two at once from two addresses are a
	// conflict (Rows reads them with ActiveBoots).
	bs, err := v.Boots(ctx, mac, 10)
	if err != nil {
		return Row{}, false, err
	}
	var b *state.Boot
	if len(bs) > 0 {
		b = &bs[0]
	}
	since := time.Now().Add(-ConflictWindow)
	var runFrom []string
	for i := len(bs) - 1; i >= 0; i-- {
		x := bs[i]
		if x.Outcome != Failed && x.Phase != boot.PhaseSwitchRoot && !x.Updated.Before(since) && !slices.Contains(runFrom, x.Address) {
			runFrom = append(runFrom, x.Address)
		}
	}
	disk := map[string]string{}
	ks, err := v.DisksOf(ctx, state.OwnerMachine, mac)
	if err != nil {
		return Row{}, false, err
	}
	if b != nil && b.User != "" {
		us, err := v.DisksOf(ctx, state.OwnerUser, b.User)
		if err != nil {
			return Row{}, false, err
		}
		ks = append(ks, us...)
	}
	for _, k := range ks {
		disk[diskKey(k.OwnerKind, k.Owner, k.Profile)] = fmt.Sprintf("%s %s", k.Kind, humanBytes(k.Size))
	}
	return rowOf(m, b, adms, reqs, t, disk, runFrom), true, nil
}

// tpmStanding says t on the status page: the pinned or waiting EK, and
// other TPMs refused under this MAC as a conflict.
func tpmStanding(t state.TPM) (string, []string) {
	var s []string
	if t.EK != "" {
		s = append(s, "EK "+t.EK)
	}
	if t.Pending != "" {
		s = append(s, fmt.Sprintf("waits for approval: EK %s from %s (overboot machine approve %s)", t.Pending, t.PendingAddress, t.MAC))
	}
	var conflicts []string
	if t.Refusals > 0 {
		conflicts = append(conflicts, fmt.Sprintf("another TPM (EK %s) from %s refused (%d times)", t.Refused, t.RefusedAddress, t.Refusals))
	}
	return strings.Join(s, "; "), conflicts
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Parse(statusHTML))

//go:embed signin.html
var signInHTML string

var signInPage = template.Must(template.New("signin").Parse(signInHTML))

// SignInPage answers the status page's sign-in form with code, showing
// message when there is one (why the last try failed).
func SignInPage(w http.ResponseWriter, code int, message string, lasts time.Duration) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	signInPage.Execute(w, struct {
		Message string
		Lasts   time.Duration
	}{message, lasts})
}

// StatusPage serves /status (the page), /status/rows (its table as JSON)
// and /status/events (updates as server-sent events). Who may read them
// is the caller's to decide (package server wraps them).
type StatusPage struct {
	View View
	Rec  *Recorder
	Log  *slog.Logger
	// SignedIn reports whether r came with a signed-in session (the
	// page then offers to sign out); nil: never.
	SignedIn func(r *http.Request) bool
	// MaxStreams bounds the open event streams (default
	// DefaultMaxStreams): past it a new stream is refused with 503.
	MaxStreams int

	mu       sync.Mutex // guards rows, built, version; held while building
	rows     []Row
	built    time.Time
	version  uint64
	haveRows bool

	streams atomic.Int64
}

// DefaultMaxStreams is how many status pages may follow events at once.
const DefaultMaxStreams = 64

// MinRebuild is the least time between two builds of the table: however
// many pages ask, reading the store costs at most one build per
// MinRebuild, and only after something changed.
const MinRebuild = time.Second

// Snapshot returns the table, brought up to date when something changed
// since the last call (the recorder counts changes and names the
// machines): the changed machines' rows are read again, or, past
// MaxDirty of them, the whole table is built again, no sooner than
// MinRebuild after the last whole build (a request that comes earlier
// waits for it). The table is never older than the request.
func (p *StatusPage) Snapshot(ctx context.Context) ([]Row, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.Rec.Version()
	if p.haveRows && v == p.version {
		return p.rows, nil
	}
	macs, all := p.Rec.hub.takeDirty()
	if p.haveRows && !all {
		rows, err := p.update(ctx, macs)
		if err != nil {
			p.haveRows = false // built whole at the next call
			return nil, err
		}
		p.rows, p.version = rows, v
		return rows, nil
	}
	if wait := MinRebuild - time.Since(p.built); p.haveRows && wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			p.haveRows = false
			return nil, ctx.Err()
		}
		v = p.Rec.Version()
		p.Rec.hub.takeDirty() // the whole table reads them too
	}
	rows, err := Rows(ctx, p.View)
	if err != nil {
		p.haveRows = false
		return nil, err
	}
	p.rows, p.built, p.version, p.haveRows = rows, time.Now(), v, true
	return rows, nil
}

// update returns the table with the rows of macs read again: a new
// machine's inserted in MAC order, a removed one's gone. The table it
// was is left as it was (callers may still hold it).
func (p *StatusPage) update(ctx context.Context, macs []string) ([]Row, error) {
	rows := slices.Clone(p.rows)
	for _, mac := range macs {
		r, ok, err := RowOf(ctx, p.View, mac)
		if err != nil {
			return nil, err
		}
		i, found := slices.BinarySearchFunc(rows, mac, func(r Row, mac string) int { return strings.Compare(r.MAC, mac) })
		switch {
		case ok && found:
			rows[i] = r
		case ok:
			rows = slices.Insert(rows, i, r)
		case found:
			rows = slices.Delete(rows, i, i+1)
		}
	}
	return rows, nil
}

// Page serves the HTML page.
func (p *StatusPage) Page(w http.ResponseWriter, r *http.Request) {
	rows, err := p.Snapshot(r.Context())
	if err != nil {
		p.log().Error("status page", "err", err)
		http.Error(w, "cannot read the state store", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing from elsewhere: the page is whole as served.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'")
	if err := statusPage.Execute(w, struct {
		Rows    []Row
		Now     string
		SignOut bool
	}{rows, time.Now().UTC().Format(time.RFC3339), p.SignedIn != nil && p.SignedIn(r)}); err != nil {
		p.log().Debug("status page write", "err", err)
	}
}

// RowsJSON serves the table as JSON.
func (p *StatusPage) RowsJSON(w http.ResponseWriter, r *http.Request) {
	rows, err := p.Snapshot(r.Context())
	if err != nil {
		http.Error(w, `{"error":"cannot read the state store"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rows)
}

// Events streams updates as server-sent events until the client goes.
func (p *StatusPage) Events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	max := int64(cmp.Or(p.MaxStreams, DefaultMaxStreams))
	if p.streams.Add(1) > max {
		p.streams.Add(-1)
		http.Error(w, fmt.Sprintf("%d status pages already follow events: close one, or reload later", max), http.StatusServiceUnavailable)
		return
	}
	defer p.streams.Add(-1)
	c := p.Rec.hub.subscribe()
	defer p.Rec.hub.unsubscribe(c)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	keep := time.NewTicker(20 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-c:
			if _, err := fmt.Fprintf(w, "event: machine\ndata: %s\n\n", b); err != nil {
				return
			}
			fl.Flush()
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func (p *StatusPage) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}
