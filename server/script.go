package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/drivers"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/grub"
	"github.com/overboot/overboot/server/ipxe"
	"github.com/overboot/overboot/server/pci"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// WaitForApproval is how long a pending machine's script waits before it
// asks again.
const WaitForApproval = answer.WaitForApproval

// reply writes a (package server/answer) as the firmware's script, with
// code: iPXE's, or a GRUB config for a request on the Secure Boot path
// (grubRequest). What GRUB cannot do (a sanboot) is a refusal saying so.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, code int, a answer.Answer) {
	var text string
	var err error
	if isGRUB(r) {
		text, err = grub.Render(a)
		if errors.Is(err, grub.ErrNoGRUBForm) {
			s.log.Warn("no GRUB form for the answer: refused", "err", err)
			code, text, err = http.StatusOK, grub.Refusal(err.Error()), nil
		} else if err != nil {
			s.log.Error("render a GRUB config", "err", err)
			code, text = http.StatusInternalServerError, grub.Refusal("the server cannot write this machine's config: see its log")
		}
	} else {
		text, err = ipxe.Render(a)
		if err != nil {
			s.log.Error("render a script", "err", err)
			code, text = http.StatusInternalServerError, ipxe.FailScript("the server cannot write this machine's script: see its log")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(text))
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.reply(w, r, code, answer.Refusal{Message: why})
}

func (s *Server) bootstrap(w http.ResponseWriter, r *http.Request) {
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.reply(w, r, http.StatusOK, answer.Bootstrap{Server: base})
}

// script answers /ipxe?mac=...: the machine's profile's enrolment policy
// decides what it gets.
func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	addr := remoteIP(r)
	if !s.scriptRate.Allow(addr) {
		s.metrics.Refused("rate_limit")
		s.fail(w, r, http.StatusTooManyRequests, "too many requests from "+addr+": wait a minute and retry")
		return
	}
	c, err := ipxe.ParseQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if c.MAC == nil {
		s.fail(w, r, http.StatusBadRequest, "query parameter mac: missing")
		return
	}
	ip, _ := netip.ParseAddr(addr)
	p, cm, why, err := s.sets.Load().Select(profiles.Who{MAC: c.MAC, UUID: c.UUID, Hostname: c.Hostname, Arch: c.BuildArch, Platform: c.Platform, IP: ip})
	if err != nil {
		s.log.Warn("no script", "mac", c.MAC.String(), "err", err)
		s.fail(w, r, http.StatusNotFound, err.Error())
		return
	}
	s.log.Debug("profile chosen", "mac", c.MAC.String(), "profile", p.Name, "because", why.String())
	hostname := c.Hostname
	if cm != nil && cm.Hostname != "" {
		hostname = cm.Hostname
	}
	s.nics.Seen(c.MAC.String(), c.NIC)
	s.admit(w, r, bootReq{mac: c.MAC.String(), hostname: hostname, uuid: c.UUID, addr: addr, nic: c.NIC}, p, false)
}

// bootReq is one machine's request for a script.
type bootReq struct {
	mac, hostname, uuid, addr string
	bootID                    int64  // a boot already started (at a menu)
	user                      string // who logged in, for a login's boot
	nic                       pci.ID // the booting NIC, from the query; zero after a menu
	// console: the boot of a login profile whose agent asks for the
	// username and password on the console (answer.ConsoleLoginFor).
	console bool
}

