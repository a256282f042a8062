package console

import (
	"bytes"
	"cmp"
	"context"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/console/chart"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// HistogramWindow is how far back the overview's histogram of times to
// root looks (its heading says "the last hour").
const HistogramWindow = time.Hour

// MaxBootsShown is how many boots a machine's page lists: all the store
// keeps.
const MaxBootsShown = state.KeepBoots

// fleet is every machine the status table knows, with its state and
// image label.
func (c *Console) fleet(ctx context.Context) ([]Machine, imageLabels, error) {
	rows, err := c.d.Status.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	labels, err := c.imageLabels(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := c.d.Now()
	ms := make([]Machine, len(rows))
	for i, r := range rows {
		ms[i] = Machine{Row: r, State: StateOf(r, now), ImageLabel: labels.of(r.ImageDigest)}
	}
	return ms, labels, nil
}

// imageLabels names digests by the published versions that point at
// them: the newest version wins.
type imageLabels map[string]string

func (l imageLabels) of(digest string) string {
	if digest == "" {
		return ""
	}
	if s, ok := l[digest]; ok {
		return s
	}
	return shortDigest(digest)
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func (c *Console) imageLabels(ctx context.Context) (imageLabels, error) {
	ims, err := c.d.DB.Images(ctx)
	if err != nil {
		return nil, err
	}
	l := imageLabels{}
	for _, im := range ims {
		h, err := c.d.DB.ImageHistory(ctx, im.Name)
		if err != nil {
			return nil, err
		}
		for _, v := range h {
			if old, ok := l[v.Digest]; !ok || strings.HasPrefix(old, v.Name+"@") && versionOf(old) < v.Version {
				l[v.Digest] = v.Name + "@" + strconv.Itoa(v.Version)
			}
		}
	}
	return l, nil
}

func versionOf(label string) int {
	_, v, _ := strings.Cut(label, "@")
	n, _ := strconv.Atoi(v)
	return n
}

// svg marks a picture drawn by package chart as safe HTML: chart escapes
// every text it draws (its tests hold it to that).
func svg(draw func(*bytes.Buffer) error) (template.HTML, error) {
	var b bytes.Buffer
	if err := draw(&b); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil
}

// imageTimes is one image's times to root in the histogram's window.
type imageTimes struct {
	Label              string
	Boots              int
	Median, P90, Worst float64
}

type overviewData struct {
	Total     int
	Counts    map[string]int
	States    []string
	Histogram template.HTML
	Times     []imageTimes
	Failures  []Failure
	Servers   []serverRow
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	ms, labels, err := c.fleet(ctx)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	rts, err := c.rootTimes(ctx)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	byImage := map[string][]float64{}
	for _, t := range rts {
		l := cmp.Or(labels.of(t.Image), "no image")
		byImage[l] = append(byImage[l], t.Root.Sub(t.Started).Seconds())
	}
	d := overviewData{Total: len(ms), Counts: Counts(ms), States: States, Failures: Failures(ms)}
	var series []chart.Series
	for _, l := range sortedKeys(byImage) {
		v := slices.Clone(byImage[l])
		slices.Sort(v)
		series = append(series, chart.Series{Label: l, Values: v})
		d.Times = append(d.Times, imageTimes{Label: l, Boots: len(v), Median: quantile(v, .5), P90: quantile(v, .9), Worst: v[len(v)-1]})
	}
	if d.Histogram, err = svg(func(b *bytes.Buffer) error { return chart.Histogram(b, series, chart.HistogramOptions{}) }); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if d.Servers, err = c.serverRows(ctx); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if len(d.Failures) > 20 {
		d.Failures = d.Failures[:20]
	}
	c.render(w, r, http.StatusOK, "overview", s, d)
}

// rootTimes are the times to root of the boots in HistogramWindow: read
// again when a boot changed and a second went by since the last read, or
// after 30 s whatever happened (boots leave the window). However many
// overviews are open, the store is asked at most once a second.
func (c *Console) rootTimes(ctx context.Context) ([]state.RootTime, error) {
	c.roots.Lock()
	defer c.roots.Unlock()
	now, v := c.d.Now(), c.d.Status.Rec.Version()
	if age := now.Sub(c.roots.at); c.roots.times != nil && (age < time.Second || v == c.roots.version && age < 30*time.Second) {
		return c.roots.times, nil
	}
	rts, err := c.d.DB.RootTimes(ctx, now.Add(-HistogramWindow), 100000)
	if err != nil {
		return nil, err
	}
	if rts == nil {
		rts = []state.RootTime{}
	}
	c.roots.times, c.roots.at, c.roots.version = rts, now, v
	return rts, nil
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

type machinesData struct {
	Filter   Filter
	Listing  Listing
	States   []string
	Profiles []string
	Counts   map[string]int
	Prev     string // query of the previous page, "" on the first
	Next     string
}

// SortLink is the list's query sorted by col (down when it is already
// sorted up by it).
func (d machinesData) SortLink(col string) string {
	f := d.Filter
	f.Page = 0
	if f.Sort == col {
		f.Sort = "-" + col
	} else {
		f.Sort = col
	}
	return "?" + f.values().Encode()
}

func (c *Console) machines(w http.ResponseWriter, r *http.Request, s *session) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ms, _, err := c.fleet(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	profiles := map[string]bool{}
	for _, m := range ms {
		if m.Profile != "" {
			profiles[m.Profile] = true
		}
	}
	d := machinesData{Filter: f, States: States, Profiles: sortedKeys(profiles), Counts: Counts(ms)}
	d.Listing = List(ms, f)
	if d.Listing.Page > 1 {
		p := f
		p.Page = d.Listing.Page - 1
		d.Prev = "?" + p.values().Encode()
	}
	if d.Listing.Page < d.Listing.Pages {
		p := f
		p.Page = d.Listing.Page + 1
		d.Next = "?" + p.values().Encode()
	}
	c.render(w, r, http.StatusOK, "machines", s, d)
}

// bootRow is one boot on a machine's page.
type bootRow struct {
	state.Boot
	ImageLabel string
	ToRoot     float64 // seconds from its first event to switch_root; 0 when it did not get there
	Selected   bool
	// Strip is its agent's phases in one row, on the time axis all the
	// page's boots share.
	Strip template.HTML
	steps []chart.Step
}

// address is one address a machine came from, and how.
type address struct {
	Address string
	How     string // e.g. "approved here", "asked for lab 3 times", "booted 12 times"
	Last    time.Time
}

type machineData struct {
	Machine   state.Machine
	Row       Machine
	Known     bool // the store has it (not only the status table)
	TPM       *state.TPM
	Requests  []state.Request
	Adms      []state.Admission
	Disks     []state.Disk
	Addresses []address
	Boots     []bootRow
	Boot      *bootRow // the one drawn
	Waterfall template.HTML
	Steps     []chart.Step
	Failed    *chart.Step // where the drawn boot stopped
}

func (d machineData) title() string { return "Machine " + cmp.Or(d.Machine.Hostname, d.Machine.MAC) }

func (c *Console) macParam(r *http.Request) (string, error) {
	mac, err := boot.ParseMAC(r.PathValue("mac"))
	if err != nil {
		return "", &inputError{"machine: " + err.Error()}
	}
	return mac.String(), nil
}

func (c *Console) machine(w http.ResponseWriter, r *http.Request, s *session) {
	mac, err := c.macParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var want int64
	for k, vs := range r.URL.Query() {
		if k != "boot" || len(vs) != 1 {
			c.fail(w, r, s, &inputError{"query parameter " + strconv.Quote(k) + ": a machine's page takes boot=ID, once"})
			return
		}
		if want, err = strconv.ParseInt(vs[0], 10, 64); err != nil || want < 1 {
			c.fail(w, r, s, &inputError{"boot " + strconv.Quote(vs[0]) + ": want a boot's number"})
			return
		}
	}
	d, err := c.machineData(r.Context(), mac, want)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "machine", s, d)
}

func (c *Console) machineData(ctx context.Context, mac string, want int64) (machineData, error) {
	var d machineData
	var err error
	if d.Machine, err = c.d.DB.Machine(ctx, mac); err != nil {
		return d, err
	}
	ms, labels, err := c.fleet(ctx)
	if err != nil {
		return d, err
	}
	for _, m := range ms {
		if m.MAC == mac {
			d.Row = m
		}
	}
	if t, err := c.d.DB.TPMOf(ctx, mac); err == nil {
		d.TPM = &t
	}
	if d.Requests, err = c.d.DB.Requests(ctx, mac); err != nil {
		return d, err
	}
	if d.Adms, err = c.d.DB.Admissions(ctx, mac); err != nil {
		return d, err
	}
	if d.Disks, err = c.d.DB.DisksOf(ctx, state.OwnerMachine, mac); err != nil {
		return d, err
	}
	boots, err := c.d.DB.Boots(ctx, mac, MaxBootsShown)
	if err != nil {
		return d, err
	}
	events, err := c.d.DB.MachineBootEvents(ctx, mac, MaxBootsShown)
	if err != nil {
		return d, err
	}
	axis := 0.0
	for i, b := range boots {
		row := bootRow{Boot: b, ImageLabel: labels.of(b.Image), ToRoot: toRoot(events[b.ID]), steps: chart.Steps(events[b.ID])}
		if want == b.ID || want == 0 && i == 0 {
			row.Selected = true
		}
		for _, st := range row.steps {
			axis = max(axis, st.End)
		}
		d.Boots = append(d.Boots, row)
	}
	for i := range d.Boots {
		if d.Boots[i].Strip, err = svg(func(b *bytes.Buffer) error {
			return chart.Strip(b, d.Boots[i].steps, chart.StripOptions{Axis: axis})
		}); err != nil {
			return d, err
		}
	}
	for i := range d.Boots {
		if d.Boots[i].Selected {
			d.Boot = &d.Boots[i]
		}
	}
	if want != 0 && d.Boot == nil {
		return d, &inputError{"boot " + strconv.FormatInt(want, 10) + " is not one of this machine's last " + strconv.Itoa(len(boots))}
	}
	if d.Boot != nil {
		d.Steps = d.Boot.steps
		for i := range d.Steps {
			if d.Steps[i].Outcome == telemetry.Failed {
				d.Failed = &d.Steps[i]
			}
		}
		if d.Waterfall, err = svg(func(b *bytes.Buffer) error { return chart.Waterfall(b, d.Steps, chart.WaterfallOptions{Width: 1000}) }); err != nil {
			return d, err
		}
	}
	d.Addresses = addressesOf(d.Adms, d.Requests, boots, d.TPM)
	return d, nil
}

// toRoot is the seconds from a boot's first event to the agent's
// switch_root, or 0.
func toRoot(es []state.BootEvent) float64 {
	for _, e := range es {
		if e.Phase == boot.PhaseSwitchRoot && e.Source == telemetry.SourceAgent {
			return e.At.Sub(es[0].At).Seconds()
		}
	}
	return 0
}

// addressesOf lists the addresses a machine came from: pinned by an
// approval, in its requests, in its boots, its TPM's.
func addressesOf(adms []state.Admission, reqs []state.Request, boots []state.Boot, t *state.TPM) []address {
	var out []address
	idx := map[string]int{}
	add := func(a, how string, last time.Time) {
		if a == "" {
			return
		}
		i, ok := idx[a]
		if !ok {
			i = len(out)
			idx[a] = i
			out = append(out, address{Address: a})
		}
		if out[i].How != "" {
			out[i].How += "; "
		}
		out[i].How += how
		if last.After(out[i].Last) {
			out[i].Last = last
		}
	}
	for _, a := range adms {
		if a.Address != "" {
			add(a.Address, "approved for "+a.Profile, time.Time{})
		}
	}
	for _, q := range reqs {
		how := "asked for " + q.Profile + " " + times(q.Asked)
		if q.Conflict {
			how += " while approved elsewhere"
		}
		add(q.Address, how, q.Seen)
	}
	n, last := map[string]int{}, map[string]time.Time{}
	for _, b := range boots {
		n[b.Address]++
		if b.Updated.After(last[b.Address]) {
			last[b.Address] = b.Updated
		}
	}
	for _, a := range sortedKeys(n) {
		add(a, "booted "+times(n[a]), last[a])
	}
	if t != nil && t.PendingAddress != "" {
		add(t.PendingAddress, "its TPM asked for approval", t.Updated)
	}
	if t != nil && t.RefusedAddress != "" {
		add(t.RefusedAddress, "another TPM refused "+times(t.Refusals), time.Time{})
	}
	return out
}

// times says how many times: "once", "3 times".
func times(n int) string {
	if n == 1 {
		return "once"
	}
	return strconv.Itoa(n) + " times"
}

// plural counts things: "1 disk", "2 disks".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// pendingItem is one approval waiting: a request, or a TPM.
type pendingItem struct {
	MAC, Hostname string
	Request       *state.Request
	TPM           *state.TPM
	Conflict      string
	Approve       string // the confirmation page's URL
}

type pendingData struct{ Items []pendingItem }

func (c *Console) pending(w http.ResponseWriter, r *http.Request, s *session) {
	items, err := c.pendingItems(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "pending", s, pendingData{Items: items})
}

// pendingItems lists what waits for approval, the longest waiting first.
func (c *Console) pendingItems(ctx context.Context) ([]pendingItem, error) {
	ms, _, err := c.fleet(ctx)
	if err != nil {
		return nil, err
	}
	host, conflict := map[string]string{}, map[string]string{}
	for _, m := range ms {
		host[m.MAC], conflict[m.MAC] = m.Hostname, m.Conflict
	}
	reqs, err := c.d.DB.Requests(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []pendingItem
	var when []time.Time
	for i := range reqs {
		q := &reqs[i]
		v := urlValues("address", q.Address, "profile", q.Profile)
		out = append(out, pendingItem{MAC: q.MAC, Hostname: cmp.Or(q.Hostname, host[q.MAC]), Request: q, Conflict: conflict[q.MAC],
			Approve: Prefix + "/machines/" + q.MAC + "/approve?" + v})
		when = append(when, q.First)
	}
	tpms, err := c.d.DB.TPMs(ctx)
	if err != nil {
		return nil, err
	}
	for i := range tpms {
		t := &tpms[i]
		if t.Pending == "" {
			continue
		}
		out = append(out, pendingItem{MAC: t.MAC, Hostname: host[t.MAC], TPM: t, Conflict: conflict[t.MAC],
			Approve: Prefix + "/machines/" + t.MAC + "/approve?" + urlValues("ek", t.Pending)})
		when = append(when, t.Updated)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return when[a].Compare(when[b]) })
	sorted := make([]pendingItem, len(out))
	for i, j := range idx {
		sorted[i] = out[j]
	}
	return sorted, nil
}

type imageRow struct {
	state.Image
	Running int // machines whose latest boot got this version's blob
	Current bool
}

type imagesData struct{ Images []imageRow }

// running counts machines by the digest their latest boot got.
func running(ms []Machine) map[string]int {
	n := map[string]int{}
	for _, m := range ms {
		if m.ImageDigest != "" {
			n[m.ImageDigest]++
		}
	}
	return n
}

func (c *Console) images(w http.ResponseWriter, r *http.Request, s *session) {
	ims, err := c.d.DB.Images(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ms, _, err := c.fleet(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	n := running(ms)
	var d imagesData
	for _, im := range ims {
		d.Images = append(d.Images, imageRow{Image: im, Running: n[im.Digest], Current: true})
	}
	c.render(w, r, http.StatusOK, "images", s, d)
}

type imageData struct {
	Name     string
	Versions []imageRow // newest first
}

func (d imageData) title() string { return "Image " + d.Name }

func (c *Console) image(w http.ResponseWriter, r *http.Request, s *session) {
	name, err := imageParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	h, err := c.d.DB.ImageHistory(r.Context(), name)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ms, _, err := c.fleet(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	n := running(ms)
	d := imageData{Name: name}
	slices.SortFunc(h, func(a, b state.Image) int { return b.Version - a.Version })
	for i, im := range h {
		d.Versions = append(d.Versions, imageRow{Image: im, Running: n[im.Digest], Current: i == 0})
	}
	if len(d.Versions) > 0 {
		// A digest counts for the newest version that has it.
		seen := map[string]bool{}
		for i := range d.Versions {
			if seen[d.Versions[i].Digest] {
				d.Versions[i].Running = 0
			}
			seen[d.Versions[i].Digest] = true
		}
	}
	c.render(w, r, http.StatusOK, "image", s, d)
}

type userRow struct {
	state.User
	Disks []state.Disk
}

type usersData struct{ Users []userRow }

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) {
	us, err := c.d.DB.Users(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ks, err := c.d.DB.Disks(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var d usersData
	for _, u := range us {
		row := userRow{User: u}
		for _, k := range ks {
			if k.OwnerKind == state.OwnerUser && k.Owner == u.Name {
				row.Disks = append(row.Disks, k)
			}
		}
		d.Users = append(d.Users, row)
	}
	c.render(w, r, http.StatusOK, "users", s, d)
}

type serverRow struct {
	state.ServerInfo
	Up bool
}

func (c *Console) serverRows(ctx context.Context) ([]serverRow, error) {
	ss, err := c.d.DB.Servers(ctx)
	if err != nil {
		return nil, err
	}
	now := c.d.Now()
	out := make([]serverRow, 0, len(ss))
	for _, x := range ss {
		out = append(out, serverRow{ServerInfo: x, Up: x.Up(now)})
	}
	return out, nil
}

type serversData struct{ Servers []serverRow }

func (c *Console) servers(w http.ResponseWriter, r *http.Request, s *session) {
	rows, err := c.serverRows(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "servers", s, serversData{Servers: rows})
}
