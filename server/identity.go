package server

import (
	"context"
	"net"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/identity"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
)

// identity makes the identity of t's machine for its boot: its host name,
// its machine-id (kept from its first boot), SSH host keys, and the
// profile's templates. Stable host keys go only to machines the profile
// admitted as themselves (approve, tpm, or open-insecure said aloud), and
// belong to that admission: under open and login a MAC proves nothing,
// so anyone naming it would get the keys; those machines get new keys at
// every boot instead (no two machines share the image's keys either
// way). An approval forgets the admission's keys (an earlier address may
// have seen them).
func (s *Server) identity(ctx context.Context, t state.BootToken, p *config.Profile) (*boot.Identity, error) {
	mac, err := net.ParseMAC(t.MAC)
	if err != nil {
		return nil, err
	}
	m, err := s.db.Machine(ctx, t.MAC)
	if err != nil {
		return nil, err
	}
	set := s.sets.Load()
	cm := set.Machine(profiles.Who{MAC: mac, UUID: m.UUID})
	configured := ""
	var labels []string
	if cm != nil {
		configured, labels = cm.Hostname, cm.Labels
	}
	id := &boot.Identity{Hostname: identity.Hostname(mac, configured, m.Hostname), MachineID: m.MachineID}
	if id.MachineID == "" {
		newID, err := identity.NewMachineID()
		if err != nil {
			return nil, err
		}
		// The first boot's value wins if two boots race here.
		if id.MachineID, err = s.db.SetMachineID(ctx, t.MAC, newID); err != nil {
			return nil, err
		}
	}
	// Under tpm the document goes to the attested TPM alone (sealed to
	// it): the keys are that TPM's, forgotten when another is approved.
	stable := p.Policy() == config.EnrollApprove || p.Policy() == config.EnrollOpenInsecure || p.Policy() == config.EnrollTPM
	stored := ""
	if stable {
		a, err := s.db.Admission(ctx, t.MAC, p.Name)
		if err != nil {
			return nil, err
		}
		stored = a.HostKeys
	}
	var keys identity.Keys
	if stored == "" {
		if keys, err = identity.NewKeys("root@" + id.Hostname); err != nil {
			return nil, err
		}
		if stable {
			// The first boot's keys stay if two boots race here.
			if stored, err = s.db.SetHostKeys(ctx, t.MAC, p.Name, keys.String()); err != nil {
				return nil, err
			}
		}
	}
	if stored != "" {
		if keys, err = identity.ParseKeys(stored); err != nil {
			return nil, err
		}
	}
	id.Files = keys.Files()
	files, err := set.Templates(p.Name).Render(identity.Vars{Hostname: id.Hostname, MAC: t.MAC, IP: t.Address, Profile: p.Name,
		MachineID: id.MachineID, User: t.User, Labels: labels})
	if err != nil {
		return nil, err
	}
	id.Files = append(id.Files, files...)
	return id, nil
}
