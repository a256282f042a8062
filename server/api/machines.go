package api

import (
	"net/http"
	"net/netip"
	"net/url"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
)

// MachineView is a machine with its latest boot.
type MachineView struct {
	state.Machine
	Latest *state.Boot `json:"latest_boot,omitempty"`
}

// MachineDetail is a machine with its boot history (newest first), the
// latest boot's events, and its disks.
type MachineDetail struct {
	state.Machine
	Boots  []state.Boot      `json:"boots"`
	Events []state.BootEvent `json:"latest_events"`
	Disks  []state.Disk      `json:"disks"`
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
	latest := map[string]state.Boot{}
	for _, b := range bs {
		latest[b.MAC] = b
	}
	out := make([]MachineView, 0, len(ms))
	for _, m := range ms {
		v := MachineView{Machine: m}
		if b, ok := latest[m.MAC]; ok {
			v.Latest = &b
		}
		out = append(out, v)
	}
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
	d := MachineDetail{Machine: m, Boots: []state.Boot{}, Events: []state.BootEvent{}}
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
	return writeJSON(w, http.StatusOK, d)
}

func (a *API) approve(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	m, err := a.d.DB.Approve(r.Context(), mac)
	if err != nil {
		return err
	}
	a.d.Recorder.Changed(mac)
	return writeJSON(w, http.StatusOK, m)
}

// machineReset ends the machine's sessions and removes its disks: its
// next boot starts blank, or from the base image.
func (a *API) machineReset(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	ctx := background(r.Context())
	if _, err := a.d.DB.Machine(ctx, mac); err != nil {
		return err
	}
	n, err := a.d.Disks.Reset(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	if err != nil {
		return err
	}
	a.d.Recorder.Changed(mac)
	return writeJSON(w, http.StatusOK, map[string]any{"mac": mac, "disks_removed": n})
}

// rotate gives the machine a new CHAP secret and ends its sessions. The
// secret itself is never shown: its next boot's document carries it.
func (a *API) rotate(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	ctx := background(r.Context())
	if _, err := a.d.DB.Machine(ctx, mac); err != nil {
		return err
	}
	if _, err := a.d.Disks.RotateMachine(ctx, mac); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"mac": mac, "rotated": true})
}

// machineDelete removes the machine's disks, then the machine.
func (a *API) machineDelete(w http.ResponseWriter, r *http.Request) error {
	mac, err := a.macParam(r)
	if err != nil {
		return err
	}
	ctx := background(r.Context())
	if _, err := a.d.DB.Machine(ctx, mac); err != nil {
		return err
	}
	n, err := a.d.Disks.Reset(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	if err != nil {
		return err
	}
	if err := a.d.DB.DeleteMachine(ctx, mac); err != nil {
		return err
	}
	a.d.Recorder.Changed(mac)
	return writeJSON(w, http.StatusOK, map[string]any{"mac": mac, "deleted": true, "disks_removed": n})
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
	c, err := boot.ParseQuery(url.Values{"mac": {mac}, "uuid": {q.Get("uuid")}, "hostname": {q.Get("hostname")}, "buildarch": {q.Get("arch")}, "platform": {q.Get("platform")}})
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