// admit applies p's enrolment policy to the request (enroll.Decide),
// then answers a menu or the boot script. fromMenu: the request is a
// menu's choice.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, q bootReq, p *config.Profile, fromMenu bool) {
	ctx := r.Context()
	var adm *state.Admission
	switch a, err := s.db.Admission(ctx, q.mac, p.Name); {
	case err == nil:
		adm = &a
	case !errors.Is(err, state.ErrNotFound):
		s.log.Error("read admission", "mac", q.mac, "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot read its records: see its log")
		return
	}
	d := enroll.Decide(p.Policy(), q.mac, adm, q.addr)
	m := state.Machine{MAC: q.mac, Profile: p.Name, Address: q.addr, Hostname: q.hostname, UUID: q.uuid}
	var err error
	switch d.Step {
	case enroll.Enter:
		_, err = s.db.Enter(ctx, m, string(p.Policy()), enroll.Quota(p))
	case enroll.Boot:
		err = s.db.Refresh(ctx, m, d.Pin)
	case enroll.Ask, enroll.Conflict:
		err = s.db.Ask(ctx, state.Request{MAC: q.mac, Profile: p.Name, Address: q.addr, Hostname: q.hostname, UUID: q.uuid, Conflict: d.Step == enroll.Conflict}, enroll.Quota(p))
	}
	if errors.Is(err, state.ErrQuota) {
		s.metrics.Refused("quota")
		s.log.Warn("machine refused", "mac", q.mac, "profile", p.Name, "address", q.addr, "err", err)
		s.fail(w, r, http.StatusForbidden, err.Error()+": ask the administrator")
		return
	}
	if err != nil {
		s.log.Error("record machine", "mac", q.mac, "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot record this machine: see its log")
		return
	}
	switch d.Step {
	case enroll.Conflict:
		// Nothing of the approved machine changes: only the request is
		// recorded, for the administrator to see.
		s.metrics.Refused("conflict")
		s.log.Warn("machine refused: approved at another address", "mac", q.mac, "profile", p.Name, "address", q.addr, "approved_at", adm.Address)
		s.rec.Changed(q.mac)
		s.again(w, r, d.Why, "", answer.WaitForApproval)
		return
	case enroll.Ask:
		s.metrics.Refused("pending")
		s.log.Info("machine waits for approval", "mac", q.mac, "profile", p.Name, "address", q.addr)
		s.rec.Changed(q.mac)
		s.again(w, r, d.Why, "", answer.WaitForApproval)
		return
	}
	if p.HasMenu() && !fromMenu {
		s.menu(w, r, q, p)
		return
	}
	s.bootScript(w, r, q, p)
}

// failBoot answers a refusal or an error of the server as a failed boot
// that the status page and machine show can tell: the boot is recorded
// with its message (a machine the server could not serve is not silent).
func (s *Server) failBoot(w http.ResponseWriter, r *http.Request, q bootReq, p *config.Profile, code int, why string) {
	ctx := r.Context()
	if q.bootID == 0 {
		q.bootID = s.rec.Start(ctx, state.Boot{MAC: q.mac, Profile: p.Name, User: q.user, Address: q.addr}, "script")
	}
	s.rec.Event(ctx, q.bootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "script", Outcome: telemetry.Failed, Message: why})
	s.failScript(w, r, code, why)
}

// again answers a script that shows why, waits and asks for the
// machine's script again.
func (s *Server) again(w http.ResponseWriter, r *http.Request, why, notice string, wait time.Duration) {
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.reply(w, r, http.StatusOK, answer.Wait{Server: base, Message: answer.Text(why), Notice: notice, Wait: wait})
}

func (q bootReq) machine() answer.Machine {
	return answer.Machine{MAC: q.mac, Hostname: q.hostname, User: q.user}
}

// menu answers a profile's menu: a login item (login profiles) and its
// entries, each behind one single-use token bound to this address. A
// machine that cannot show iPXE's form (GRUB's, on the Secure Boot path)
// or whose profile says login = console logs in on the console: its
// login item boots the kernel that asks there, and without other items
// there is no menu, only that boot.
func (s *Server) menu(w http.ResponseWriter, r *http.Request, q bootReq, p *config.Profile) {
	ctx := r.Context()
	console := p.Policy() == config.EnrollLogin && (isGRUB(r) || p.ConsoleLogin())
	if console && len(p.Menu) == 0 {
		q.console = true
		s.bootScript(w, r, q, p)
		return
	}
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if q.bootID == 0 {
		q.bootID = s.rec.Start(ctx, state.Boot{MAC: q.mac, Profile: p.Name, Address: q.addr}, "menu")
	}
	if q.bootID == 0 {
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot record this boot: see its log")
		return
	}
	tok, err := s.tokens.Issue(ctx, state.BootToken{Purpose: enroll.PurposeMenu, MAC: q.mac, Profile: p.Name, Address: q.addr, BootID: q.bootID}, enroll.MenuTTL)
	if err != nil {
		s.log.Error("issue token", "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot issue a token: see its log")
		return
	}
	if isGRUB(r) {
		// Its entries answer GRUB configs too: /grub/entry/TOKEN/NAME.
		base += grub.Path
	}
	s.reply(w, r, http.StatusOK, answer.MenuFor(base, q.machine(), p, tok, console))
}

