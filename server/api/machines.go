package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/ipxe"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
)

// MachineView is a machine with its standing and its latest boot.
type MachineView struct {
	state.Machine
	enroll.Standing
	Latest *state.Boot `json:"latest_boot,omitempty"`
	// Configured: a [machine MAC] section names it; NeverBooted: it has
	// not asked to boot yet (only the configuration knows it).
	Configured  bool `json:"configured,omitempty"`
	NeverBooted bool `json:"never_booted,omitempty"`
	// TPM is its TPM enrolment (enroll = tpm): the pinned EK, the one
	// waiting for approval, the last other EK refused.
	TPM *state.TPM `json:"tpm,omitempty"`
}

// MachineDetail is a machine with its admissions, its requests for
// approval, its boot history (newest first), the latest boot's events,
// and its disks.
type MachineDetail struct {
	state.Machine
	Admissions []state.Admission `json:"admissions"`
	Requests   []state.Request   `json:"requests"`
	Boots      []state.Boot      `json:"boots"`
	Events     []state.BootEvent `json:"latest_events"`
	Disks      []state.Disk      `json:"disks"`
}

func (a *API) macParam(r *http.Request) (string, error) {
	mac, err := boot.ParseMAC(r.PathValue("mac"))
	if err != nil {
		return "", errorf(http.StatusBadRequest, "machine: %v", err)
	}
	return mac.String(), nil
}

func (a *API) machines(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.d.DB.Machines(r.Context())
	if err != nil {
		return err
	}
	bs, err := a.d.DB.LatestBoots(r.Context())
	if err != nil {
		return err
	}
	adms, err := a.d.DB.Admissions(r.Context(), "")
	if err != nil {
		return err
	}
	reqs, err := a.d.DB.Requests(r.Context(), "")
	if err != nil {
		return err
	}
	tpms, err := a.d.DB.TPMs(r.Context())
	if err != nil {
		return err
	}
	tpmOf := map[string]*state.TPM{}
	for i := range tpms {
		tpmOf[tpms[i].MAC] = &tpms[i]
	}
	latest := map[string]state.Boot{}
	for _, b := range bs {
		latest[b.MAC] = b
	}
	admsOf, reqsOf := map[string][]state.Admission{}, map[string][]state.Request{}
	for _, x := range adms {
		admsOf[x.MAC] = append(admsOf[x.MAC], x)
	}
	for _, x := range reqs {
		reqsOf[x.MAC] = append(reqsOf[x.MAC], x)
	}
	configured := a.d.Profiles().Config().Machines
	out := make([]MachineView, 0, len(ms)+len(configured))
	seen := map[string]bool{}
	for _, m := range ms {
		v := MachineView{Machine: m, Standing: enroll.StandingOf(m, admsOf[m.MAC], reqsOf[m.MAC]), Configured: configured[m.MAC] != nil, TPM: tpmOf[m.MAC]}
		if b, ok := latest[m.MAC]; ok {
			v.Latest = &b
		}
		out = append(out, v)
		seen[m.MAC] = true
	}
	// The machines the configuration names are listed before they boot.
	for mac, cm := range configured {
		if !seen[mac] {
			out = append(out, MachineView{Machine: state.Machine{MAC: mac, Profile: cm.Profile, Hostname: cm.Hostname}, Standing: enroll.Standing{Enrolment: "none"}, Configured: true, NeverBooted: true})
		}
	}
	slices.SortFunc(out, func(a, b MachineView) int { return strings.Compare(a.MAC, b.MAC) })
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) machine(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	m, err := a.d.DB.Machine(ctx, mac)
	if err != nil {
		return err
	}
	d := MachineDetail{Machine: m}
	if d.Admissions, err = a.d.DB.Admissions(ctx, mac); err != nil {
		return err
	}
	if d.Requests, err = a.d.DB.Requests(ctx, mac); err != nil {
		return err
	}
	if d.Boots, err = a.d.DB.Boots(ctx, mac, state.KeepBoots); err != nil {
		return err
	}
	if len(d.Boots) > 0 {
		if d.Events, err = a.d.DB.BootEvents(ctx, d.Boots[0].ID); err != nil {
			return err
		}
	}
	if d.Disks, err = a.d.DB.DisksOf(ctx, state.OwnerMachine, mac); err != nil {
		return err
	}
	d.Admissions, d.Requests, d.Boots, d.Events, d.Disks = orEmpty(d.Admissions), orEmpty(d.Requests), orEmpty(d.Boots), orEmpty(d.Events), orEmpty(d.Disks)
	return writeJSON(w, http.StatusOK, d)
}

