package console

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// confirmation is the page that says what an action will do, with the
// form that does it.
type confirmation struct {
	Heading string
	What    []string // what will happen, one sentence each
	Warn    []string // conflicts and other things to look at first
	Action  string   // the form's URL
	Fields  map[string]string
	Button  string
	Back    string
	// Password: the form asks for a new password (twice).
	Password bool
	Needs    enroll.Scope
}

func (c confirmation) title() string { return c.Heading }

func urlValues(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	return v.Encode()
}

func imageParam(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := blobstore.CheckName(name); err != nil {
		return "", &inputError{"image " + err.Error()}
	}
	return name, nil
}

// machineActions are what can be done to a machine.
var machineActions = map[string]bool{"approve": true, "reset": true, "rotate": true, "delete": true}

// approveArgs reads what an approval names (address and profile of a
// request, or a TPM's EK) from q, each at most once.
func approveArgs(q url.Values, allowCSRF bool) (api.ApproveRequest, error) {
	var a api.ApproveRequest
	for k, vs := range q {
		if len(vs) != 1 {
			return a, &inputError{k + ": given " + strconv.Itoa(len(vs)) + " times"}
		}
		switch k {
		case "address":
			ip, err := netip.ParseAddr(vs[0])
			if err != nil {
				return a, &inputError{"address " + strconv.Quote(vs[0]) + ": not an IP address"}
			}
			a.Address = ip.String()
		case "profile":
			a.Profile = vs[0]
		case "ek":
			a.EK = vs[0]
		case "csrf":
			if !allowCSRF {
				return a, &inputError{"csrf does not belong in a page's address"}
			}
		default:
			return a, &inputError{"field " + strconv.Quote(k) + ": an approval takes address and profile, or ek"}
		}
	}
	return a, nil
}

// confirmMachine answers GET /console/machines/MAC/ACTION: what the
// action will do to this machine, and the button that does it.
func (c *Console) confirmMachine(w http.ResponseWriter, r *http.Request, s *session) {
	mac, err := c.macParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	act := r.PathValue("action")
	if !machineActions[act] {
		c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%q: a machine can be approved, reset, rotated or deleted", act))
		return
	}
	ctx := r.Context()
	d, err := c.machineData(ctx, mac, 0)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	name := mac
	if d.Machine.Hostname != "" {
		name += " (" + d.Machine.Hostname + ")"
	}
	cf := confirmation{Action: Prefix + "/machines/" + mac + "/" + act, Back: Prefix + "/machines/" + mac, Fields: map[string]string{}, Needs: enroll.ScopeOperate}
	if d.Row.Conflict != "" {
		cf.Warn = append(cf.Warn, "Conflict: "+d.Row.Conflict)
	}
	disks := describeDisks(d.Disks)
	switch act {
	case "approve":
		a, err := approveArgs(r.URL.Query(), false)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		cf.Heading, cf.Button = "Approve "+name, "Approve"
		switch {
		case a.EK != "":
			if d.TPM == nil || (d.TPM.Pending != a.EK && d.TPM.Refused != a.EK && d.TPM.EK != a.EK) {
				c.refuse(w, r, s, http.StatusNotFound, "No TPM with EK "+a.EK+" has shown itself as "+mac+".")
				return
			}
			cf.Fields["ek"] = a.EK
			cf.What = append(cf.What, "Pins the TPM whose EK is "+a.EK+" as this machine: only that TPM's attested boots get its document.")
			if d.TPM.Pending == a.EK && d.TPM.PendingAddress != "" {
				cf.What = append(cf.What, "It asked from "+d.TPM.PendingAddress+".")
			}
			if d.TPM.EK != "" && d.TPM.EK != a.EK {
				cf.Warn = append(cf.Warn, "It replaces the pinned TPM "+d.TPM.EK+": the machine's secrets are forgotten and its sessions end.")
			}
			if d.TPM.EK == a.EK {
				cf.What = append(cf.What, "It is the pinned TPM already: its firmware baseline is recorded again at its next boot.")
			}
		default:
			var match []state.Request
			for _, q := range d.Requests {
				if (a.Address == "" || q.Address == a.Address) && (a.Profile == "" || q.Profile == a.Profile) {
					match = append(match, q)
				}
			}
			if len(match) != 1 {
				c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%d of this machine's requests match that: choose one on its page.", len(match)))
				return
			}
			q := match[0]
			cf.Fields["address"], cf.Fields["profile"] = q.Address, q.Profile
			cf.What = append(cf.What,
				fmt.Sprintf("Admits %s to profile %s at address %s: it boots that profile from that address only.", name, q.Profile, q.Address),
				fmt.Sprintf("It asked %s, first at %s, last at %s.", times(q.Asked), fmtTime(q.First), fmtTime(q.Seen)),
				"Its secrets for the profile are forgotten and its sessions end: its next boot gets new ones.")
			if q.Hostname != "" {
				cf.What = append(cf.What, "The request said its host name is "+q.Hostname+".")
			}
			if q.Conflict {
				cf.Warn = append(cf.Warn, "This machine is approved at another address, and this request came from "+q.Address+": approving moves it here. Make sure it is the same machine.")
			}
			for _, o := range d.Requests {
				if o.Address != q.Address || o.Profile != q.Profile {
					cf.Warn = append(cf.Warn, fmt.Sprintf("It also asked for %s from %s (%s).", o.Profile, o.Address, times(o.Asked)))
				}
			}
		}
	case "reset":
		cf.Heading, cf.Button = "Reset the disks of "+name, "Reset"
		cf.What = append(cf.What, "Ends its iSCSI sessions and removes "+disks+": everything written there is lost.",
			"Its next boot starts blank (or from its base image).")
	case "rotate":
		cf.Heading, cf.Button = "Rotate the secrets of "+name, "Rotate"
		cf.What = append(cf.What, "Gives it new CHAP secrets and ends its sessions; its disks stay.",
			"The running machine loses its disks until it boots again (its next boot's document carries the new secrets).")
	case "delete":
		cf.Heading, cf.Button = "Delete "+name, "Delete"
		cf.What = append(cf.What, "Ends its sessions and removes "+disks+".",
			"Forgets the machine: its admissions, requests, TPM and boots. If it boots again it starts as a new machine (under approve: a new request).")
	}
	c.render(w, r, http.StatusOK, "confirm", s, cf)
}

