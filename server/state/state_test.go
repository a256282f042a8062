package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// eachStore runs fn as two subtests: on a new SQLite store and on a new
// PostgreSQL store (a database of its own in the test binary's private
// cluster, internal/pgtest).
func eachStore(t *testing.T, fn func(t *testing.T, d *DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, openSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgres(t)) })
}

func openSQLite(t *testing.T) *DB {
	t.Helper()
	d, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func openPostgres(t *testing.T) *DB {
	t.Helper()
	d, err := OpenPostgres(context.Background(), pgtest.Database(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// reopen opens the store d is, once more: another handle on it, as
// another process or server would have (closed when the test ends).
func reopen(t *testing.T, d *DB) (*DB, error) {
	t.Helper()
	var o *DB
	var err error
	if d.pg != nil {
		o, err = OpenPostgres(context.Background(), d.pg.conn, d.pg.password)
	} else {
		o, err = Open(d.path)
	}
	if err == nil {
		t.Cleanup(func() { o.Close() })
	}
	return o, err
}

// TestSQLitePermissions: the store's file and its WAL files are 0600.
func TestSQLitePermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.AddUser(context.Background(), "alice", "h"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

// TestReopenSchema: reopening applies no step twice and keeps the data;
// a store of a newer schema is refused, not damaged.
func TestReopenSchema(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		if err := d.AddUser(ctx, "alice", "h"); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d, err := reopen(t, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.User(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := d.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.w.ExecContext(ctx, `UPDATE schema_version SET version = 999`); err != nil {
			t.Fatal(err)
		}
		if _, err := reopen(t, d); err == nil || !strings.Contains(err.Error(), "newer than this overboot knows") {
			t.Fatalf("opened a store of a newer schema: %v", err)
		}
		if err := d.Check(ctx); err == nil {
			t.Error("Check passed a store of schema 999")
		}
	})
}

// TestAdmissions: an admission belongs to its profile and policy;
// requests are kept per address; approval names one; quotas count a
// profile's machines, admitted or asking.
func TestAdmissions(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		const mac = "52:54:00:00:00:01"
		q := Quota{Machines: 2}
		// Open admits itself.
		a, err := d.Enter(ctx, Machine{MAC: mac, Profile: "kiosk", Address: "192.0.2.1", Hostname: "pc1"}, "open", q)
		if err != nil || a.Policy != "open" || a.Profile != "kiosk" {
			t.Fatalf("enter: %+v %v", a, err)
		}
		// ... and to nothing else: the approve profile has no admission.
		if _, err := d.Admission(ctx, mac, "lab"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("admitted to lab by an open profile: %v", err)
		}
		if _, err := d.Enter(ctx, Machine{MAC: mac, Profile: "lab"}, PolicyApprove, q); err == nil {
			t.Fatal("Enter granted an approval")
		}
		// Two requests from two addresses stay two.
		for _, addr := range []string{"192.0.2.1", "192.0.2.66", "192.0.2.66"} {
			if err := d.Ask(ctx, Request{MAC: mac, Profile: "lab", Address: addr, Hostname: "h-" + addr}, q); err != nil {
				t.Fatal(err)
			}
		}
		rs, err := d.Requests(ctx, mac)
		if err != nil || len(rs) != 2 {
			t.Fatalf("requests: %+v %v", rs, err)
		}
		if m, _ := d.Machine(ctx, mac); m.Hostname != "pc1" || m.Profile != "kiosk" {
			t.Errorf("a request for approval changed a known machine's row: %+v", m)
		}
		if _, err := d.Approve(ctx, mac, "lab", "192.0.2.99", q); !errors.Is(err, ErrNotFound) {
			t.Errorf("approved an address that never asked: %v", err)
		}
		a, err = d.Approve(ctx, mac, "lab", "192.0.2.1", q)
		if err != nil || a.Policy != PolicyApprove || a.Address != "192.0.2.1" {
			t.Fatalf("approve: %+v %v", a, err)
		}
		if rs, _ := d.Requests(ctx, mac); len(rs) != 0 {
			t.Errorf("requests left after approval: %+v", rs)
		}
		// Secrets belong to the admission and approval clears them.
		if err := d.SetAdmissionSecret(ctx, mac, "lab", "s1", "t1"); err != nil {
			t.Fatal(err)
		}
		if k, err := d.SetHostKeys(ctx, mac, "lab", "k1"); err != nil || k != "k1" {
			t.Fatal(k, err)
		}
		if k, _ := d.SetHostKeys(ctx, mac, "lab", "k2"); k != "k1" {
			t.Errorf("host keys replaced: %s", k)
		}
		if a, _ := d.Admission(ctx, mac, "kiosk"); a.Secret != "" || a.HostKeys != "" {
			t.Errorf("another profile's admission has the secrets: %+v", a)
		}
		d.Ask(ctx, Request{MAC: mac, Profile: "lab", Address: "192.0.2.7", Conflict: true}, q)
		a, _ = d.Approve(ctx, mac, "lab", "192.0.2.7", q)
		if a.Secret != "" || a.TargetSecret != "" || a.HostKeys != "" || a.Address != "192.0.2.7" {
			t.Errorf("re-approval kept the old secrets: %+v", a)
		}
		// A change of policy ends an admission: open, then open-insecure.
		d.SetAdmissionSecret(ctx, mac, "kiosk", "s-open", "t-open")
		a, err = d.Enter(ctx, Machine{MAC: mac, Profile: "kiosk"}, "open-insecure", q)
		if err != nil || a.Policy != "open-insecure" || a.Secret != "" {
			t.Errorf("policy change: %+v %v", a, err)
		}
		// Quotas: kiosk holds one machine of 2, lab one.
		if _, err := d.Enter(ctx, Machine{MAC: "52:54:00:00:00:02", Profile: "kiosk"}, "open-insecure", q); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Enter(ctx, Machine{MAC: "52:54:00:00:00:03", Profile: "kiosk"}, "open-insecure", q); !errors.Is(err, ErrQuota) {
			t.Errorf("third machine past a quota of 2: %v", err)
		}
		if err := d.Ask(ctx, Request{MAC: "52:54:00:00:00:04", Profile: "kiosk", Address: "192.0.2.4"}, q); !errors.Is(err, ErrQuota) {
			t.Errorf("a request past the quota: %v", err)
		}
		if _, err := d.Machine(ctx, "52:54:00:00:00:03"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused machine was recorded: %v", err)
		}
		// A machine already counted in the profile passes its quota.
		if _, err := d.Enter(ctx, Machine{MAC: mac, Profile: "kiosk"}, "open-insecure", q); err != nil {
			t.Errorf("known machine refused: %v", err)
		}
		// Approval counts admitted machines against the quota.
		d.Ask(ctx, Request{MAC: "52:54:00:00:00:05", Profile: "lab", Address: "192.0.2.5"}, Quota{})
		if _, err := d.Approve(ctx, "52:54:00:00:00:05", "lab", "192.0.2.5", Quota{Machines: 1}); !errors.Is(err, ErrQuota) {
			t.Errorf("approval past the quota: %v", err)
		}
	})
}

// TestRequestsBounded: one machine keeps at most MaxRequestAddresses
// requests per profile, the least recently seen going first.
func TestRequestsBounded(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0)
		d.SetClock(func() time.Time { return now })
		for i := range MaxRequestAddresses + 5 {
			now = now.Add(time.Second)
			if err := d.Ask(ctx, Request{MAC: "52:54:00:00:00:01", Profile: "lab", Address: fmt.Sprintf("198.51.100.%d", i)}, Quota{}); err != nil {
				t.Fatal(err)
			}
		}
		rs, _ := d.Requests(ctx, "52:54:00:00:00:01")
		if len(rs) != MaxRequestAddresses || rs[0].Address != fmt.Sprintf("198.51.100.%d", MaxRequestAddresses+4) {
			t.Errorf("%d requests, newest %+v", len(rs), rs[0])
		}
	})
}