// ApproveRequest says which of a machine's requests for approval is
// approved; each may be left out when only one request matches.
type ApproveRequest struct {
	Address string `json:"address,omitempty"`
	Profile string `json:"profile,omitempty"`
	// EK (enroll = tpm) names the TPM approved by its fingerprint
	// (sha256:HEX): the one waiting, the last one refused under the MAC
	// (a replaced TPM), or the pinned one (a firmware update: its
	// baseline is recorded again).
	EK string `json:"ek,omitempty"`
}

// Approval is what approving did.
type Approval struct {
	state.Admission
	// Rotated: the machine's secrets for the profile were forgotten and
	// its sessions ended; its next boot gets new ones.
	Rotated bool `json:"rotated"`
	// TPM: the approval pinned the TPM (EK) that waited (enroll = tpm).
	TPM *state.TPM `json:"tpm,omitempty"`
}

// requestsOf is mac's requests for approval (none when they cannot be
// read: the caller goes on to the TPM).
func (a *API) requestsOf(ctx context.Context, mac string) []state.Request {
	qs, _ := a.d.DB.Requests(ctx, mac)
	return qs
}

// ErrAmbiguous is the answer to an approval that matches several
// requests: it lists them, and approves none.
type ErrAmbiguous struct{ Requests []state.Request }

func (e *ErrAmbiguous) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests match; say which (--address, --profile):", len(e.Requests))
	for _, q := range e.Requests {
		fmt.Fprintf(&b, "\n  profile %s from %s, asked %d times, last %s", q.Profile, q.Address, q.Asked, q.Seen.Format(time.RFC3339))
		if q.Conflict {
			b.WriteString(" (while approved at another address)")
		}
	}
	return b.String()
}

// approve admits a machine to a profile at the address one of its
// requests came from: the one request that matches the body, or none.
// The admission's secrets are forgotten and its sessions ended: an
// earlier address may have seen them.
func (a *API) approve(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	var req ApproveRequest
	if r.ContentLength != 0 {
		if err := DecodeJSON(r.Body, &req); err != nil {
			return err
		}
	}
	ap, err := a.Approve(background(r.Context()), mac, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ap)
}

