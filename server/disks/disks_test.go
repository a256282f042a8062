package disks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

func newManager(t *testing.T) (*Manager, *state.DB, string) {
	t.Helper()
	data := t.TempDir()
	db, err := state.Open(filepath.Join(data, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := New(db, target.New(nil), filepath.Join(data, "disks"), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, db, data
}

const mac = "52:54:00:12:34:56"

func TestUpperDiskLifecycle(t *testing.T) {
	m, db, _ := newManager(t)
	ctx := context.Background()
	if _, err := db.Enter(ctx, state.Machine{MAC: mac, Profile: "lab"}, "open-insecure", state.Quota{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.MachineCredentials(ctx, mac, "kiosk"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("credentials for a profile the machine is not admitted to: %v", err)
	}
	creds, err := m.MachineCredentials(ctx, mac, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.MachineCredentials(ctx, mac, "lab"); again != creds {
		t.Errorf("a second call made a new secret")
	}
	chap := creds.Initiator
	if creds.Target.Secret == chap.Secret || len(creds.Target.Secret) < 16 || creds.Target.User != "t-52-54-00-12-34-56" {
		t.Errorf("target credentials: %+v", creds.Target)
	}
	sp := Spec{Owner: Owner{state.OwnerMachine, mac}, Profile: "lab", Kind: state.DiskUpper, Size: 64 << 20}
	ex, err := m.Ensure(ctx, sp, creds, InitiatorIQN(mac))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ex.Target, IQNPrefix+"m-525400123456-d") || ex.Initiator != IQNPrefix+"i-525400123456" {
		t.Errorf("names: %s %s", ex.Target, ex.Initiator)
	}
	fi, err := os.Stat(ex.Disk.Path)
	if err != nil || fi.Size() != 64<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("disk file: %v %v", fi, err)
	}
	if di, _ := os.Stat(filepath.Dir(ex.Disk.Path)); di.Mode().Perm() != 0o700 {
		t.Errorf("disk dir mode %v", di.Mode().Perm())
	}
	if !m.target.HasTarget(ex.Target, chap, InitiatorIQN(mac)) {
		t.Errorf("not exported")
	}
	// The same boot again keeps the disk.
	ex2, err := m.Ensure(ctx, sp, creds, InitiatorIQN(mac))
	if err != nil || ex2.Disk.ID != ex.Disk.ID {
		t.Fatalf("second ensure: %+v %v", ex2, err)
	}
	// Rotation: a new secret, the old export gone.
	if n, err := m.RotateMachine(ctx, mac); err != nil || n != 1 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	if c2, _ := m.MachineCredentials(ctx, mac, "lab"); c2.Initiator.Secret == chap.Secret || c2.Target.Secret == creds.Target.Secret {
		t.Fatalf("rotate kept the secret")
	}
	if m.target.HasTarget(ex.Target, chap, InitiatorIQN(mac)) {
		t.Errorf("the old secret still opens the disk")
	}
	n, err := m.Reset(ctx, sp.Owner)
	if err != nil || n != 1 {
		t.Fatalf("reset: %d %v", n, err)
	}
	if _, err := os.Stat(ex.Disk.Path); !os.IsNotExist(err) {
		t.Errorf("reset kept the file")
	}
	if _, err := db.Disk(ctx, state.OwnerMachine, mac, "lab"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("reset kept the row: %v", err)
	}
}

func TestQuotaCreatesNothing(t *testing.T) {
	m, db, data := newManager(t)
	ctx := context.Background()
	q := state.Quota{Disks: 1}
	chap := Credentials{Initiator: target.CHAP{User: "u-a", Secret: "0123456789abcdef"}, Target: target.CHAP{User: "t-u-a", Secret: "fedcba9876543210"}}
	if _, err := m.Ensure(ctx, Spec{Owner: Owner{state.OwnerUser, "alice"}, Profile: "lab", Kind: state.DiskUpper, Size: 1 << 20, Quota: q}, chap, "iqn.2026-11.org.overboot:i-1"); err != nil {
		t.Fatal(err)
	}
	_, err := m.Ensure(ctx, Spec{Owner: Owner{state.OwnerUser, "bob"}, Profile: "lab", Kind: state.DiskUpper, Size: 1 << 20, Quota: q}, chap, "iqn.2026-11.org.overboot:i-2")
	if !errors.Is(err, state.ErrQuota) {
		t.Fatalf("past the quota: %v", err)
	}
	ks, _ := db.Disks(ctx)
	ents, _ := os.ReadDir(filepath.Join(data, "disks"))
	if len(ks) != 1 || len(ents) != 1 {
		t.Errorf("after a refusal: %d rows, %d directories", len(ks), len(ents))
	}
}

func TestCowBaseChanged(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	base := filepath.Join(t.TempDir(), "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	chap := Credentials{Initiator: target.CHAP{User: "u-a", Secret: "0123456789abcdef"}, Target: target.CHAP{User: "t-u-a", Secret: "fedcba9876543210"}}
	sp := Spec{Owner: Owner{state.OwnerUser, "alice"}, Profile: "classroom", Kind: state.DiskCow, Base: base}
	ex, err := m.Ensure(ctx, sp, chap, "iqn.2026-11.org.overboot:i-1")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ex.Disk.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("delta: %v %v", fi, err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(base, later, later)
	if _, err := m.Ensure(ctx, sp, chap, "iqn.2026-11.org.overboot:i-1"); !errors.Is(err, ErrBaseChanged) {
		t.Fatalf("changed base: %v", err)
	}
	m.Reset(ctx, sp.Owner)
	if _, err := m.Ensure(ctx, sp, chap, "iqn.2026-11.org.overboot:i-1"); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}

// TestRecover: rows left creating or deleting by a crash are finished, a
// directory no row names is moved aside, ready disks stay.
func TestRecover(t *testing.T) {
	m, db, data := newManager(t)
	ctx := context.Background()
	chap := Credentials{Initiator: target.CHAP{User: "u-a", Secret: "0123456789abcdef"}, Target: target.CHAP{User: "t-u-a", Secret: "fedcba9876543210"}}
	keep, err := m.Ensure(ctx, Spec{Owner: Owner{state.OwnerUser, "alice"}, Profile: "lab", Kind: state.DiskUpper, Size: 1 << 20}, chap, "iqn.2026-11.org.overboot:i-1")
	if err != nil {
		t.Fatal(err)
	}
	// A crash mid-creation: the row says creating, a partial file exists.
	half, err := db.BeginDisk(ctx, state.Disk{OwnerKind: state.OwnerUser, Owner: "bob", Profile: "lab", Kind: state.DiskUpper, Size: 1 << 20}, state.Quota{}, func(id int64) string { return filepath.Join(m.diskDir(id), "upper.img") })
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(half.Path), 0o700)
	os.WriteFile(half.Path+".new", []byte("partial"), 0o600)
	os.MkdirAll(filepath.Join(data, "disks", "999"), 0o700)
	m.Close()
	if err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DiskByID(ctx, half.ID); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("half-made disk row kept: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(half.Path)); !os.IsNotExist(err) {
		t.Errorf("half-made disk files kept")
	}
	if _, err := os.Stat(keep.Disk.Path); err != nil {
		t.Errorf("a ready disk was touched: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "disks", "orphans", "999")); err != nil {
		t.Errorf("orphan not moved aside: %v", err)
	}
}

func TestMigrateLegacy(t *testing.T) {
	m, db, data := newManager(t)
	ctx := context.Background()
	legacy := filepath.Join(data, "machines")
	dir := filepath.Join(legacy, "52-54-00-12-34-56")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("legacysecret0123456789\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "upper.img"), make([]byte, 4096), 0o600)
	os.MkdirAll(filepath.Join(legacy, "not-a-mac"), 0o700)
	n, err := m.MigrateLegacy(ctx, legacy, func(string) string { return "workstation" })
	if err != nil || n != 1 {
		t.Fatalf("migrate: %d %v", n, err)
	}
	mc, err := db.Machine(ctx, mac)
	if err != nil || mc.Profile != "workstation" {
		t.Fatalf("machine: %+v %v", mc, err)
	}
	if a, err := db.Admission(ctx, mac, "workstation"); err != nil || a.Secret != "legacysecret0123456789" || a.Policy != "legacy" {
		t.Fatalf("admission: %+v %v", a, err)
	}
	k, err := db.Disk(ctx, state.OwnerMachine, mac, "workstation")
	if err != nil || k.Path != filepath.Join(dir, "upper.img") || k.Status != state.DiskReady {
		t.Fatalf("disk: %+v %v", k, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret")); !os.IsNotExist(err) {
		t.Errorf("the secret file outlived its import")
	}
	if n, err := m.MigrateLegacy(ctx, legacy, func(string) string { return "workstation" }); err != nil || n != 0 {
		t.Errorf("second run: %d %v", n, err)
	}
	// Reset removes the legacy disk's files but not its directory's other content.
	if _, err := m.Reset(ctx, Owner{state.OwnerMachine, mac}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "upper.img")); !os.IsNotExist(err) {
		t.Errorf("reset kept the legacy disk")
	}
}

// TestCowSizeCounted: a copy-on-write layer counts as the disk the
// machine sees, and more when its delta and its log (a record per write)
// take more; RefreshSizes records that in its row, and the profile's
// max-disk-bytes then counts it: the next disk past it is refused.
func TestCowSizeCounted(t *testing.T) {
	m, db, _ := newManager(t)
	ctx := context.Background()
	base := filepath.Join(t.TempDir(), "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	chap := Credentials{Initiator: target.CHAP{User: "u-a", Secret: "0123456789abcdef"}, Target: target.CHAP{User: "t-u-a", Secret: "fedcba9876543210"}}
	q := state.Quota{DiskBytes: 2<<20 + 16<<10}
	sp := Spec{Owner: Owner{state.OwnerUser, "alice"}, Profile: "classroom", Kind: state.DiskCow, Base: base, Quota: q}
	ex, err := m.Ensure(ctx, sp, chap, "iqn.2026-11.org.overboot:i-1")
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	lun := m.luns[ex.Disk.ID]
	m.mu.Unlock()
	for off := int64(0); off < 1<<20; off += 512 { // every block, one record each
		if _, err := lun.WriteAt(make([]byte, 512), off); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.RefreshSizes(ctx); n != 1 {
		t.Fatalf("refreshed %d rows, want 1", n)
	}
	k, _ := db.DiskByID(ctx, ex.Disk.ID)
	if k.Size <= 1<<20 {
		t.Errorf("the layer's row says %d bytes: its log is not counted", k.Size)
	}
	sp2 := Spec{Owner: Owner{state.OwnerUser, "bob"}, Profile: "classroom", Kind: state.DiskCow, Base: base, Quota: q}
	if _, err := m.Ensure(ctx, sp2, chap, "iqn.2026-11.org.overboot:i-2"); !errors.Is(err, state.ErrQuota) {
		t.Errorf("a disk past max-disk-bytes, counting the first layer's log: %v", err)
	}
}

// TestRenamedServerRefused: the data directory remembers its server's
// name; a server under another name is refused (it would take its own
// disks for copies of disks living elsewhere), naming both.
func TestRenamedServerRefused(t *testing.T) {
	m, db, data := newManager(t)
	if _, err := New(db, m.Target(), filepath.Join(data, "disks"), "test", nil); err != nil {
		t.Fatalf("the same name again: %v", err)
	}
	_, err := New(db, m.Target(), filepath.Join(data, "disks"), "renamed", nil)
	if err == nil || !strings.Contains(err.Error(), `server "test"`) || !strings.Contains(err.Error(), `named "renamed"`) {
		t.Fatalf("another name: %v", err)
	}
}
