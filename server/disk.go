package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// owner is whose disk a token's boot gets: the user who logged in, else
// the machine.
func owner(t state.BootToken) disks.Owner {
	if t.User != "" {
		return disks.Owner{Kind: state.OwnerUser, Name: t.User}
	}
	return disks.Owner{Kind: state.OwnerMachine, Name: t.MAC}
}

// errNotAdmitted: a token's machine lost its admission to the token's
// profile between the script and the spend (an administrator deleted or
// moved it, or the profile's policy changed).
var errNotAdmitted = errors.New("not admitted")

// admitted checks, when a token is spent, that its machine still holds
// the admission the token was issued under: a token outlives nothing an
// administrator changed in between.
func (s *Server) admitted(ctx context.Context, t state.BootToken, p *config.Profile) error {
	a, err := s.db.Admission(ctx, t.MAC, p.Name)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("machine %s in profile %s: %w", t.MAC, p.Name, errNotAdmitted)
	}
	if err != nil {
		return err
	}
	if a.Policy != string(p.Policy()) || (a.Policy == state.PolicyApprove && a.Address != t.Address) {
		return fmt.Errorf("machine %s in profile %s (%s at %s): %w", t.MAC, p.Name, a.Policy, a.Address, errNotAdmitted)
	}
	return nil
}

// attach creates (on first use) and exports the disk of t's boot.
func (s *Server) attach(ctx context.Context, t state.BootToken, p *config.Profile) (disks.Export, error) {
	if err := s.admitted(ctx, t, p); err != nil {
		return disks.Export{}, err
	}
	o := owner(t)
	var creds disks.Credentials
	var err error
	if o.Kind == state.OwnerUser {
		creds, err = s.disks.NewUserCredentials(ctx, o.Name)
	} else {
		creds, err = s.disks.MachineCredentials(ctx, o.Name, p.Name)
	}
	if err != nil {
		return disks.Export{}, err
	}
	sp := disks.Spec{Owner: o, Profile: p.Name, Kind: state.DiskUpper, Size: p.UpperDiskSize, Quota: enroll.Quota(p)}
	if p.Sanboot != "" {
		sp.Kind, sp.Base, sp.Size = state.DiskCow, p.Sanboot, 0
	}
	return s.disks.Ensure(ctx, sp, creds, disks.InitiatorIQN(t.MAC))
}

// diskPortal is the iSCSI portal a machine logs in to for ex: its
// home's, as that server registered it, when the disk lives on another
// server; else this server's, as the machine reached it at base.
func (s *Server) diskPortal(ex disks.Export, base string) (string, error) {
	if ex.Portal != "" {
		return ex.Portal, nil
	}
	return s.portal(base)
}

// docCHAP is what a machine needs to log in to its disk and to check
// that the target is its disk's: mutual CHAP both ways.
func docCHAP(c disks.Credentials) *boot.CHAP {
	return &boot.CHAP{User: c.Initiator.User, Secret: string(c.Initiator.Secret), TargetUser: c.Target.User, TargetSecret: string(c.Target.Secret)}
}

// diskError answers why a disk could not be had.
func (s *Server) diskError(t state.BootToken, err error) (int, string) {
	switch {
	case errors.Is(err, state.ErrQuota):
		s.metrics.Refused("quota")
		s.log.Warn("disk refused", "owner", owner(t).String(), "profile", t.Profile, "err", err)
		return http.StatusForbidden, err.Error() + ": ask the administrator"
	case errors.Is(err, errNotAdmitted):
		s.log.Warn("disk refused: the machine is no longer admitted", "err", err)
		return http.StatusForbidden, "this machine is no longer admitted to this profile: reboot it"
	case errors.Is(err, disks.ErrMoving):
		s.log.Info("disk refused: it is moving", "owner", owner(t).String(), "err", err)
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, disks.ErrHomeDown):
		s.metrics.Refused("disk_home_down")
		s.log.Warn("disk refused: its home server is not available", "owner", owner(t).String(), "err", err)
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, disks.ErrBaseChanged):
		s.log.Error("disk", "owner", owner(t).String(), "err", err)
		if t.User != "" {
			return http.StatusConflict, "the disk image changed since your copy was made: ask the administrator to reset it (overboot user reset " + t.User + ")"
		}
		return http.StatusConflict, "the disk image changed since this machine's copy was made: reset the machine on the server (overboot machine reset " + t.MAC + ")"
	}
	s.log.Error("disk", "owner", owner(t).String(), "err", err)
	return http.StatusInternalServerError, "cannot prepare the disk: see the server's log"
}

// receiveDisk answers PUT /peer/disks/{id}: a disk's copy from its home,
// moving it here (disks.Manager.Receive checks the move's secret and the
// copy's digest).
func (s *Server) receiveDisk(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		http.Error(w, "disk id: want a positive number", http.StatusBadRequest)
		return
	}
	if r.ContentLength < 0 {
		http.Error(w, "a disk copy needs its Content-Length", http.StatusLengthRequired)
		return
	}
	rc, err := s.disks.Receive(r.Context(), id, r.Header.Get("Authorization"), r.ContentLength, r.Body)
	switch {
	case errors.Is(err, disks.ErrBadCopy):
		s.log.Warn("disk copy refused", "id", id, "from", remoteIP(r), "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case errors.Is(err, state.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		s.log.Error("disk copy", "id", id, "from", remoteIP(r), "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rc)
}
