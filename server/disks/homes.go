package disks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

// ErrHomeDown is wrapped by the error of a boot whose disk lives on a
// server that is down, unknown or has no iSCSI portal.
var ErrHomeDown = errors.New("the disk's home server is not available")

// ErrMoving is wrapped by the error of a boot or change of a disk that is
// moving to another server.
var ErrMoving = errors.New("disk moving")

// timeNow is the clock of the registry checks.
var timeNow = time.Now

func movingError(k state.Disk) error {
	return fmt.Errorf("disk %d is moving to %s: try again shortly: %w", k.ID, k.MoveTo, ErrMoving)
}

// elsewhere answers Ensure for a disk whose home is another server: it
// records the initiator the disk is for (in the store, where its home
// reads it at the machine's login) and returns the home's portal. The
// credentials are the owner's in the store already (the caller made
// them there).
func (m *Manager) elsewhere(ctx context.Context, k state.Disk, creds Credentials, initiator string) (Export, error) {
	if k.Home == "" {
		return Export{}, fmt.Errorf("disk %d has no home server yet: start the server whose data directory holds %s (it adopts it at start): %w", k.ID, k.Path, ErrHomeDown)
	}
	info, err := m.db.Server(ctx, k.Home)
	if errors.Is(err, state.ErrNotFound) {
		return Export{}, fmt.Errorf("disk %d lives on server %s, which is not registered (overboot server ls): %w", k.ID, k.Home, ErrHomeDown)
	}
	if err != nil {
		return Export{}, err
	}
	if now := timeNow(); !info.Up(now) {
		how := "stopped " + info.Stopped.UTC().Format(time.RFC3339)
		if info.Stopped.IsZero() {
			how = "silent"
		}
		return Export{}, fmt.Errorf("disk %d lives on server %s, which is down (%s, last heartbeat %s, %s ago): start it, or move the disk (overboot disk move): %w",
			k.ID, k.Home, how, info.Heartbeat.UTC().Format(time.RFC3339), now.Sub(info.Heartbeat).Round(time.Second), ErrHomeDown)
	}
	if info.Portal == "" {
		return Export{}, fmt.Errorf("disk %d lives on server %s, which serves no iSCSI now: %w", k.ID, k.Home, ErrHomeDown)
	}
	if k.ExportedTo != initiator {
		if err := m.db.SetDiskExport(ctx, k.ID, initiator); err != nil {
			return Export{}, fmt.Errorf("disk %d: record its export for its home %s: %w", k.ID, k.Home, err)
		}
		k.ExportedTo = initiator
	}
	return Export{Disk: k, Target: TargetIQN(k), Initiator: initiator, Creds: creds, Portal: info.Portal}, nil
}

// ServerFile, in the data directory (beside the disks directory), names
// the server whose disks these are (written at its first start).
const ServerFile = "server-name"

