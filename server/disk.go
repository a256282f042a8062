package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