func describeDisks(ks []state.Disk) string {
	if len(ks) == 0 {
		return "its disks (it has none now)"
	}
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s disk %d of profile %s (%s)", k.Kind, k.ID, k.Profile, humanBytes(k.Size)))
	}
	return "its " + plural(len(ks), "disk") + ": " + strings.Join(parts, ", ")
}

// machineAction answers POST /console/machines/MAC/ACTION.
func (c *Console) machineAction(w http.ResponseWriter, r *http.Request, s *session) {
	mac, err := c.macParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	act := r.PathValue("action")
	if !machineActions[act] {
		c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%q: a machine can be approved, reset, rotated or deleted", act))
		return
	}
	ctx := context.WithoutCancel(r.Context())
	back := []link{{Prefix + "/machines/" + mac, "Back to " + mac}}
	var done string
	switch act {
	case "approve":
		a, err := approveArgs(r.PostForm, true)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		ap, err := c.d.Actions.Approve(ctx, mac, a)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		if ap.TPM != nil {
			done = "Approved the TPM " + ap.TPM.EK + " as " + mac + "."
		} else {
			done = fmt.Sprintf("Approved %s for profile %s at %s; its secrets were forgotten and its sessions ended.", mac, ap.Profile, ap.Address)
		}
		back = append(back, link{Prefix + "/pending", "Next pending approval"})
	default:
		// reset, rotate, delete: the form carries its CSRF token only.
		if err := noFields(r.PostForm); err != nil {
			c.fail(w, r, s, err)
			return
		}
		var n int
		var err error
		switch act {
		case "reset":
			n, err = c.d.Actions.ResetMachine(ctx, mac)
			done = fmt.Sprintf("Reset %s: %s removed.", mac, plural(n, "disk"))
		case "rotate":
			var k int64
			k, err = c.d.Actions.RotateMachine(ctx, mac)
			done = fmt.Sprintf("Rotated the secrets of %s (%s).", mac, plural(int(k), "secret"))
		case "delete":
			n, err = c.d.Actions.DeleteMachine(ctx, mac)
			done = fmt.Sprintf("Deleted %s and %s.", mac, plural(n, "disk"))
			back = []link{{Prefix + "/machines", "Machines"}}
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
	}
	c.d.Log.Info("console: "+act, "mac", mac, "token", s.token.Name)
	c.render(w, r, http.StatusOK, "message", s, message{Heading: "Done", Text: done, Links: back})
}

// noFields refuses a form with anything but its CSRF token.
func noFields(f url.Values) error {
	for k := range f {
		if k != "csrf" {
			return &inputError{"the form has a field it should not: " + k}
		}
	}
	return nil
}

// versionArg reads the version to roll back to (0: the one before).
func versionArg(q url.Values, allowCSRF bool) (int, error) {
	v := 0
	for k, vs := range q {
		switch {
		case k == "version" && len(vs) == 1:
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 1 {
				return 0, &inputError{"version " + strconv.Quote(vs[0]) + ": want a version number"}
			}
			v = n
		case k == "csrf" && allowCSRF:
		default:
			return 0, &inputError{"field " + strconv.Quote(k) + ": a rollback takes version, once"}
		}
	}
	return v, nil
}

func (c *Console) confirmRollback(w http.ResponseWriter, r *http.Request, s *session) {
	name, err := imageParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v, err := versionArg(r.URL.Query(), false)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	cur, err := c.d.DB.Image(r.Context(), name)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if v == 0 {
		v = cur.Version - 1
	}
	if v < 1 || v >= cur.Version {
		c.refuse(w, r, s, http.StatusBadRequest, fmt.Sprintf("Image %s has no version %d to roll back to (current is %d).", name, v, cur.Version))
		return
	}
	old, err := c.d.DB.ImageVersion(r.Context(), name, v)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "confirm", s, confirmation{
		Heading: fmt.Sprintf("Roll %s back to version %d", name, v),
		What: []string{
			fmt.Sprintf("Publishes version %d of %s again as version %d: %s (%s, published %s).", v, name, cur.Version+1, old.Digest, humanBytes(old.Size), fmtTime(old.Published)),
			fmt.Sprintf("Machines that boot %s from then on get it; machines running version %d (%s) keep reading it until they boot again.", name, cur.Version, shortDigest(cur.Digest)),
		},
		Action: Prefix + "/images/" + name + "/rollback", Fields: map[string]string{"version": strconv.Itoa(v)},
		Button: "Roll back", Back: Prefix + "/images/" + name, Needs: enroll.ScopeOperate,
	})
}

