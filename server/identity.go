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
// admitted as themselves (approve, or open-insecure said aloud): under
// open and login a MAC proves nothing, so anyone naming it would get the
// keys; those machines get new keys at every boot instead (no two
// machines share the image's keys either way).
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
	stable := p.Policy() == config.EnrollApprove || p.Policy() == config.EnrollOpenInsecure
	var keys identity.Keys
	if stable && m.HostKeys != "" {
		if keys, err = identity.ParseKeys(m.HostKeys); err != nil {
			return nil, err
		}
	} else if keys, err = identity.NewKeys("root@" + id.Hostname); err != nil {
		return nil, err
	}
	if id.MachineID == "" || (stable && m.HostKeys == "") {
		newID, err := identity.NewMachineID()
		if err != nil {
			return nil, err
		}
		store := ""
		if stable {
			store = keys.String()
		}
		// The first boot's values win if two boots race here.
		if m, err = s.db.SetIdentity(ctx, t.MAC, newID, store); err != nil {
			return nil, err
		}
		id.MachineID = m.MachineID
		if stable {
			if keys, err = identity.ParseKeys(m.HostKeys); err != nil {
				return nil, err
			}
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