// entry answers a menu's choice of another profile: that profile's own
// policy applies.
func (s *Server) entry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	from, ok := s.spend(w, r, r.PathValue("token"), enroll.PurposeMenu, true)
	if !ok {
		return
	}
	set := s.sets.Load()
	menu, name := set.Profile(from.Profile), r.PathValue("profile")
	p := set.Profile(name)
	if menu == nil || p == nil || !slices.Contains(menu.Menu, name) {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("profile %s is not an entry of this menu", name))
		return
	}
	s.rec.Event(ctx, from.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "entry", Outcome: telemetry.OK, Message: name})
	m, _ := s.db.Machine(ctx, from.MAC)
	s.admit(w, r, bootReq{mac: from.MAC, hostname: m.Hostname, uuid: m.UUID, addr: from.Address, bootID: from.BootID}, p, true)
}

// spend spends a token from the request's address, answering the refusal
// itself (as an iPXE script when script is set). A token spent from
// another address is logged as an attempt.
func (s *Server) spend(w http.ResponseWriter, r *http.Request, tok, purpose string, script bool) (state.BootToken, bool) {
	addr := remoteIP(r)
	if !s.scriptRate.Allow(addr) {
		s.metrics.Refused("rate_limit")
		if script {
			s.fail(w, r, http.StatusTooManyRequests, "too many requests from "+addr+": wait a minute and retry")
		} else {
			http.Error(w, "too many requests from "+addr+": wait a minute and retry", http.StatusTooManyRequests)
		}
		return state.BootToken{}, false
	}
	t, err := s.tokens.Spend(r.Context(), tok, purpose, addr)
	if err == nil {
		return t, true
	}
	code, why := http.StatusInternalServerError, "the server cannot read its tokens: see its log"
	switch {
	case errors.Is(err, state.ErrWrongAddress):
		s.metrics.Refused("wrong_address")
		s.log.Warn("token refused: spent from another address than the one it was handed to", "purpose", purpose, "err", err)
		code, why = http.StatusForbidden, "this URL belongs to another machine"
	case errors.Is(err, state.ErrNotFound) && s.given.has(enroll.HashToken(tok)):
		// Spent by a try that failed, and not yet back (giveBack).
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
		code, why = http.StatusServiceUnavailable, "the server is recovering this URL: retry"
	case errors.Is(err, state.ErrNotFound):
		s.metrics.Refused("bad_token")
		code, why = http.StatusNotFound, "unknown, used or expired URL: reboot the machine for a new one"
	default:
		s.log.Error("spend token", "err", err)
	}
	if script {
		s.failScript(w, r, code, why)
	} else {
		http.Error(w, why, code)
	}
	return state.BootToken{}, false
}