func (c *Console) rollback(w http.ResponseWriter, r *http.Request, s *session) {
	name, err := imageParam(r)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v, err := versionArg(r.PostForm, true)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	im, err := c.d.Actions.Rollback(context.WithoutCancel(r.Context()), name, v)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.d.Log.Info("console: rollback", "image", name, "version", im.Version, "token", s.token.Name)
	c.render(w, r, http.StatusOK, "message", s, message{Heading: "Done",
		Text:  fmt.Sprintf("%s is now version %d: %s (%s).", name, im.Version, im.Digest, im.Note),
		Links: []link{{Prefix + "/images/" + name, "Back to " + name}}})
}

// userActions are what can be done to a user.
var userActions = map[string]bool{"password": true, "reset": true}

func (c *Console) confirmUser(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if err := enroll.CheckUserName(name); err != nil {
		c.fail(w, r, s, &inputError{err.Error()})
		return
	}
	act := r.PathValue("action")
	if !userActions[act] {
		c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%q: a user's password can be set, or their disks reset", act))
		return
	}
	if _, err := c.d.DB.User(r.Context(), name); err != nil {
		c.fail(w, r, s, err)
		return
	}
	ks, err := c.d.DB.DisksOf(r.Context(), state.OwnerUser, name)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	cf := confirmation{Action: Prefix + "/users/" + name + "/" + act, Back: Prefix + "/users", Fields: map[string]string{}, Needs: enroll.ScopeAdmin}
	switch act {
	case "password":
		cf.Heading, cf.Button, cf.Password = "New password for "+name, "Set password", true
		cf.What = []string{"Their next login needs the new password; machines they are logged in on keep running.", "Their disks stay."}
	case "reset":
		cf.Heading, cf.Button = "Reset the disks of "+name, "Reset"
		cf.What = []string{"Ends their sessions and removes " + strings.TrimPrefix(describeDisks(ks), "its ") + ": everything written there is lost.",
			"Their next login starts with a blank disk."}
	}
	c.render(w, r, http.StatusOK, "confirm", s, cf)
}

func (c *Console) userAction(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if err := enroll.CheckUserName(name); err != nil {
		c.fail(w, r, s, &inputError{err.Error()})
		return
	}
	act := r.PathValue("action")
	if !userActions[act] {
		c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%q: a user's password can be set, or their disks reset", act))
		return
	}
	ctx := context.WithoutCancel(r.Context())
	var done string
	switch act {
	case "password":
		for k := range r.PostForm {
			if k != "csrf" && k != "password" && k != "again" {
				c.fail(w, r, s, &inputError{"the form has a field it should not: " + k})
				return
			}
		}
		pw := r.PostForm.Get("password")
		if pw != r.PostForm.Get("again") {
			c.refuse(w, r, s, http.StatusBadRequest, "The two passwords differ. Nothing changed.")
			return
		}
		if err := c.d.Actions.SetPassword(ctx, name, pw); err != nil {
			c.fail(w, r, s, err)
			return
		}
		done = "Set a new password for " + name + "."
	case "reset":
		if err := noFields(r.PostForm); err != nil {
			c.fail(w, r, s, err)
			return
		}
		n, err := c.d.Actions.ResetUser(ctx, name)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		done = fmt.Sprintf("Reset %s: %s removed.", name, plural(n, "disk"))
	}
	c.d.Log.Info("console: user "+act, "user", name, "token", s.token.Name)
	c.render(w, r, http.StatusOK, "message", s, message{Heading: "Done", Text: done, Links: []link{{Prefix + "/users", "Users"}}})
}
