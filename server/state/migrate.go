package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations are the schema, one step per version: migrations[i] takes the
// store from version i to i+1. Never edit a step that has shipped; add one.
var migrations = []string{
	// 1: the first schema.
	`CREATE TABLE machines (
		mac         TEXT PRIMARY KEY,
		profile     TEXT NOT NULL DEFAULT '',
		enrolment   TEXT NOT NULL,
		address     TEXT NOT NULL DEFAULT '',
		hostname    TEXT NOT NULL DEFAULT '',
		uuid        TEXT NOT NULL DEFAULT '',
		chap_secret TEXT NOT NULL DEFAULT '',
		created_at  INTEGER NOT NULL,
		seen_at     INTEGER NOT NULL
	);
	CREATE TABLE users (
		name          TEXT PRIMARY KEY,
		password_hash TEXT NOT NULL,
		chap_secret   TEXT NOT NULL DEFAULT '',
		created_at    INTEGER NOT NULL,
		updated_at    INTEGER NOT NULL
	);
	CREATE TABLE disks (
		id         INTEGER PRIMARY KEY,
		owner_kind TEXT NOT NULL,
		owner      TEXT NOT NULL,
		profile    TEXT NOT NULL,
		kind       TEXT NOT NULL,
		path       TEXT NOT NULL,
		size_bytes INTEGER NOT NULL,
		base       TEXT NOT NULL DEFAULT '',
		status     TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		UNIQUE (owner_kind, owner, profile)
	);
	CREATE TABLE boot_tokens (
		hash       TEXT PRIMARY KEY,
		purpose    TEXT NOT NULL,
		mac        TEXT NOT NULL,
		user_name  TEXT NOT NULL DEFAULT '',
		profile    TEXT NOT NULL,
		address    TEXT NOT NULL,
		boot_id    INTEGER NOT NULL DEFAULT 0,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE api_tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL,
		hash       TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		used_at    INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE images (
		name           TEXT NOT NULL,
		version        INTEGER NOT NULL,
		digest         TEXT NOT NULL,
		size_bytes     INTEGER NOT NULL,
		kind           TEXT NOT NULL,
		compression    TEXT NOT NULL DEFAULT '',
		kernel_release TEXT NOT NULL DEFAULT '',
		note           TEXT NOT NULL DEFAULT '',
		published_at   INTEGER NOT NULL,
		PRIMARY KEY (name, version)
	);
	CREATE TABLE boots (
		id         INTEGER PRIMARY KEY,
		mac        TEXT NOT NULL,
		profile    TEXT NOT NULL,
		user_name  TEXT NOT NULL DEFAULT '',
		address    TEXT NOT NULL,
		image      TEXT NOT NULL DEFAULT '',
		started_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		phase      TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		message    TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX boots_by_mac ON boots (mac, id);
	CREATE TABLE boot_events (
		id      INTEGER PRIMARY KEY,
		boot_id INTEGER NOT NULL REFERENCES boots (id) ON DELETE CASCADE,
		at      INTEGER NOT NULL,
		source  TEXT NOT NULL,
		phase   TEXT NOT NULL,
		outcome TEXT NOT NULL,
		seconds REAL NOT NULL DEFAULT 0,
		bytes   INTEGER NOT NULL DEFAULT 0,
		message TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX boot_events_by_boot ON boot_events (boot_id, id);`,
	// 2: each machine's identity: a stable machine-id, and its SSH host
	// keys (JSON) once it has been admitted.
	`ALTER TABLE machines ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE machines ADD COLUMN host_keys TEXT NOT NULL DEFAULT '';`,
	// 3: the leases of overboot's own DHCP server (full mode), kept
	// across restarts.
	`CREATE TABLE leases (
		mac        TEXT PRIMARY KEY,
		ip         TEXT NOT NULL,
		expires_at INTEGER NOT NULL,
		hostname   TEXT NOT NULL DEFAULT ''
	);`,
	// 4: admission belongs to a profile. A machine's admission to one
	// profile (under the policy that granted it) admits it to nothing
	// else, and the secrets handed out under it (the CHAP secret of its
	// disks, its stable host keys) belong to that admission. Requests
	// for approval are kept per address. Admissions of older versions
	// are marked 'legacy' until the server, which knows the profiles'
	// policies, adopts them (DB.AdoptLegacy). Admin tokens get scopes;
	// the older ones could do everything, and keep that.
	`CREATE TABLE admissions (
		mac         TEXT NOT NULL,
		profile     TEXT NOT NULL,
		policy      TEXT NOT NULL,
		address     TEXT NOT NULL DEFAULT '',
		chap_secret TEXT NOT NULL DEFAULT '',
		host_keys   TEXT NOT NULL DEFAULT '',
		granted_at  INTEGER NOT NULL,
		seen_at     INTEGER NOT NULL,
		PRIMARY KEY (mac, profile)
	);
	CREATE INDEX admissions_by_profile ON admissions (profile);
	CREATE TABLE requests (
		mac      TEXT NOT NULL,
		profile  TEXT NOT NULL,
		address  TEXT NOT NULL,
		hostname TEXT NOT NULL DEFAULT '',
		uuid     TEXT NOT NULL DEFAULT '',
		first_at INTEGER NOT NULL,
		seen_at  INTEGER NOT NULL,
		asked    INTEGER NOT NULL DEFAULT 1,
		conflict INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (mac, profile, address)
	);
	CREATE INDEX requests_by_profile ON requests (profile);
	INSERT INTO admissions (mac, profile, policy, address, chap_secret, host_keys, granted_at, seen_at)
		SELECT mac, profile, 'legacy', address, chap_secret, host_keys, created_at, seen_at FROM machines WHERE enrolment = 'enrolled';
	INSERT INTO requests (mac, profile, address, hostname, uuid, first_at, seen_at)
		SELECT mac, profile, address, hostname, uuid, created_at, seen_at FROM machines WHERE enrolment = 'pending';
	ALTER TABLE machines DROP COLUMN enrolment;
	ALTER TABLE machines DROP COLUMN chap_secret;
	ALTER TABLE machines DROP COLUMN host_keys;
	ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';`,
	// 5: a disk's target proves itself to its machine (mutual CHAP): the
	// target's secret beside the initiator's, for a machine's admission
	// and a user's latest login.
	// The initiator a disk was last exported to: a restarted server
	// exports it again, so the machine's keeper can log in again.
	`ALTER TABLE admissions ADD COLUMN target_secret TEXT NOT NULL DEFAULT '';
	ALTER TABLE users ADD COLUMN target_secret TEXT NOT NULL DEFAULT '';
	ALTER TABLE disks ADD COLUMN exported_to TEXT NOT NULL DEFAULT '';`,
	// 6: the leases of overboot's DHCPv6 server, one per identity
	// association (the client's DUID, hex, and the IA's IAID), an
	// address in one row at most, kept across restarts. IF NOT EXISTS:
	// tests that take a store back to an older version by hand leave
	// this table in place.
	`CREATE TABLE IF NOT EXISTS leases6 (
		duid       TEXT NOT NULL,
		iaid       INTEGER NOT NULL,
		ip         TEXT NOT NULL UNIQUE,
		expires_at INTEGER NOT NULL,
		mac        TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (duid, iaid)
	);`,
	// 7: the servers sharing this store, each under its own name: how
	// machines reach it (its URLs and iSCSI portal) and its heartbeat.
	// instance is one run of one process: a second process under a name
	// whose heartbeat is fresh is refused. IF NOT EXISTS: as for step 6.
	`CREATE TABLE IF NOT EXISTS servers (
		name         TEXT PRIMARY KEY,
		instance     TEXT NOT NULL,
		urls         TEXT NOT NULL DEFAULT '',
		iscsi_portal TEXT NOT NULL DEFAULT '',
		version      TEXT NOT NULL DEFAULT '',
		started_at   INTEGER NOT NULL,
		heartbeat_at INTEGER NOT NULL,
		stopped_at   INTEGER NOT NULL DEFAULT 0
	);`,
	// 8: boots by the time of their last event, which every server reads
	// each second to show the boots the others record.
	`CREATE INDEX IF NOT EXISTS boots_by_update ON boots (updated_at);`,
	// 9: token buckets every server sharing the store counts in (a
	// user's login attempts): tokens left at at, full again at full_at.
	`CREATE TABLE IF NOT EXISTS rate_buckets (
		key     TEXT PRIMARY KEY,
		tokens  REAL NOT NULL,
		at      INTEGER NOT NULL,
		full_at INTEGER NOT NULL
	);`,
	// 10: a disk has a home, the server whose data directory holds its
	// file ('' for those of a store from before: the server whose data
	// directory holds the file adopts them at start). While it moves to
	// another server: where to, its file's SHA-256 and the SHA-256 of the
	// secret the copy carries.
	`ALTER TABLE disks ADD COLUMN home TEXT NOT NULL DEFAULT '';
	ALTER TABLE disks ADD COLUMN move_to TEXT NOT NULL DEFAULT '';
	ALTER TABLE disks ADD COLUMN move_digest TEXT NOT NULL DEFAULT '';
	ALTER TABLE disks ADD COLUMN move_secret TEXT NOT NULL DEFAULT '';`,
	// 11: an address is in one DHCPv4 lease at most: the store is the
	// arbiter when several servers give addresses from one pool. Of the
	// leases an older version kept on one address (expired ones beside
	// the live one), the latest to expire stays (the greater MAC on a
	// tie).
	`DELETE FROM leases WHERE EXISTS (SELECT 1 FROM leases o WHERE o.ip = leases.ip
		AND (o.expires_at > leases.expires_at OR (o.expires_at = leases.expires_at AND o.mac > leases.mac)));
	CREATE UNIQUE INDEX IF NOT EXISTS leases_by_ip ON leases (ip);`,
	// 12: the boot working sets: the chunks of its root image (and of
	// the image's dm-verity tree) a boot read in its first minute, as
	// its keeper reported them (once per boot), the last few per image.
	`CREATE TABLE IF NOT EXISTS working_sets (
		boot_id      INTEGER NOT NULL PRIMARY KEY,
		image        TEXT NOT NULL,
		chunk_size   INTEGER NOT NULL,
		image_chunks TEXT NOT NULL,
		tree_chunks  TEXT NOT NULL,
		reported_at  INTEGER NOT NULL
	);
	CREATE INDEX IF NOT EXISTS working_sets_by_image ON working_sets (image, reported_at);`,
	// 13: TPM-attested machines (enroll = tpm): what the server served
	// with an attest token (the boot's kernel, initrds and command line),
	// by the token's hash; a machine's TPM enrolment (its pinned EK, the one
	// waiting for approval, the firmware PCRs of its first attested boot,
	// the last other EK refused); and the attestation sessions between a
	// challenge and its evidence (they hold the credential's secret).
	`CREATE TABLE IF NOT EXISTS attest_served (
		hash       TEXT PRIMARY KEY,
		served     TEXT NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE IF NOT EXISTS tpms (
		mac             TEXT PRIMARY KEY,
		ek              TEXT NOT NULL DEFAULT '',
		pending         TEXT NOT NULL DEFAULT '',
		pending_address TEXT NOT NULL DEFAULT '',
		baseline        TEXT NOT NULL DEFAULT '',
		refused         TEXT NOT NULL DEFAULT '',
		refused_address TEXT NOT NULL DEFAULT '',
		refusals        INTEGER NOT NULL DEFAULT 0,
		updated_at      INTEGER NOT NULL
	);
	CREATE TABLE IF NOT EXISTS attest_sessions (
		hash       TEXT PRIMARY KEY,
		mac        TEXT NOT NULL,
		user_name  TEXT NOT NULL DEFAULT '',
		profile    TEXT NOT NULL,
		address    TEXT NOT NULL,
		boot_id    INTEGER NOT NULL DEFAULT 0,
		ek         TEXT NOT NULL,
		ak         TEXT NOT NULL,
		nonce      TEXT NOT NULL,
		secret     TEXT NOT NULL,
		served     TEXT NOT NULL,
		expires_at INTEGER NOT NULL
	);`,
	// 14: where an image version came from when it was imported (overboot
	// image import, mkimage root --from): the source reference, and the
	// digest of the image manifest it resolved to.
	`ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN source_digest TEXT NOT NULL DEFAULT '';`,
	// 15: a root image's own kernel (overboot mkimage root, image import
	// from a tree with /boot/vmlinuz-* and /lib/modules/*): the digests of
	// the kernel, the initramfs made from its modules, and the modules
	// tree, for profiles with kernel = image.
	`ALTER TABLE images ADD COLUMN own_kernel TEXT NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN own_initramfs TEXT NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN own_modules TEXT NOT NULL DEFAULT '';`,
	// 16: the operator console's sessions, by the hash of their cookie,
	// each with the admin token it was signed in with (gone with it), so
	// every server sharing the store knows them and they outlive a
	// restart; and boots by their start, for the console's boots of the
	// last hour (their switch_root events are found by
	// boot_events_by_boot).
	`CREATE TABLE IF NOT EXISTS console_sessions (
		hash       TEXT PRIMARY KEY,
		token_id   TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		seen_at    INTEGER NOT NULL
	);
	CREATE INDEX IF NOT EXISTS console_sessions_by_token ON console_sessions (token_id);
	CREATE INDEX IF NOT EXISTS boots_by_start ON boots (started_at);`,
}