// Approve admits the machine mac (as boot.ParseMAC writes it) as req
// says: its waiting TPM (enroll = tpm), or the one request for approval
// that matches req. Nothing changes when req matches none or several
// (*ErrAmbiguous). The console calls it too.
func (a *API) Approve(ctx context.Context, mac string, req ApproveRequest) (Approval, error) {
	if req.Address != "" {
		ip, err := netip.ParseAddr(req.Address)
		if err != nil {
			return Approval{}, errorf(http.StatusBadRequest, "address %q: not an IP address", req.Address)
		}
		req.Address = ip.String()
	}
	if req.EK != "" && (req.Address != "" || req.Profile != "") {
		return Approval{}, errorf(http.StatusBadRequest, "ek: a TPM is approved by its EK alone, not with an address or a profile")
	}
	if req.Address == "" && req.Profile == "" {
		// enroll = tpm: the machine is its TPM; its EK waits, whatever
		// the address it asked from.
		t, err := a.d.DB.TPMOf(ctx, mac)
		if err == nil && (t.Pending != "" || req.EK != "" || t.EK != "" && len(a.requestsOf(ctx, mac)) == 0) {
			before := t
			t, err = a.d.DB.ApproveTPM(ctx, mac, req.EK)
			switch {
			case errors.Is(err, state.ErrTPMNotShown):
				return Approval{}, errorf(http.StatusConflict, "%v", err)
			case err != nil:
				return Approval{}, err
			}
			// Another TPM may be the machine now: its secrets were
			// forgotten; end what the old ones still hold open.
			if t.EK != before.EK {
				a.d.Disks.Drop(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
			}
			a.d.Log.Info("TPM approved", "mac", mac, "ek", t.EK)
			a.d.Recorder.Changed(mac)
			return Approval{Admission: state.Admission{MAC: mac}, TPM: &t}, nil
		}
		if req.EK != "" {
			return Approval{}, errorf(http.StatusNotFound, "machine %s: no TPM of it has shown itself (it does when it boots a profile with enroll = tpm)", mac)
		}
	}
	all, err := a.d.DB.Requests(ctx, mac)
	if err != nil {
		return Approval{}, err
	}
	var match []state.Request
	for _, q := range all {
		if (req.Address == "" || q.Address == req.Address) && (req.Profile == "" || q.Profile == req.Profile) {
			match = append(match, q)
		}
	}
	switch {
	case len(match) == 0 && len(all) == 0:
		if _, err := a.d.DB.Machine(ctx, mac); err != nil {
			return Approval{}, errorf(http.StatusNotFound, "machine %s: not found (it is recorded when it first asks to boot)", mac)
		}
		return Approval{}, errorf(http.StatusNotFound, "machine %s has no request for approval: it is recorded when it asks to boot a profile with enroll = approve", mac)
	case len(match) == 0:
		return Approval{}, errorf(http.StatusNotFound, "machine %s has no request matching that; %v", mac, (&ErrAmbiguous{all}).Error())
	case len(match) > 1:
		return Approval{}, &Error{Code: http.StatusConflict, Msg: (&ErrAmbiguous{match}).Error()}
	}
	q := match[0]
	p := a.d.Profiles().Profile(q.Profile)
	if p == nil {
		return Approval{}, errorf(http.StatusConflict, "profile %s of that request is no longer in the configuration", q.Profile)
	}
	if p.Policy() != config.EnrollApprove {
		return Approval{}, errorf(http.StatusConflict, "profile %s no longer says enroll = approve (it is %s)", q.Profile, p.Policy())
	}
	adm, err := a.d.DB.Approve(ctx, mac, q.Profile, q.Address, enroll.Quota(p))
	if err != nil {
		if errors.Is(err, state.ErrQuota) {
			return Approval{}, errorf(http.StatusForbidden, "%v: raise max-machines or delete a machine", err)
		}
		return Approval{}, err
	}
	// The secrets were forgotten; end what the old ones still hold open.
	a.d.Disks.Drop(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	a.d.Log.Info("machine approved", "mac", mac, "profile", q.Profile, "address", q.Address)
	a.d.Recorder.Changed(mac)
	return Approval{Admission: adm, Rotated: true}, nil
}

// machineReset ends the machine's sessions and removes its disks: its
// next boot starts blank, or from the base image.
func (a *API) machineReset(w http.ResponseWriter, r *http.Request) error {
	return a.dropMachine(w, r, false)
}

// rotate gives the machine a new CHAP secret and ends its sessions. The
// secret itself is never shown: its next boot's document carries it.
func (a *API) rotate(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	n, err := a.RotateMachine(background(r.Context()), mac)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"mac": mac, "rotated": n})
}

// RotateMachine gives the machine mac new CHAP secrets and ends its
// sessions; it returns how many secrets changed.
func (a *API) RotateMachine(ctx context.Context, mac string) (int64, error) {
	if _, err := a.d.DB.Machine(ctx, mac); err != nil {
		return 0, err
	}
	n, err := a.d.Disks.RotateMachine(ctx, mac)
	if err == nil {
		a.d.Log.Info("machine secrets rotated", "mac", mac, "rotated", n)
		a.d.Recorder.Changed(mac)
	}
	return n, err
}