// bootScript answers the script that boots p: a kernel (with its
// document's single-use URL) or a chain to the single-use sanboot script.
func (s *Server) bootScript(w http.ResponseWriter, r *http.Request, q bootReq, p *config.Profile) {
	ctx := r.Context()
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if isGRUB(r) && p.Sanboot != "" {
		s.failBoot(w, r, q, p, http.StatusOK, fmt.Sprintf("profile %s: sanboot needs iPXE, which the Secure Boot path does not run", p.Name))
		return
	}
	var arts answer.Artifacts
	var image string
	if p.Sanboot == "" {
		a, err := s.sets.Load().Resolve(ctx, p)
		if err != nil {
			s.log.Error("resolve profile", "profile", p.Name, "err", err)
			s.failBoot(w, r, q, p, http.StatusInternalServerError, fmt.Sprintf("profile %s: %v", p.Name, err))
			return
		}
		if isGRUB(r) {
			if err := s.checkSigned(a.Kernel.Digest); err != nil {
				s.log.Warn("machine refused: an unsigned kernel on the Secure Boot path", "mac", q.mac, "profile", p.Name, "err", err)
				s.failBoot(w, r, q, p, http.StatusOK, fmt.Sprintf("profile %s: %v", p.Name, err))
				return
			}
		}
		arts = answer.Artifacts{Kernel: a.Kernel.Digest, Initramfs: a.Initramfs.Digest, Mirrors: s.mirrors(s.cfg.Load()), Cache: s.cfg.Load().Cache, Secure: s.secure(base)}
		if seg := s.driverSegment(ctx, q, a.Initramfs.Digest); seg != nil {
			arts.Driver = seg.Digest
		}
		image = a.Root.Digest.String()
		if n := p.NFSLower(); n != nil {
			image = n.URL()
		}
	}
	if q.bootID == 0 {
		q.bootID = s.rec.Start(ctx, state.Boot{MAC: q.mac, Profile: p.Name, User: q.user, Address: q.addr, Image: image}, "script")
	} else {
		s.rec.Event(ctx, q.bootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "script", Outcome: telemetry.OK, Message: p.Name})
	}
	if q.bootID == 0 {
		// No record of the boot (the store failed): its document and
		// reports would have nowhere to go. Logged by the recorder.
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot record this boot: see its log")
		return
	}
	// The document (it names the layers, carries the identity and the
	// disk's secrets) or the sanboot script (the secrets too) is served
	// once, behind a single-use URL: never the command line, which every
	// user of the booted system can read.
	// A console login's URL is single use and bound to this address too;
	// its answer, after the password, is the document.
	purpose, ttl, bootFor := answer.Purpose(p), enroll.TokenTTL, answer.BootFor
	if q.console {
		purpose, ttl, bootFor = enroll.PurposeConsoleLogin, enroll.ConsoleLoginTTL, answer.ConsoleLoginFor
	}
	bt := state.BootToken{Purpose: purpose, MAC: q.mac, User: q.user, Profile: p.Name, Address: q.addr, BootID: q.bootID}
	if bt.Purpose == enroll.PurposeAttest {
		// The token records what it was served with, its own URL on the
		// command line included (attestBoot).
		s.attestBoot(w, r, q, p, base, arts, bt)
		return
	}
	tok, err := s.tokens.Issue(ctx, bt, ttl)
	if err != nil {
		s.log.Error("issue token", "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot issue a token: see its log")
		return
	}
	a, err := bootFor(base, q.machine(), p, arts, tok)
	if err != nil {
		s.failBoot(w, r, q, p, http.StatusInternalServerError, err.Error())
		return
	}
	s.reply(w, r, http.StatusOK, a)
}

// segments are the NIC driver segments (package server/drivers finds or
// builds them from the server's kernel modules): the flow asks for one,
// it does not build it.
type segments interface {
	// Seen records the NIC a machine booted from, for its later boots.
	Seen(mac string, nic pci.ID)
	// NIC is the NIC a machine last booted from (zero: unknown).
	NIC(mac string) pci.ID
	// For is the segment a machine with nic needs beside the initramfs
	// base, if any.
	For(ctx context.Context, base boot.Digest, nic pci.ID) (drivers.Choice, error)
}

// driverSegment is the second initrd a machine needs when the base
// initramfs lacks its NIC's driver (package server/drivers), or nil. The
// boot goes on without one when it cannot be had: the machine may still
// find its NIC (a driver built into the kernel, a generic initramfs).
func (s *Server) driverSegment(ctx context.Context, q bootReq, base boot.Digest) *drivers.Segment {
	nic := q.nic
	if nic.IsZero() {
		nic = s.nics.NIC(q.mac)
	}
	c, err := s.nics.For(ctx, base, nic)
	if err != nil {
		s.log.Warn("no driver segment: the machine boots with the base initramfs alone", "mac", q.mac, "pci", nic.String(), "err", err)
		return nil
	}
	if c.Segment == nil {
		s.log.Debug("no driver segment", "mac", q.mac, "pci", nic.String(), "why", c.Why)
		return nil
	}
	s.log.Info("driver segment", "mac", q.mac, "pci", nic.String(), "segment", c.Segment.Name, "bytes", c.Segment.Size, "built", c.Built, "why", c.Why)
	return c.Segment
}