// claimDir records beside dir that its disks are home's, or checks that
// they are. A server renamed (another [server] name, or another host name
// when it has none) would take the disks of its old name for copies of
// disks living elsewhere, and Sweep would remove them: it is refused
// instead, naming both names.
func claimDir(dir, home string) error {
	p := filepath.Join(filepath.Dir(dir), ServerFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if was := strings.TrimSpace(string(b)); was != home {
			return fmt.Errorf("disks: %s holds the disks of server %q, and this server is named %q: give it name = %s in [server] (its disks are known by that name in the store)", dir, was, home, was)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("disks: %w", err)
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(home+"\n"), 0o600); err != nil {
		return fmt.Errorf("disks: %w", err)
	}
	if err := durable.Sync(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("disks: %w", err)
	}
	return durable.Sync(filepath.Dir(dir))
}

// diskID reads the disk's row ID from a target name of ours (TargetIQN).
func diskID(iqn string) (int64, bool) {
	rest, ok := strings.CutPrefix(iqn, IQNPrefix)
	if !ok {
		return 0, false
	}
	i := strings.LastIndex(rest, "-d")
	if i < 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(rest[i+2:], 10, 64)
	return id, err == nil && id > 0
}

// onLogin is the target's login hook: before a normal login looks its
// target up, it makes the export of that disk what the store says. A
// disk that lives here, ready, last handed to this initiator (by
// whichever server answered the machine) is exported with its owner's
// credentials from the store, replacing a stale export (and ending its
// session: one machine at a time per disk, as Ensure does). A disk that
// lives elsewhere now, or is being deleted or is gone, loses the target
// it had here. Anything else (another initiator, a moving disk) changes
// nothing: the login then fails as any wrong login does. Names come from
// a peer that has not authenticated: they only select what the store
// already decided.
func (m *Manager) onLogin(iqn, initiator string) {
	id, ok := diskID(iqn)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	k, err := m.db.DiskByID(ctx, id)
	switch {
	case errors.Is(err, state.ErrNotFound):
		m.dropIDLocked(iqn, id)
		return
	case err != nil:
		m.log.Warn("iscsi login: cannot read the disk from the store; its export stays as it is", "target", iqn, "err", err)
		return
	case TargetIQN(k) != iqn:
		return
	case k.Home != m.home || k.Status == state.DiskDeleting:
		m.dropIDLocked(iqn, id)
		return
	case k.Status != state.DiskReady || k.ExportedTo != initiator:
		return
	}
	creds, ok := m.Stored(ctx, k)
	if !ok {
		return
	}
	if _, open := m.luns[k.ID]; open && m.target.HasTarget(iqn, creds.Initiator, initiator) {
		return
	}
	lun := m.luns[k.ID]
	if lun == nil {
		if lun, err = m.open(k); err != nil {
			m.log.Warn("iscsi login: cannot open the disk to export it", "id", k.ID, "err", err)
			return
		}
	}
	if err := m.export(k, lun, creds, initiator); err != nil {
		if m.luns[k.ID] == nil {
			lun.Close()
		}
		m.log.Warn("iscsi login: cannot export the disk", "id", k.ID, "err", err)
		return
	}
	m.luns[k.ID] = lun
	m.log.Info("disk exported at its machine's login", "id", k.ID, "initiator", initiator)
}

// open opens a disk of this server's for export: a copy-on-write layer
// over its profile's base image, which must be the one it was made over.
func (m *Manager) open(k state.Disk) (target.Backing, error) {
	if k.Kind != state.DiskCow {
		return target.OpenFile(k.Path, false)
	}
	b := m.baseOf(k.Profile)
	if b == "" {
		return nil, fmt.Errorf("disk %d: profile %s sanboots no image now", k.ID, k.Profile)
	}
	stamp, err := baseStamp(b)
	if err != nil {
		return nil, err
	}
	if stamp != k.Base {
		return nil, fmt.Errorf("disk %d: made over %q, the base is %q now: %w", k.ID, k.Base, stamp, ErrBaseChanged)
	}
	return target.OpenCow(b, k.Path)
}

// dropIDLocked withdraws target iqn and closes disk id's LUN. m.mu is
// held.
func (m *Manager) dropIDLocked(iqn string, id int64) {
	m.target.RemoveTarget(iqn)
	if lun, ok := m.luns[id]; ok {
		lun.Close()
		delete(m.luns, id)
	}
}

// Recover finishes what a crash interrupted, for the disks of this
// server. First it adopts the disks without a home whose file is in its
// data directory (a store from before homes). Then, of its own disks,
// those still creating are undone (their file may be partial), those
// deleting are removed, and those moving away are put back to ready here
// (the copy was not switched to, so this file is the disk; the other
// server removes its copy, see Sweep). Then Sweep. Directories under
// DATA/disks that no row names are reported and moved to
// DATA/disks/orphans (never deleted: a person decides).
func (m *Manager) Recover(ctx context.Context) error {
	if n, err := m.db.AdoptDisks(ctx, m.home, filepath.Dir(m.dir)); err != nil {
		return err
	} else if n > 0 {
		m.log.Info("disks of an older store: this server is their home now", "disks", n, "server", m.home)
	}
	ks, err := m.db.Disks(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, k := range ks {
		known[fmt.Sprint(k.ID)] = true
		if k.Home != m.home {
			continue
		}
		switch k.Status {
		case state.DiskCreating, state.DiskDeleting:
			m.log.Warn("disk: finishing an interrupted change", "id", k.ID, "status", k.Status, "owner", k.OwnerKind+" "+k.Owner)
			if err := m.removeFiles(k); err != nil {
				return err
			}
			if err := m.db.RemoveDisk(ctx, k.ID); err != nil {
				return err
			}
			delete(known, fmt.Sprint(k.ID))
		case state.DiskMoving:
			ok, err := m.db.UndoMove(ctx, k.ID, m.home, k.MoveTo)
			if err != nil {
				return err
			}
			if ok {
				m.log.Warn("disk: an interrupted move called off; the disk stays here", "id", k.ID, "to", k.MoveTo)
			}
		default:
			if _, err := os.Stat(k.Path); err != nil {
				m.log.Error("disk: its file is missing", "id", k.ID, "path", k.Path, "err", err)
			}
		}
	}
	// A copy this server was receiving when it stopped: its partial
	// file goes (the sender's connection died with this process). A
	// whole copy stays: its sender may switch to it yet.
	for _, k := range ks {
		if k.Status == state.DiskMoving && k.MoveTo == m.home {
			p := filepath.Join(m.diskDir(k.ID), fileName(k.Kind)) + ".new"
			if err := os.Remove(p); err == nil {
				m.log.Warn("disk: a partial copy from an interrupted move removed", "id", k.ID, "from", k.Home)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if err := m.Sweep(ctx); err != nil {
		return err
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "orphans" || known[e.Name()] {
			continue
		}
		orph := filepath.Join(m.dir, "orphans")
		if err := os.MkdirAll(orph, 0o700); err != nil {
			return err
		}
		m.log.Warn("disk: a directory no disk row names, moved aside", "dir", e.Name(), "to", orph)
		if err := os.Rename(filepath.Join(m.dir, e.Name()), filepath.Join(orph, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Sweep does, while the server runs (and at start), what other servers
// asked of this one through the store or left here: it removes the
// copies in DATA/disks of disks whose home is another server and that
// are not moving here (a move away that finished, whose removal a crash
// interrupted; a move here that was called off), and removes its own
// disks that another server marked deleting (ending their sessions).
// Each under the owner's lock, which a copy being received holds: a
// copy arriving is never removed.
func (m *Manager) Sweep(ctx context.Context) error {
	ks, err := m.db.Disks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range ks {
		switch {
		case k.Home == m.home && k.Status == state.DiskDeleting:
			errs = append(errs, m.sweepDeleting(ctx, k))
		case k.Home != m.home && k.Home != "":
			errs = append(errs, m.sweepCopy(ctx, k))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) sweepDeleting(ctx context.Context, k state.Disk) error {
	defer m.lockOwner(Owner{k.OwnerKind, k.Owner})()
	k, err := m.db.DiskByID(ctx, k.ID)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if k.Home != m.home || k.Status != state.DiskDeleting {
		return nil
	}
	m.mu.Lock()
	m.dropLocked(k)
	m.mu.Unlock()
	m.log.Info("disk: removing a disk another server marked for removal", "id", k.ID)
	return m.remove(ctx, k)
}

func (m *Manager) sweepCopy(ctx context.Context, k state.Disk) error {
	dir := m.diskDir(k.ID)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	defer m.lockOwner(Owner{k.OwnerKind, k.Owner})()
	k, err := m.db.DiskByID(ctx, k.ID)
	if errors.Is(err, state.ErrNotFound) {
		return nil // Recover's orphan check sees it at the next start
	} else if err != nil {
		return err
	}
	if k.Home == m.home || k.Home == "" || (k.Status == state.DiskMoving && k.MoveTo == m.home) {
		return nil
	}
	m.mu.Lock()
	m.dropIDLocked(TargetIQN(k), k.ID)
	m.mu.Unlock()
	m.log.Info("disk: removing the copy of a disk that lives on another server", "id", k.ID, "home", k.Home)
	return os.RemoveAll(dir)
}