// SchemaVersion is the version Open brings a store to.
var SchemaVersion = len(migrations)

// createVersion makes the table that holds the schema's version.
const createVersion = `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`

// migrateLock is the key of the PostgreSQL advisory lock under which a
// server migrates the schema (any number, the same in every overboot).
const migrateLock = 0x6f766572626f6f74 // "overboot" in ASCII

func (d *DB) migrate(ctx context.Context) error {
	if d.pg != nil {
		// Servers that start together take turns: the first applies
		// the steps, the others find them applied. One transaction at
		// READ COMMITTED, so each statement after the lock sees what
		// the server before committed (a serializable snapshot would
		// date from before the lock was granted). PostgreSQL's DDL is
		// transactional: a failed step leaves nothing behind.
		return d.runTx(ctx, nil, func(tx handle) error {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrateLock)); err != nil {
				return fmt.Errorf("schema lock: %w", err)
			}
			if _, err := tx.ExecContext(ctx, pgSchema(createVersion)); err != nil {
				return fmt.Errorf("schema: %w", err)
			}
			return d.migrateSteps(ctx, tx)
		})
	}
	if _, err := d.w.ExecContext(ctx, createVersion); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	return d.tx(ctx, func(tx handle) error { return d.migrateSteps(ctx, tx) })
}

// migrateSteps brings the schema from its version to SchemaVersion.
func (d *DB) migrateSteps(ctx context.Context, tx handle) error {
	var v int
	err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("schema: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this overboot knows (%d): use the newer overboot", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		step := migrations[i]
		if d.pg != nil {
			step = pgSchema(step)
		}
		if _, err := tx.ExecContext(ctx, step); err != nil {
			return fmt.Errorf("schema step %d: %w", i+1, err)
		}
	}
	if v < len(migrations) {
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
			return err
		}
	}
	return nil
}

// checkVersion refuses a store whose schema is not SchemaVersion, without
// changing it.
func (d *DB) checkVersion(ctx context.Context) error {
	var v int
	if err := d.sql.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("no overboot schema here (%v): overboot serve makes it at start", err)
	}
	if v != SchemaVersion {
		return fmt.Errorf("schema version %d, and this overboot knows %d: overboot serve of the newer of the two migrates it", v, SchemaVersion)
	}
	return nil
}
