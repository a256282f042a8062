package disks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overboot/overboot/internal/durable"

	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

// IQNPrefix starts every name this server gives a target or an initiator.
const IQNPrefix = "iqn.2026-11.org.overboot:"

// DefaultUpperSize is an upper disk's size when the profile does not say
// (sparse: it takes what is written).
const DefaultUpperSize = 4 << 30

// ErrBaseChanged means a copy-on-write layer was made over a base image
// that has changed since: its blocks no longer fit.
var ErrBaseChanged = errors.New("base image changed")

// Owner is whose a disk is.
type Owner struct {
	Kind string // state.OwnerMachine or state.OwnerUser
	Name string // a MAC (aa:bb:cc:dd:ee:ff) or a user name
}

func (o Owner) String() string { return o.Kind + " " + o.Name }

// Spec says which disk a boot needs.
type Spec struct {
	Owner   Owner
	Profile string
	Kind    string // state.DiskUpper or state.DiskCow
	Size    int64  // upper: bytes (default DefaultUpperSize)
	Base    string // cow: the raw disk image (absolute path)
	Quota   state.Quota
}

// Export is a disk exported as a target: what a machine needs to log in.
type Export struct {
	Disk      state.Disk
	Target    string // target IQN
	Initiator string // the only initiator allowed
	Creds     Credentials
	// Portal is the iSCSI portal (host:port) of the disk's home when
	// that is another server, which exports it when the machine logs in
	// there; "" when the disk lives here.
	Portal string
}

// InitiatorIQN is the initiator name a machine uses.
func InitiatorIQN(mac string) string {
	return IQNPrefix + "i-" + strings.ReplaceAll(mac, ":", "")
}

// TargetIQN names a disk's target: whose it is and its row, so no two
// disks share a name.
func TargetIQN(k state.Disk) string {
	who := "u-" + k.Owner
	if k.OwnerKind == state.OwnerMachine {
		who = "m-" + strings.ReplaceAll(k.Owner, ":", "")
	}
	return fmt.Sprintf("%s%s-d%d", IQNPrefix, who, k.ID)
}

// CHAPUser is the CHAP name an owner logs in with.
func CHAPUser(o Owner) string {
	if o.Kind == state.OwnerMachine {
		return strings.ReplaceAll(o.Name, ":", "-")
	}
	return "u-" + o.Name
}

// NewSecret is a random CHAP secret: 24 characters, 144 bits.
func NewSecret() (target.Secret, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return target.Secret(base64.RawURLEncoding.EncodeToString(b)), nil
}

// Manager keeps disk files, rows and targets in step.
type Manager struct {
	db     *state.DB
	target *target.Target
	dir    string // DATA/disks
	home   string // this server's name: the home of the disks it makes
	log    *slog.Logger
	// base gives a copy-on-write disk's base image from its profile ("" when
	// the profile no longer sanboots); see SetBase.
	base atomic.Pointer[func(profile string) string]
	// peers carries disk copies to other servers (Move).
	peers *http.Client

	mu   sync.Mutex // guards luns and owners, and serialises exports
	luns map[int64]target.Backing
	// owners serialises the changes to one owner's disks (create, reset,
	// remove): different owners' disks are made at once (200 machines'
	// first boots used to queue behind one mkfs.ext4 at a time). One
	// small mutex per owner seen, never dropped.
	owners map[Owner]*sync.Mutex
}

