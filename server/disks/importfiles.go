package disks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/overboot/overboot/server/state"
)

// MigrateLegacy imports the per-machine state that overboot kept in files
// before the store (DATA/machines/aa-bb-cc-dd-ee-ff/{secret, upper.img,
// cow.delta, cow.delta.log, cow.base}): each machine becomes an enrolled
// row with its secret, each disk a row pointing at its file where it is.
// profileOf names the profile a machine has now (its disks are recorded
// under it). A machine already in the store is skipped, so running it
// twice imports nothing twice. The secret file goes once its row is
// committed (a stale copy would outlive a rotation). It returns how many
// machines were imported.
func (m *Manager) MigrateLegacy(ctx context.Context, legacyDir string, profileOf func(mac string) string) (int, error) {
	ents, err := os.ReadDir(legacyDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		hw, err := net.ParseMAC(strings.ReplaceAll(e.Name(), "-", ":"))
		if err != nil || !e.IsDir() || len(hw) != 6 {
			continue
		}
		mac := hw.String()
		dir := filepath.Join(legacyDir, e.Name())
		if _, err := m.db.Machine(ctx, mac); err == nil {
			continue
		} else if !errors.Is(err, state.ErrNotFound) {
			return n, err
		}
		secret, err := os.ReadFile(filepath.Join(dir, "secret"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
		profile := profileOf(mac)
		if err := m.db.AddMachine(ctx, state.Machine{MAC: mac, Profile: profile}); err != nil {
			return n, fmt.Errorf("import %s: %w", dir, err)
		}
		// Admitted by an older overboot: adopted with the profile's
		// policy at start (state.DB.AdoptLegacy), pinning the first
		// address it boots from.
		if err := m.db.AddAdmission(ctx, state.Admission{MAC: mac, Profile: profile, Secret: strings.TrimSpace(string(secret))}); err != nil {
			return n, fmt.Errorf("import %s: %w", dir, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "upper.img")); err == nil {
			if _, err := m.db.AddDisk(ctx, state.Disk{OwnerKind: state.OwnerMachine, Owner: mac, Profile: profile, Kind: state.DiskUpper, Path: filepath.Join(dir, "upper.img"), Size: fi.Size(), Home: m.home}); err != nil {
				return n, fmt.Errorf("import %s: %w", dir, err)
			}
		}
		if base, err := os.ReadFile(filepath.Join(dir, "cow.base")); err == nil {
			stamp := strings.TrimSpace(string(base))
			var size int64
			if f := strings.Fields(stamp); len(f) >= 3 {
				fmt.Sscan(f[len(f)-2], &size)
			}
			if _, err := m.db.AddDisk(ctx, state.Disk{OwnerKind: state.OwnerMachine, Owner: mac, Profile: profile, Kind: state.DiskCow, Path: filepath.Join(dir, "cow.delta"), Size: size, Base: stamp, Home: m.home}); err != nil {
				return n, fmt.Errorf("import %s: %w", dir, err)
			}
		}
		if err := os.Remove(filepath.Join(dir, "secret")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}
