package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ConsoleSession is an operator console's signed-in browser: the hash of
// its cookie (the caller hashes; the cookie itself is never stored), the
// admin token it signed in with, and its life. Kept in the store, a
// session holds on every server sharing it and across restarts.
type ConsoleSession struct {
	Hash    string
	TokenID string
	Created time.Time // zero: now
	Expires time.Time
	Seen    time.Time // zero: Created (written at sign-in only)
}

// PutConsoleSession stores a new session. It first deletes the expired
// ones, then, of the live ones, the oldest (by Created) beyond max-1, so
// that at most max remain with the new one. A hash already stored is
// ErrExists.
func (d *DB) PutConsoleSession(ctx context.Context, s ConsoleSession, max int) error {
	now := d.millis()
	switch {
	case s.Hash == "":
		return errors.New("console session: no hash")
	case s.TokenID == "":
		return errors.New("console session: no token ID")
	case max < 1:
		return fmt.Errorf("console session: at most %d sessions: want 1 or more", max)
	case s.Expires.UnixMilli() <= now:
		return fmt.Errorf("console session: expires at %s, not after now", s.Expires.UTC().Format(time.RFC3339))
	}
	created := now
	if !s.Created.IsZero() {
		created = s.Created.UnixMilli()
	}
	seen := created
	if !s.Seen.IsZero() {
		seen = s.Seen.UnixMilli()
	}
	err := d.tx(ctx, func(tx handle) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires_at <= ?`, now); err != nil {
			return err
		}
		// The newest max-1 stay; LIMIT 0 keeps none.
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash NOT IN (SELECT hash FROM console_sessions ORDER BY created_at DESC, hash DESC LIMIT ?)`, max-1); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (hash, token_id, created_at, expires_at, seen_at) VALUES (?, ?, ?, ?, ?)`,
			s.Hash, s.TokenID, created, s.Expires.UnixMilli(), seen)
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("console session: %w", ErrExists)
	}
	return err
}

// ConsoleSession returns the live session with this hash: one absent or
// expired (by the store's clock) is ErrNotFound.
func (d *DB) ConsoleSession(ctx context.Context, hash string) (ConsoleSession, error) {
	s := ConsoleSession{Hash: hash}
	var c, e, seen int64
	err := d.sql.QueryRowContext(ctx, `SELECT token_id, created_at, expires_at, seen_at FROM console_sessions WHERE hash = ?`, hash).
		Scan(&s.TokenID, &c, &e, &seen)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && d.millis() >= e) {
		return ConsoleSession{}, fmt.Errorf("console session: %w", ErrNotFound)
	}
	if err != nil {
		return ConsoleSession{}, err
	}
	s.Created, s.Expires, s.Seen = fromMillis(c), fromMillis(e), fromMillis(seen)
	return s, nil
}

// DeleteConsoleSession deletes a session (sign-out); one absent is no
// error.
func (d *DB) DeleteConsoleSession(ctx context.Context, hash string) error {
	_, err := d.w.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash = ?`, hash)
	return err
}

// DeleteConsoleSessionsOf deletes every session signed in with an admin
// token, and returns how many there were.
func (d *DB) DeleteConsoleSessionsOf(ctx context.Context, tokenID string) (int, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM console_sessions WHERE token_id = ?`, tokenID)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