// machineDelete removes the machine's disks, then the machine.
func (a *API) machineDelete(w http.ResponseWriter, r *http.Request) error {
	return a.dropMachine(w, r, true)
}

func (a *API) dropMachine(w http.ResponseWriter, r *http.Request, forget bool) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	drop := a.ResetMachine
	if forget {
		drop = a.DeleteMachine
	}
	n, err := drop(background(r.Context()), mac)
	if err != nil {
		return err
	}
	out := map[string]any{"mac": mac, "disks_removed": n}
	if forget {
		out["deleted"] = true
	}
	return writeJSON(w, http.StatusOK, out)
}

// ResetMachine ends the machine's sessions and removes its disks: its
// next boot starts blank, or from the base image. It returns how many
// disks went.
func (a *API) ResetMachine(ctx context.Context, mac string) (int, error) {
	n, err := a.dropDisks(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	if err != nil {
		return 0, err
	}
	a.d.Log.Info("machine reset", "mac", mac, "disks_removed", n)
	a.d.Recorder.Changed(mac)
	return n, nil
}

// DeleteMachine removes the machine's disks, then the machine.
func (a *API) DeleteMachine(ctx context.Context, mac string) (int, error) {
	n, err := a.dropDisks(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	if err != nil {
		return 0, err
	}
	if err := a.d.DB.DeleteMachine(ctx, mac); err != nil {
		return n, err
	}
	a.d.Log.Info("machine deleted", "mac", mac, "disks_removed", n)
	a.d.Recorder.Changed(mac)
	return n, nil
}

// Explanation says which profile a machine gets and why.
type Explanation struct {
	MAC     string `json:"mac"`
	Profile string `json:"profile"`
	Rule    string `json:"rule"` // e.g. "subnet 192.0.2.0/24"
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Enroll  string `json:"enroll"`
	Because string `json:"because"` // "profile lab because subnet 192.0.2.0/24 at FILE:LINE"
}

// explain answers which profile the machine would boot, given what its
// boot would say: ?uuid=&hostname=&arch=&platform=&ip= (any may be left
// out; the machine's last known address stands in for ip).
func (a *API) explain(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	for k, vs := range q {
		switch k {
		case "uuid", "hostname", "arch", "platform", "ip":
		default:
			return errorf(http.StatusBadRequest, "query parameter %q: want uuid, hostname, arch, platform or ip", k)
		}
		if len(vs) != 1 {
			return errorf(http.StatusBadRequest, "query parameter %s given %d times", k, len(vs))
		}
	}
	// The same checks as a boot's own query.
	c, err := ipxe.ParseQuery(url.Values{"mac": {mac}, "uuid": {q.Get("uuid")}, "hostname": {q.Get("hostname")}, "buildarch": {q.Get("arch")}, "platform": {q.Get("platform")}})
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	who := profiles.Who{MAC: c.MAC, UUID: c.UUID, Hostname: c.Hostname, Arch: c.BuildArch, Platform: c.Platform}
	ipText := q.Get("ip")
	if ipText == "" {
		if m, err := a.d.DB.Machine(r.Context(), mac); err == nil {
			ipText = m.Address
		}
	}
	if ipText != "" {
		if who.IP, err = netip.ParseAddr(ipText); err != nil {
			return errorf(http.StatusBadRequest, "ip %q: not an IP address", ipText)
		}
	}
	p, _, why, err := a.d.Profiles().Select(who)
	if err != nil {
		return errorf(http.StatusNotFound, "%v", err)
	}
	return writeJSON(w, http.StatusOK, Explanation{MAC: mac, Profile: p.Name, Rule: why.Rule, File: why.File, Line: why.Line,
		Enroll: string(p.Policy()), Because: "profile " + p.Name + " because " + why.String()})
}