// lockOwner takes o's lock and returns its unlock.
func (m *Manager) lockOwner(o Owner) func() {
	m.mu.Lock()
	l := m.owners[o]
	if l == nil {
		l = &sync.Mutex{}
		m.owners[o] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// New returns a manager of the disks under dir, on the server named home
// (the home of the disks it makes): it exports them on t, also when a
// machine that booted through another server logs in (see onLogin).
func New(db *state.DB, t *target.Target, dir, home string, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if home == "" {
		return nil, errors.New("disks: the server's name is needed (the home of its disks)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	if err := claimDir(dir, home); err != nil {
		return nil, err
	}
	m := &Manager{db: db, target: t, dir: dir, home: home, log: log, luns: map[int64]target.Backing{}, owners: map[Owner]*sync.Mutex{},
		peers: &http.Client{Transport: &http.Transport{Proxy: nil, ResponseHeaderTimeout: 10 * time.Minute}}}
	t.SetLoginHook(m.onLogin)
	return m, nil
}

// Home is the name of the server whose disks these are.
func (m *Manager) Home() string { return m.home }

// SetBase sets how a copy-on-write disk's base image is found from its
// profile, for exports at a machine's login (the configuration's
// sanboot; "" when the profile no longer sanboots).
func (m *Manager) SetBase(base func(profile string) string) { m.base.Store(&base) }

func (m *Manager) baseOf(profile string) string {
	if b := m.base.Load(); b != nil {
		return (*b)(profile)
	}
	return ""
}

// Target is the iSCSI target the disks are exported from.
func (m *Manager) Target() *target.Target { return m.target }

func (m *Manager) diskDir(id int64) string { return filepath.Join(m.dir, fmt.Sprint(id)) }

func fileName(kind string) string {
	if kind == state.DiskCow {
		return "cow.delta"
	}
	return "upper.img"
}

// Credentials are a disk's CHAP secrets both ways: the initiator's
// (the machine proves itself to the target) and the target's (the
// target proves itself to the machine: mutual CHAP, so whoever takes the
// portal's address cannot pose as the disk).
type Credentials struct {
	Initiator target.CHAP
	Target    target.CHAP
}

// TargetCHAPUser is the name a disk's target answers to in mutual CHAP.
func TargetCHAPUser(o Owner) string { return "t-" + CHAPUser(o) }

// newCredentials makes a random pair for o, the two secrets different.
func newCredentials(o Owner) (Credentials, error) {
	c := Credentials{Initiator: target.CHAP{User: CHAPUser(o)}, Target: target.CHAP{User: TargetCHAPUser(o)}}
	for c.Initiator.Secret == c.Target.Secret {
		var err error
		if c.Initiator.Secret, err = NewSecret(); err != nil {
			return Credentials{}, err
		}
		if c.Target.Secret, err = NewSecret(); err != nil {
			return Credentials{}, err
		}
	}
	return c, nil
}

// MachineCredentials returns the credentials of mac's disks of profile,
// making them on first use. They belong to the machine's admission to
// that profile (state.Admission): what one profile handed out opens no
// disk of another. The admission must exist.
func (m *Manager) MachineCredentials(ctx context.Context, mac, profile string) (Credentials, error) {
	a, err := m.db.Admission(ctx, mac, profile)
	if err != nil {
		return Credentials{}, err
	}
	o := Owner{state.OwnerMachine, mac}
	if a.Secret != "" && a.TargetSecret != "" && a.Secret != a.TargetSecret {
		return Credentials{Initiator: target.CHAP{User: CHAPUser(o), Secret: target.Secret(a.Secret)}, Target: target.CHAP{User: TargetCHAPUser(o), Secret: target.Secret(a.TargetSecret)}}, nil
	}
	c, err := newCredentials(o)
	if err != nil {
		return Credentials{}, err
	}
	if a.Secret != "" && a.Secret != string(c.Target.Secret) {
		// An admission of an older version has only the initiator's
		// secret, which its running machine still uses: keep it.
		c.Initiator.Secret = target.Secret(a.Secret)
	}
	if err := m.db.SetAdmissionSecret(ctx, mac, profile, string(c.Initiator.Secret), string(c.Target.Secret)); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// RotateMachine forgets the CHAP secrets of a machine's disks and ends
// their sessions: the old secrets no longer open anything, and each disk
// gets a new secret at its next boot (in that boot's document). It
// returns how many secrets it forgot.
func (m *Manager) RotateMachine(ctx context.Context, mac string) (int64, error) {
	n, err := m.db.ClearSecrets(ctx, mac)
	if err != nil {
		return 0, err
	}
	m.Drop(ctx, Owner{state.OwnerMachine, mac})
	return n, nil
}

// NewUserCredentials gives a user new credentials (at every login).
func (m *Manager) NewUserCredentials(ctx context.Context, user string) (Credentials, error) {
	c, err := newCredentials(Owner{state.OwnerUser, user})
	if err != nil {
		return Credentials{}, err
	}
	if err := m.db.SetUserSecret(ctx, user, string(c.Initiator.Secret), string(c.Target.Secret)); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// Ensure creates the disk sp names when it does not exist yet (within the
// quota; past it nothing is created and the error wraps state.ErrQuota)
// and exports it with creds (mutual CHAP) to initiator only. An export
// that already has these credentials and initiator is kept (its session
// lives on); otherwise the target is replaced, which ends its sessions:
// one machine at a time per disk.
//
// A disk made here has this server as its home. A disk whose home is
// another server is not exported here: Ensure records the initiator it
// is for (the home exports it when the machine logs in there, see
// onLogin) and returns the home's portal in Export.Portal. A home that is
// down or unknown is an error wrapping ErrHomeDown, a disk on its way to
// another server one wrapping ErrMoving: never a new empty disk.
func (m *Manager) Ensure(ctx context.Context, sp Spec, creds Credentials, initiator string) (Export, error) {
	// A moving disk's boot fails now, not after its copy (the move
	// holds the owner's lock).
	if k, err := m.db.Disk(ctx, sp.Owner.Kind, sp.Owner.Name, sp.Profile); err == nil && k.Status == state.DiskMoving {
		return Export{}, movingError(k)
	}
	defer m.lockOwner(sp.Owner)()
	k, err := m.db.Disk(ctx, sp.Owner.Kind, sp.Owner.Name, sp.Profile)
	if errors.Is(err, state.ErrNotFound) {
		k, err = m.create(ctx, sp)
		if errors.Is(err, state.ErrExists) {
			// Another server made it at the same moment: that one is
			// the disk.
			k, err = m.db.Disk(ctx, sp.Owner.Kind, sp.Owner.Name, sp.Profile)
		}
	}
	switch {
	case err != nil:
		return Export{}, err
	case k.Status == state.DiskMoving:
		return Export{}, movingError(k)
	case k.Status != state.DiskReady:
		return Export{}, fmt.Errorf("%s's disk %d is %s: try again shortly", sp.Owner, k.ID, k.Status)
	case k.Kind != sp.Kind:
		return Export{}, fmt.Errorf("%s's disk %d for profile %s is a %s disk, the profile now wants %s: reset it", sp.Owner, k.ID, sp.Profile, k.Kind, sp.Kind)
	}
	if k.Home != m.home {
		// Its home checks a copy-on-write layer's base when it exports.
		return m.elsewhere(ctx, k, creds, initiator)
	}
	if k.Kind == state.DiskCow {
		stamp, err := baseStamp(sp.Base)
		if err != nil {
			return Export{}, err
		}
		if stamp != k.Base {
			return Export{}, fmt.Errorf("%s: its copy-on-write layer was made over %q, now %q: %w; a reset starts it over from the image", sp.Owner, k.Base, stamp, ErrBaseChanged)
		}
	}
	ex := Export{Disk: k, Target: TargetIQN(k), Initiator: initiator, Creds: creds}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Still here and ready under m.mu: a move begun meanwhile (it takes
	// m.mu to withdraw the target) must not find the disk exported again.
	if cur, err := m.db.DiskByID(ctx, k.ID); err != nil {
		return Export{}, err
	} else if cur.Status == state.DiskMoving {
		return Export{}, movingError(cur)
	} else if cur.Status != state.DiskReady || cur.Home != m.home {
		return Export{}, fmt.Errorf("%s's disk %d changed (%s at %s): try again shortly", sp.Owner, k.ID, cur.Status, cur.Home)
	}
	if _, open := m.luns[k.ID]; open && m.target.HasTarget(ex.Target, creds.Initiator, initiator) {
		return ex, nil
	}
	lun := m.luns[k.ID]
	if lun == nil {
		if k.Kind == state.DiskCow {
			lun, err = target.OpenCow(sp.Base, k.Path)
		} else {
			lun, err = target.OpenFile(k.Path, false)
		}
		if err != nil {
			return Export{}, fmt.Errorf("open %s's disk: %w", sp.Owner, err)
		}
	}
	if err := m.export(k, lun, creds, initiator); err != nil {
		if m.luns[k.ID] == nil {
			lun.Close()
		}
		return Export{}, err
	}
	m.luns[k.ID] = lun
	if k.ExportedTo != initiator {
		if err := m.db.SetDiskExport(ctx, k.ID, initiator); err != nil {
			m.log.Warn("disk: cannot record its export: a restarted server will not export it again", "id", k.ID, "err", err)
		}
	}
	return ex, nil
}

// export makes k's target: lun, to initiator only, mutual CHAP with creds.
func (m *Manager) export(k state.Disk, lun target.Backing, creds Credentials, initiator string) error {
	proof := creds.Target
	return m.target.AddTarget(target.TargetConfig{IQN: TargetIQN(k), LUNs: []target.Backing{lun}, CHAP: creds.Initiator, MutualCHAP: &proof, Initiators: []string{initiator}, Exclusive: true})
}

// RefreshSizes records what each open copy-on-write layer takes on disk
// in its row, so max-disk-bytes counts it: a layer counts as the disk
// the machine sees (the base image's size, as when it was made) and more
// when its delta and its log (which grows with every write until it is
// compacted) take more. It returns how many rows it updated.
func (m *Manager) RefreshSizes(ctx context.Context) int {
	type sized interface{ DiskBytes() (int64, error) }
	m.mu.Lock()
	sizes := map[int64]int64{}
	for id, lun := range m.luns {
		if s, ok := lun.(sized); ok {
			// At least the layer's size as the machine sees it (what
			// it counted as when made), more when its log adds to it.
			if n, err := s.DiskBytes(); err == nil {
				sizes[id] = max(n, lun.Size())
			}
		}
	}
	m.mu.Unlock()
	n := 0
	for id, size := range sizes {
		k, err := m.db.DiskByID(ctx, id)
		if err != nil || k.Size == size {
			continue
		}
		if err := m.db.SetDiskSize(ctx, id, size); err != nil {
			m.log.Warn("disk: cannot record its size", "id", id, "err", err)
			continue
		}
		n++
	}
	return n
}

// Stored returns the credentials a disk's owner has in the store (a
// machine's admission to the disk's profile, a user's latest login), if
// both secrets are there.
func (m *Manager) Stored(ctx context.Context, k state.Disk) (Credentials, bool) {
	o := Owner{k.OwnerKind, k.Owner}
	var sec, tsec string
	if k.OwnerKind == state.OwnerUser {
		u, err := m.db.User(ctx, k.Owner)
		if err != nil {
			return Credentials{}, false
		}
		sec, tsec = u.Secret, u.TargetSecret
	} else {
		a, err := m.db.Admission(ctx, k.Owner, k.Profile)
		if err != nil {
			return Credentials{}, false
		}
		sec, tsec = a.Secret, a.TargetSecret
	}
	if sec == "" || tsec == "" || sec == tsec {
		return Credentials{}, false
	}
	return Credentials{Initiator: target.CHAP{User: CHAPUser(o), Secret: target.Secret(sec)}, Target: target.CHAP{User: TargetCHAPUser(o), Secret: target.Secret(tsec)}}, true
}

// Reexport exports again, at start, every ready disk that was exported
// before the server stopped (to the initiator it had, with the
// credentials its owner still holds), so a running machine's keeper logs
// its session in again after a restart instead of finding no target.
// base gives a copy-on-write disk's base image from its profile ("" when
// the profile no longer sanboots: that disk waits for its next boot). It
// returns how many it exported; a disk it cannot export is logged and
// skipped.
func (m *Manager) Reexport(ctx context.Context, base func(profile string) string) int {
	ks, err := m.db.Disks(ctx)
	if err != nil {
		m.log.Error("disks: cannot list them to export them again", "err", err)
		return 0
	}
	n := 0
	for _, k := range ks {
		if k.Status != state.DiskReady || k.ExportedTo == "" || k.Home != m.home {
			continue
		}
		creds, ok := m.Stored(ctx, k)
		if !ok {
			continue
		}
		var lun target.Backing
		switch k.Kind {
		case state.DiskCow:
			b := base(k.Profile)
			if b == "" {
				continue
			}
			if stamp, err := baseStamp(b); err != nil || stamp != k.Base {
				continue
			}
			lun, err = target.OpenCow(b, k.Path)
		default:
			lun, err = target.OpenFile(k.Path, false)
		}
		if err != nil {
			m.log.Warn("disks: cannot open a disk to export it again", "id", k.ID, "err", err)
			continue
		}
		m.mu.Lock()
		if err := m.export(k, lun, creds, k.ExportedTo); err != nil {
			m.mu.Unlock()
			lun.Close()
			m.log.Warn("disks: cannot export a disk again", "id", k.ID, "err", err)
			continue
		}
		m.luns[k.ID] = lun
		m.mu.Unlock()
		n++
	}
	return n
}

// create makes a new disk: row first (creating), then the file, then the
// row ready. A failure removes both.
func (m *Manager) create(ctx context.Context, sp Spec) (state.Disk, error) {
	k := state.Disk{OwnerKind: sp.Owner.Kind, Owner: sp.Owner.Name, Profile: sp.Profile, Kind: sp.Kind, Size: sp.Size, Home: m.home}
	switch sp.Kind {
	case state.DiskUpper:
		if k.Size == 0 {
			k.Size = DefaultUpperSize
		}
		if k.Size < 0 || k.Size%512 != 0 {
			return state.Disk{}, fmt.Errorf("upper disk size %d: want a positive multiple of 512", k.Size)
		}
	case state.DiskCow:
		fi, err := os.Stat(sp.Base)
		if err != nil {
			return state.Disk{}, err
		}
		k.Size = fi.Size()
		if k.Base, err = baseStamp(sp.Base); err != nil {
			return state.Disk{}, err
		}
	default:
		return state.Disk{}, fmt.Errorf("disk kind %q: want upper or cow", sp.Kind)
	}
	k, err := m.db.BeginDisk(ctx, k, sp.Quota, func(id int64) string { return filepath.Join(m.diskDir(id), fileName(sp.Kind)) })
	if err != nil {
		return state.Disk{}, err
	}
	if err := m.makeFile(k); err != nil {
		os.RemoveAll(m.diskDir(k.ID))
		if rerr := m.db.RemoveDisk(context.WithoutCancel(ctx), k.ID); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return state.Disk{}, err
	}
	if err := m.db.SetDiskStatus(context.WithoutCancel(ctx), k.ID, state.DiskReady); err != nil {
		return state.Disk{}, err
	}
	k.Status = state.DiskReady
	m.log.Info("disk created", "owner", sp.Owner.String(), "profile", sp.Profile, "kind", sp.Kind, "id", k.ID, "bytes", k.Size)
	return k, nil
}

// makeFile creates a disk's file: an upper disk is formatted under a
// temporary name and renamed into place, so its name exists only whole.
func (m *Manager) makeFile(k state.Disk) error {
	dir := filepath.Dir(k.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if k.Kind == state.DiskCow {
		return nil // target.OpenCow creates the delta and its log (0600)
	}
	tmp := k.Path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(k.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// lazy_itable_init keeps the file sparse; the label says whose it is.
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "overboot-upper", "-E", "lazy_itable_init=1,lazy_journal_init=1", tmp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("format an upper disk (mkfs.ext4, package e2fsprogs): %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := durable.Sync(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, k.Path); err != nil {
		return err
	}
	return durable.Sync(dir)
}

// baseStamp identifies a base image's version: path, size and mtime.
func baseStamp(base string) (string, error) {
	fi, err := os.Stat(base)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %d %d", base, fi.Size(), fi.ModTime().UnixNano()), nil
}

// Drop ends the sessions on an owner's disks and closes them; the disks
// stay.
func (m *Manager) Drop(ctx context.Context, o Owner) {
	defer m.lockOwner(o)()
	ks, err := m.db.DisksOf(ctx, o.Kind, o.Name)
	if err != nil {
		m.log.Error("list disks", "owner", o.String(), "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range ks {
		m.dropLocked(k)
	}
}

func (m *Manager) dropLocked(k state.Disk) {
	m.target.RemoveTarget(TargetIQN(k))
	if lun, ok := m.luns[k.ID]; ok {
		lun.Close()
		delete(m.luns, k.ID)
	}
}

// Reset ends the sessions on an owner's disks and removes them (their next
// boot starts blank, or from the base image). It returns how many went.
func (m *Manager) Reset(ctx context.Context, o Owner) (int, error) {
	defer m.lockOwner(o)()
	ks, err := m.db.DisksOf(ctx, o.Kind, o.Name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ks {
		m.mu.Lock()
		m.dropLocked(k)
		m.mu.Unlock()
		if err := m.remove(ctx, k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// RemoveDisk ends the sessions on one disk and removes it.
func (m *Manager) RemoveDisk(ctx context.Context, id int64) error {
	k, err := m.db.DiskByID(ctx, id)
	if err != nil {
		return err
	}
	defer m.lockOwner(Owner{k.OwnerKind, k.Owner})()
	if k, err = m.db.DiskByID(ctx, id); err != nil { // gone meanwhile?
		return err
	}
	m.mu.Lock()
	m.dropLocked(k)
	m.mu.Unlock()
	return m.remove(ctx, k)
}

// remove deletes a disk: row marked deleting, files gone, row gone. A
// disk whose home is another server is only marked deleting here: its
// home ends its sessions and removes its files and row (Sweep). A moving
// disk is refused: its move finishes or is undone first.
func (m *Manager) remove(ctx context.Context, k state.Disk) error {
	ctx = context.WithoutCancel(ctx)
	if k.Status == state.DiskMoving {
		return movingError(k)
	}
	if err := m.db.SetDiskStatus(ctx, k.ID, state.DiskDeleting); err != nil {
		return err
	}
	if k.Home != m.home && k.Home != "" {
		m.log.Info("disk marked for removal by its home server", "owner", k.OwnerKind+" "+k.Owner, "id", k.ID, "home", k.Home)
		return nil
	}
	if err := m.removeFiles(k); err != nil {
		return err
	}
	if err := m.db.RemoveDisk(ctx, k.ID); err != nil {
		return err
	}
	m.log.Info("disk removed", "owner", k.OwnerKind+" "+k.Owner, "id", k.ID)
	return nil
}

// removeFiles deletes a disk's files. A disk in its own directory under
// ours goes with the directory; a legacy disk (imported where it was)
// loses its files only.
func (m *Manager) removeFiles(k state.Disk) error {
	if filepath.Dir(k.Path) == m.diskDir(k.ID) {
		return os.RemoveAll(m.diskDir(k.ID))
	}
	var errs []error
	for _, p := range []string{k.Path, k.Path + ".new", k.Path + ".log", filepath.Join(filepath.Dir(k.Path), "cow.base")} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes every open disk (after the target has stopped).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, lun := range m.luns {
		lun.Close()
		delete(m.luns, id)
	}
}