// TestPrune: requests not repeated and open admissions not used are
// forgotten, then machines left with nothing; approvals and machines
// with disks stay.
func TestPrune(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		old := time.Unix(1_800_000_000, 0)
		d.SetClock(func() time.Time { return old })
		d.Enter(ctx, Machine{MAC: "02:00:00:00:00:01", Profile: "kiosk"}, "open", Quota{})
		d.Enter(ctx, Machine{MAC: "02:00:00:00:00:02", Profile: "lab"}, "open-insecure", Quota{})
		d.AddDisk(ctx, Disk{OwnerKind: OwnerMachine, Owner: "02:00:00:00:00:02", Profile: "lab", Kind: DiskUpper, Path: "/x", Size: 1, Status: DiskReady})
		d.Ask(ctx, Request{MAC: "02:00:00:00:00:03", Profile: "lab", Address: "192.0.2.3"}, Quota{})
		d.Ask(ctx, Request{MAC: "02:00:00:00:00:04", Profile: "lab", Address: "192.0.2.4"}, Quota{})
		d.Approve(ctx, "02:00:00:00:00:04", "lab", "192.0.2.4", Quota{})
		d.StartBoot(ctx, Boot{MAC: "02:00:00:00:00:01", Profile: "kiosk"}, BootEvent{Phase: "script", Outcome: "ok"})
		d.StartBoot(ctx, Boot{MAC: "02:00:00:00:00:04", Profile: "lab"}, BootEvent{Phase: "script", Outcome: "ok"})
		d.SetClock(time.Now)
		p, err := d.Prune(ctx, Forget{RequestsSeenBefore: old.Add(time.Hour), AdmissionsSeenBefore: old.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if p != (Pruned{Requests: 1, Admissions: 1, Machines: 2, Boots: 1}) {
			t.Errorf("pruned %+v", p)
		}
		ms, _ := d.Machines(ctx)
		if len(ms) != 2 || ms[0].MAC != "02:00:00:00:00:02" || ms[1].MAC != "02:00:00:00:00:04" {
			t.Errorf("machines left: %+v", ms)
		}
		if bs, _ := d.Boots(ctx, "", 10); len(bs) != 1 || bs[0].MAC != "02:00:00:00:00:04" {
			t.Errorf("boots left: %+v", bs)
		}
	})
}

