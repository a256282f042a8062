package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/overboot/overboot/internal/durable"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the store's file inside the server's data directory.
const FileName = "state.db"

// ErrNotFound is wrapped by errors for rows that do not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is wrapped by errors for rows that already exist.
var ErrExists = errors.New("already exists")

// DB is an open store, on SQLite or PostgreSQL.
//
// SQLite: writes go through one connection, so writers queue in Go (in
// order, without limit of time) instead of meeting in SQLite's busy
// handler, which sleeps and retries and let some of 200 machines booting
// at once wait past busy_timeout (SQLITE_BUSY). Reads use a pool: WAL lets
// them run beside the writer.
//
// PostgreSQL: one pool for reads and writes; several servers write at
// once, and tx makes each write transaction serializable (see tx).
type DB struct {
	sql  handle    // readers
	w    handle    // writes: SQLite's one connection; PostgreSQL's pool
	wdb  *sql.DB   // w's, for transactions
	dbs  []*sql.DB // what Close closes
	path string    // SQLite: the file
	pg   *pgStore  // PostgreSQL: where (nil on SQLite)
	now  func() time.Time

	tokensPruned atomic.Int64 // when PutBootToken last deleted the expired tokens (ms)
}

// Open opens (creating, 0600) the SQLite store at path and brings its
// schema up to date.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	// Created here with 0600 so SQLite never makes it with the umask's
	// mode: it gives its -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	// Write transactions take the write lock at BEGIN, so two writers
	// wait for each other instead of failing on the upgrade from reader.
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	// Another process (the CLI's offline commands) may still meet this
	// one in SQLite's busy handler; busy_timeout bounds that wait.
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	d := &DB{sql: handle{q: r}, w: handle{q: w}, wdb: w, dbs: []*sql.DB{r, w}, path: path, now: time.Now}
	if err := d.migrate(context.Background()); err != nil {
		d.Close()
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	for _, sfx := range []string{"-wal", "-shm"} {
		if err := os.Chmod(path+sfx, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.Close()
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	return d, nil
}

// Ping checks that the store answers a query.
func (d *DB) Ping(ctx context.Context) error {
	var one int
	return d.sql.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close closes the store.
func (d *DB) Close() error {
	var errs []error
	for _, db := range d.dbs {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}

// Path is the SQLite store's file ("" on PostgreSQL).
func (d *DB) Path() string { return d.path }

// Postgres reports whether the store is on PostgreSQL.
func (d *DB) Postgres() bool { return d.pg != nil }

// String names the store for messages: the SQLite file, or the
// PostgreSQL URL without its password.
func (d *DB) String() string {
	if d.pg != nil {
		return d.pg.redacted
	}
	return d.path
}

// SetClock replaces the clock (tests).
func (d *DB) SetClock(now func() time.Time) { d.now = now }

func (d *DB) millis() int64 { return d.now().UnixMilli() }

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// maxAttempts bounds how many times tx runs a transaction PostgreSQL
// aborted to keep it serializable.
const maxAttempts = 30

// tx runs fn in one write transaction: all of it or none.
//
// SQLite has one writer at a time (the one connection, BEGIN IMMEDIATE):
// a read-modify-write in fn meets no other writer. On PostgreSQL several
// servers write at once: fn runs at SERIALIZABLE, so what it reads is
// still true when it commits, and a transaction PostgreSQL aborts to keep
// that so (serialization failure 40001, deadlock 40P01) runs again, up to
// maxAttempts times in all, after a short random pause. fn must therefore
// set what it hands out afresh each time it runs. (A single statement
// outside tx is atomic on its own on both backends.)
func (d *DB) tx(ctx context.Context, fn func(handle) error) error {
	return d.txAt(ctx, sql.LevelSerializable, fn)
}

// txAt is tx at another isolation level on PostgreSQL (SQLite's one
// writer needs none): READ COMMITTED for a transaction that takes its
// locks itself (WriteLeases's advisory locks), where only a deadlock
// (40P01) or what fn marks (errRetryTx) runs it again.
func (d *DB) txAt(ctx context.Context, iso sql.IsolationLevel, fn func(handle) error) error {
	if d.pg == nil {
		return d.runTx(ctx, nil, fn)
	}
	for attempt := 1; ; attempt++ {
		err := d.runTx(ctx, &sql.TxOptions{Isolation: iso}, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			if err != nil && retryable(err) {
				err = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return err
		}
		// Up to 1 ms, 2, 4, ... 64 ms, random: the transactions that
		// met should not meet again.
		pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt-1, 6)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

func (d *DB) runTx(ctx context.Context, opts *sql.TxOptions, fn func(handle) error) error {
	tx, err := d.wdb.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(handle{q: tx, pg: d.pg != nil}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Backup writes a consistent copy of the store to dst (0600) while the
// store is in use: SQLite's VACUUM INTO reads one snapshot. The copy is
// written beside dst and renamed, so dst is whole or absent. A PostgreSQL
// store is refused: pg_dump is the tool for it.
func (d *DB) Backup(ctx context.Context, dst string) error {
	if d.pg != nil {
		return fmt.Errorf("backup: the store is in PostgreSQL (%s): use pg_dump (pg_dump -Fc -f FILE DBNAME), which copies it consistently while servers run", d.pg.redacted)
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("backup: %s exists: not overwriting it", dst)
	}
	tmp := dst + ".partial"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	defer os.Remove(tmp)
	if _, err := d.sql.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	if err := durable.Sync(tmp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return durable.Sync(filepath.Dir(dst))
}

// Check checks the store: on SQLite, its integrity check and foreign
// keys (PostgreSQL keeps both itself); on both, the store's own
// invariants (invariants.go).
func (d *DB) Check(ctx context.Context) error {
	if d.pg == nil {
		var res string
		if err := d.sql.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
			return err
		}
		if res != "ok" {
			return fmt.Errorf("state: integrity check: %s", res)
		}
		var n int
		if err := d.sql.QueryRowContext(ctx, "PRAGMA foreign_key_check").Scan(&n); err == nil {
			return errors.New("state: foreign key check failed")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	return d.checkInvariants(ctx)
}

// isUnique reports a unique-constraint violation: SQLite says "UNIQUE
// constraint failed", PostgreSQL's SQLSTATE is 23505.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "unique")
}
