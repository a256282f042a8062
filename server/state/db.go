package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/overboot/overboot/internal/durable"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the store's file inside the server's data directory.
const FileName = "state.db"

// ErrNotFound is wrapped by errors for rows that do not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is wrapped by errors for rows that already exist.
var ErrExists = errors.New("already exists")

// DB is an open store. Writes go through one connection, so writers
// queue in Go (in order, without limit of time) instead of meeting in
// SQLite's busy handler, which sleeps and retries and let some of 200
// machines booting at once wait past busy_timeout (SQLITE_BUSY). Reads use
// a pool: WAL lets them run beside the writer.
type DB struct {
	sql  *sql.DB // readers
	w    *sql.DB // the writer: one connection
	path string
	now  func() time.Time
}

// Open opens (creating, 0600) the store at path and brings its schema up
// to date.
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
	d := &DB{sql: r, w: w, path: path, now: time.Now}
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
func (d *DB) Close() error { return errors.Join(d.sql.Close(), d.w.Close()) }

// Path is the store's file.
func (d *DB) Path() string { return d.path }

// SetClock replaces the clock (tests).
func (d *DB) SetClock(now func() time.Time) { d.now = now }

func (d *DB) millis() int64 { return d.now().UnixMilli() }

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// tx runs fn in one write transaction: all of it or none.
func (d *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Backup writes a consistent copy of the store to dst (0600) while the
// store is in use: SQLite's VACUUM INTO reads one snapshot. The copy is
// written beside dst and renamed, so dst is whole or absent.
func (d *DB) Backup(ctx context.Context, dst string) error {
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

// Check runs SQLite's integrity check and the store's own invariants.
func (d *DB) Check(ctx context.Context) error {
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
	return nil
}

// isUnique reports a unique-constraint violation (portable enough: both
// SQLite and PostgreSQL say "unique" in the message).
func isUnique(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "unique")
}