// TestMigrateAdmissions: a store of schema 3 (one enrolment per machine)
// opens with its enrolled machines admitted ('legacy', until adopted)
// and its pending ones as requests; adoption gives them their profile's
// policy now.
func TestMigrateAdmissions(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		// Back to schema 3 with its machines table, by hand.
		for _, q := range []string{
			`DROP TABLE admissions`, `DROP TABLE requests`, `DROP TABLE machines`,
			`ALTER TABLE api_tokens DROP COLUMN scope`, `ALTER TABLE users DROP COLUMN target_secret`, `ALTER TABLE disks DROP COLUMN exported_to`,
			`ALTER TABLE disks DROP COLUMN home`, `ALTER TABLE disks DROP COLUMN move_to`, `ALTER TABLE disks DROP COLUMN move_digest`, `ALTER TABLE disks DROP COLUMN move_secret`,
			`ALTER TABLE images DROP COLUMN source`, `ALTER TABLE images DROP COLUMN source_digest`,
			`ALTER TABLE images DROP COLUMN own_kernel`, `ALTER TABLE images DROP COLUMN own_initramfs`, `ALTER TABLE images DROP COLUMN own_modules`,
			`CREATE TABLE machines (mac TEXT PRIMARY KEY, profile TEXT NOT NULL DEFAULT '', enrolment TEXT NOT NULL, address TEXT NOT NULL DEFAULT '',
			hostname TEXT NOT NULL DEFAULT '', uuid TEXT NOT NULL DEFAULT '', chap_secret TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,
			seen_at INTEGER NOT NULL, machine_id TEXT NOT NULL DEFAULT '', host_keys TEXT NOT NULL DEFAULT '')`,
			`INSERT INTO machines VALUES ('52:54:00:00:00:01', 'lab', 'enrolled', '192.0.2.1', 'pc1', '', 'sec1', 1, 2, 'id1', 'keys1')`,
			`INSERT INTO machines VALUES ('52:54:00:00:00:02', 'lab', 'pending', '192.0.2.2', 'pc2', '', '', 1, 2, '', '')`,
			`INSERT INTO machines VALUES ('52:54:00:00:00:03', 'gone', 'enrolled', '192.0.2.3', '', '', '', 1, 2, '', '')`,
			`INSERT INTO api_tokens (id, name, hash, created_at) VALUES ('0123456789abcdef', 'old', 'h', 1)`,
			`UPDATE schema_version SET version = 3`,
		} {
			if _, err := d.w.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		d.Close()
		d, err := reopen(t, d)
		if err != nil {
			t.Fatal(err)
		}
		a, err := d.Admission(ctx, "52:54:00:00:00:01", "lab")
		if err != nil || a.Policy != policyLegacy || a.Secret != "sec1" || a.HostKeys != "keys1" || a.Address != "192.0.2.1" {
			t.Fatalf("migrated admission: %+v %v", a, err)
		}
		if rs, _ := d.Requests(ctx, "52:54:00:00:00:02"); len(rs) != 1 || rs[0].Address != "192.0.2.2" || rs[0].Hostname != "pc2" {
			t.Errorf("migrated request: %+v", rs)
		}
		if m, _ := d.Machine(ctx, "52:54:00:00:00:01"); m.MachineID != "id1" || m.Hostname != "pc1" {
			t.Errorf("migrated machine: %+v", m)
		}
		if tok, _ := d.APITokenByID(ctx, "0123456789abcdef"); tok.Scope != "admin" {
			t.Errorf("an older token's scope: %q", tok.Scope)
		}
		n, dropped, err := d.AdoptLegacy(ctx, func(p string) string { return map[string]string{"lab": "approve"}[p] })
		if err != nil || n != 1 || dropped != 1 {
			t.Fatalf("adopt: %d %d %v", n, dropped, err)
		}
		if a, _ := d.Admission(ctx, "52:54:00:00:00:01", "lab"); a.Policy != PolicyApprove {
			t.Errorf("adopted: %+v", a)
		}
		if err := d.Check(ctx); err != nil {
			t.Error(err)
		}
	})
}

func TestBootTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0)
		d.SetClock(func() time.Time { return now })
		tok := BootToken{Purpose: "doc", MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1", Expires: now.Add(time.Minute)}
		if err := d.PutBootToken(ctx, "h1", tok); err != nil {
			t.Fatal(err)
		}
		if _, err := d.TakeBootToken(ctx, "h1", "san", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("wrong purpose: %v", err)
		}
		if _, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.66"); !errors.Is(err, ErrWrongAddress) {
			t.Errorf("wrong address: %v", err)
		}
		got, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.1")
		if err != nil || got.MAC != tok.MAC {
			t.Fatalf("take: %+v %v", got, err)
		}
		if _, err := d.TakeBootToken(ctx, "h1", "doc", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("spent twice: %v", err)
		}
		d.PutBootToken(ctx, "h2", tok)
		now = now.Add(2 * time.Minute)
		if _, err := d.TakeBootToken(ctx, "h2", "doc", "192.0.2.1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired: %v", err)
		}
		// The next issue drops the expired ones (h2).
		tok.Expires = now.Add(time.Minute)
		if err := d.PutBootToken(ctx, "h3", tok); err != nil {
			t.Fatal(err)
		}
		if c, err := d.Counts(ctx); err != nil || c["boot_tokens"] != 1 {
			t.Errorf("tokens kept after the expired were dropped: %d (%v), want 1", c["boot_tokens"], err)
		}
	})
}

func TestDiskQuota(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		q := Quota{Disks: 2, DiskBytes: 3 << 30}
		path := func(id int64) string { return fmt.Sprintf("/d/%d", id) }
		k, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 2 << 30}, q, path)
		if err != nil || k.Status != DiskCreating || k.Path != fmt.Sprintf("/d/%d", k.ID) {
			t.Fatalf("begin: %+v %v", k, err)
		}
		if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 1}, Quota{}, path); !errors.Is(err, ErrExists) {
			t.Errorf("second disk of one owner and profile: %v", err)
		}
		if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "bob", Profile: "lab", Kind: DiskUpper, Size: 2 << 30}, q, path); !errors.Is(err, ErrQuota) {
			t.Errorf("past the bytes quota: %v", err)
		}
		if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "bob", Profile: "lab", Kind: DiskUpper, Size: 1 << 30}, q, path); err != nil {
			t.Errorf("within quota: %v", err)
		}
		if _, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "carol", Profile: "lab", Kind: DiskUpper, Size: 1}, q, path); !errors.Is(err, ErrQuota) {
			t.Errorf("past the count quota: %v", err)
		}
		n, bytes, _ := d.DiskUsage(ctx, "lab")
		if n != 2 || bytes != 3<<30 {
			t.Errorf("usage %d %d", n, bytes)
		}
	})
}

func TestImagesHistory(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		for _, dg := range []string{"sha256:aa", "sha256:bb"} {
			if _, err := d.PublishImage(ctx, Image{Name: "bookworm", Digest: dg, Size: 1, Kind: "root"}); err != nil {
				t.Fatal(err)
			}
		}
		cur, err := d.Image(ctx, "bookworm")
		if err != nil || cur.Version != 2 || cur.Digest != "sha256:bb" {
			t.Fatalf("current: %+v %v", cur, err)
		}
		h, _ := d.ImageHistory(ctx, "bookworm")
		if len(h) != 2 || h[0].Version != 2 || h[1].Version != 1 {
			t.Errorf("history: %+v", h)
		}
		all, _ := d.ImageDigests(ctx)
		if !all["sha256:aa"] || !all["sha256:bb"] {
			t.Errorf("digests: %v", all)
		}
		if _, err := d.Image(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown name: %v", err)
		}
	})
}

func TestImageHistoryKeepsImportSource(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		want := Image{Name: "web", Digest: "sha256:cc", Size: 1, Kind: "root",
			Source: "docker://registry.example/web:1", SourceDigest: "sha256:dd"}
		if _, err := d.PublishImage(ctx, want); err != nil {
			t.Fatal(err)
		}
		if _, err := d.PublishImage(ctx, Image{Name: "web", Digest: "sha256:ee", Size: 1, Kind: "root"}); err != nil {
			t.Fatal(err)
		}
		h, err := d.ImageHistory(ctx, "web")
		if err != nil || len(h) != 2 {
			t.Fatalf("history: %+v %v", h, err)
		}
		if h[1].Source != want.Source || h[1].SourceDigest != want.SourceDigest {
			t.Errorf("imported version: source %q %q, want %q %q", h[1].Source, h[1].SourceDigest, want.Source, want.SourceDigest)
		}
		if h[0].Source != "" || h[0].SourceDigest != "" {
			t.Errorf("a version published from a file has a source: %q %q", h[0].Source, h[0].SourceDigest)
		}
	})
}

func TestBootsKeptAndEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		var last Boot
		for i := 0; i < KeepBoots+5; i++ {
			b, err := d.StartBoot(ctx, Boot{MAC: "52:54:00:00:00:01", Profile: "lab", Address: "192.0.2.1"}, BootEvent{Source: "server", Phase: "script", Outcome: "ok"})
			if err != nil {
				t.Fatal(err)
			}
			last = b
		}
		bs, _ := d.Boots(ctx, "52:54:00:00:00:01", 1000)
		if len(bs) != KeepBoots {
			t.Errorf("kept %d boots, want %d", len(bs), KeepBoots)
		}
		b, err := d.AddBootEvent(ctx, last.ID, BootEvent{Source: "agent", Phase: "lower", Outcome: "failed", Message: "digest mismatch"})
		if err != nil || b.Phase != "lower" || b.Outcome != "failed" {
			t.Fatalf("event: %+v %v", b, err)
		}
		ev, _ := d.BootEvents(ctx, last.ID)
		if len(ev) != 2 || ev[1].Message != "digest mismatch" {
			t.Errorf("events: %+v", ev)
		}
		if _, err := d.AddBootEvent(ctx, 999999, BootEvent{Phase: "x"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("event for no boot: %v", err)
		}
	})
}

// TestConcurrentWriters: many goroutines writing at once all succeed
// (BEGIN IMMEDIATE and busy_timeout serialise them).
func TestConcurrentWriters(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
				if _, err := d.Enter(ctx, Machine{MAC: mac, Profile: "lab"}, "open", Quota{}); err != nil {
					errs <- err
					return
				}
				if _, err := d.StartBoot(ctx, Boot{MAC: mac, Profile: "lab"}, BootEvent{Phase: "script", Outcome: "ok"}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestBackup(t *testing.T) {
	d := openSQLite(t)
	ctx := context.Background()
	d.AddUser(ctx, "alice", "hash")
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := d.Backup(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	if err := d.Backup(ctx, dst); err == nil {
		t.Error("backup overwrote an existing file")
	}
	c, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.User(ctx, "alice"); err != nil {
		t.Errorf("backup lacks the user: %v", err)
	}
}

// TestBackupPostgres: a PostgreSQL store is not copied to a file; the
// refusal names pg_dump and writes nothing.
func TestBackupPostgres(t *testing.T) {
	d := openPostgres(t)
	dst := filepath.Join(t.TempDir(), "copy.db")
	err := d.Backup(context.Background(), dst)
	if err == nil || !strings.Contains(err.Error(), "use pg_dump") {
		t.Fatalf("backup of a PostgreSQL store: %v", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup left %s: %v", dst, err)
	}
}

func TestLeases(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		if _, ok, err := d.Lease(ctx, "52:54:00:00:00:01"); ok || err != nil {
			t.Fatalf("no lease yet: %v %v", ok, err)
		}
		exp := time.UnixMilli(1_800_000_000_000).UTC()
		d.PutLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.100", Expires: exp})
		d.PutLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.101", Expires: exp, Hostname: "pc1"})
		l, ok, err := d.Lease(ctx, "52:54:00:00:00:01")
		if !ok || err != nil || l.IP != "192.0.2.101" || l.Hostname != "pc1" || !l.Expires.Equal(exp) {
			t.Errorf("lease: %+v %v %v", l, ok, err)
		}
		all, _ := d.Leases(ctx)
		if len(all) != 1 {
			t.Errorf("all: %+v", all)
		}
		d.DeleteLease(ctx, "52:54:00:00:00:01")
		if _, ok, _ := d.Lease(ctx, "52:54:00:00:00:01"); ok {
			t.Error("deleted lease kept")
		}
	})
}

// TestImageOwnKernel: a root's own kernel, initramfs and modules are kept
// with its version, and a collection keeps their blobs while a name's
// history refers to them.
func TestImageOwnKernel(t *testing.T) {
	eachStore(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		want := Image{Name: "node", Digest: "sha256:r1", Size: 1, Kind: "root", KernelRelease: "6.1.0-57-cloud-amd64",
			OwnKernel: "sha256:k1", OwnInitramfs: "sha256:i1", OwnModules: "sha256:m1"}
		if _, err := d.PublishImage(ctx, want); err != nil {
			t.Fatal(err)
		}
		if _, err := d.PublishImage(ctx, Image{Name: "node", Digest: "sha256:r2", Size: 1, Kind: "root"}); err != nil {
			t.Fatal(err)
		}
		got, err := d.ImageVersion(ctx, "node", 1)
		if err != nil {
			t.Fatal(err)
		}
		if got.OwnKernel != want.OwnKernel || got.OwnInitramfs != want.OwnInitramfs || got.OwnModules != want.OwnModules || got.KernelRelease != want.KernelRelease {
			t.Errorf("version 1: %+v", got)
		}
		if cur, _ := d.Image(ctx, "node"); cur.OwnKernel != "" {
			t.Errorf("version 2 has no kernel of its own: %+v", cur)
		}
		all, _ := d.ImageDigests(ctx)
		for _, dg := range []string{"sha256:r1", "sha256:r2", "sha256:k1", "sha256:i1", "sha256:m1"} {
			if !all[dg] {
				t.Errorf("digests lack %s: %v", dg, all)
			}
		}
		if all[""] {
			t.Errorf("an empty digest among those to keep")
		}
	})
}
