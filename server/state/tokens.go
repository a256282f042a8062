package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// BootToken is a single-use credential handed to one machine in a script:
// only its hash is stored.
type BootToken struct {
	Purpose string // what it may be spent on: doc, san, login, ...
	MAC     string
	User    string // for a login's document
	Profile string
	Address string // the client address that fetched the script: only it may spend the token
	BootID  int64
	Expires time.Time
	// Served is, for an attest token (enroll = tpm), what the server
	// served this boot (JSON of package server/attest's Served), kept
	// beside the token (attest_served) and gone with it.
	Served string
}

// ErrWrongAddress: a token spent from another address than the one it was
// handed to. The token stays valid for its own machine.
var ErrWrongAddress = errors.New("token spent from another address")

// PutBootToken stores a token by its hash (and now and then drops the
// expired ones).
//
// It is one INSERT, atomic on its own: a storm of machines on several
// servers issues thousands at once, and a transaction that also deleted
// the expired ones read the whole table in each, which PostgreSQL's
// SERIALIZABLE turned into conflicts of every issue with every other (the
// storm bench's "gave up after 30 attempts"). The expired ones go in a
// statement of their own, at most every TokenPruneEvery per handle.
func (d *DB) PutBootToken(ctx context.Context, hash string, t BootToken) error {
	if _, err := d.w.ExecContext(ctx, `INSERT INTO boot_tokens (hash, purpose, mac, user_name, profile, address, boot_id, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		hash, t.Purpose, t.MAC, t.User, t.Profile, t.Address, t.BootID, t.Expires.UnixMilli()); err != nil {
		return err
	}
	if t.Served != "" {
		// Written before the token is handed out: a token found without
		// it is one that had none.
		if _, err := d.w.ExecContext(ctx, `INSERT INTO attest_served (hash, served, expires_at) VALUES (?, ?, ?)`, hash, t.Served, t.Expires.UnixMilli()); err != nil {
			d.w.ExecContext(ctx, `DELETE FROM boot_tokens WHERE hash = ?`, hash)
			return err
		}
	}
	now := d.millis()
	if last := d.tokensPruned.Load(); now-last >= TokenPruneEvery.Milliseconds() && d.tokensPruned.CompareAndSwap(last, now) {
		// Best effort: an expired token cannot be spent anyway
		// (TakeBootToken checks), this only keeps the table small.
		d.w.ExecContext(ctx, `DELETE FROM boot_tokens WHERE expires_at < ?`, now)
		d.w.ExecContext(ctx, `DELETE FROM attest_served WHERE expires_at < ?`, now)
	}
	return nil
}

// TokenPruneEvery is how often PutBootToken deletes the expired tokens.
const TokenPruneEvery = 30 * time.Second

// TakeBootToken spends a token: it must exist, be for purpose, not have
// expired and be spent from address; then it is gone. A token spent from
// another address is refused (ErrWrongAddress) and kept.
func (d *DB) TakeBootToken(ctx context.Context, hash, purpose, address string) (BootToken, error) {
	var t BootToken
	err := d.tx(ctx, func(tx handle) error {
		var exp int64
		err := tx.QueryRowContext(ctx, `SELECT t.purpose, t.mac, t.user_name, t.profile, t.address, t.boot_id, t.expires_at, COALESCE(s.served, '') FROM boot_tokens t LEFT JOIN attest_served s ON s.hash = t.hash WHERE t.hash = ?`, hash).
			Scan(&t.Purpose, &t.MAC, &t.User, &t.Profile, &t.Address, &t.BootID, &exp, &t.Served)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("token: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		t.Expires = fromMillis(exp)
		switch {
		case t.Purpose != purpose:
			return fmt.Errorf("token for %s spent on %s: %w", t.Purpose, purpose, ErrNotFound)
		case d.millis() > exp:
			tx.ExecContext(ctx, `DELETE FROM boot_tokens WHERE hash = ?`, hash)
			return fmt.Errorf("token expired: %w", ErrNotFound)
		case t.Address != address:
			return fmt.Errorf("%w: handed to %s, spent from %s", ErrWrongAddress, t.Address, address)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM attest_served WHERE hash = ?`, hash); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM boot_tokens WHERE hash = ?`, hash)
		return err
	})
	if err != nil {
		// An expired token's delete was rolled back with the error:
		// harmless, the next Put prunes it.
		return BootToken{}, err
	}
	return t, nil
}

// APIToken is an admin credential: an ID and the hash of its secret.
type APIToken struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Scope   string    `json:"scope"` // read, operate or admin (package server/enroll)
	Hash    string    `json:"-"`
	Created time.Time `json:"created,omitzero"`
	Used    time.Time `json:"used,omitzero"`
}

// AddAPIToken stores an admin token.
func (d *DB) AddAPIToken(ctx context.Context, t APIToken) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)`, t.ID, t.Name, t.Scope, t.Hash, d.millis())
	if isUnique(err) {
		return fmt.Errorf("token %s: %w", t.ID, ErrExists)
	}
	return err
}

// APITokenByID returns one admin token.
func (d *DB) APITokenByID(ctx context.Context, id string) (APIToken, error) {
	t, err := scanAPIToken(d.sql.QueryRowContext(ctx, `SELECT `+apiTokenCols+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return t, err
}

// TouchAPIToken records a token's use.
func (d *DB) TouchAPIToken(ctx context.Context, id string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE api_tokens SET used_at = ? WHERE id = ?`, d.millis(), id)
	return err
}

// APITokens lists admin tokens.
func (d *DB) APITokens(ctx context.Context) ([]APIToken, error) {
	return queryAll(ctx, d.sql, scanAPIToken, `SELECT `+apiTokenCols+` FROM api_tokens ORDER BY created_at, id`)
}

const apiTokenCols = `id, name, scope, hash, created_at, used_at`

func scanAPIToken(row scanner) (APIToken, error) {
	var t APIToken
	var c, u int64
	err := row.Scan(&t.ID, &t.Name, &t.Scope, &t.Hash, &c, &u)
	t.Created, t.Used = fromMillis(c), fromMillis(u)
	return t, err
}

// DeleteAPIToken revokes an admin token, and signs out the console
// sessions signed in with it.
func (d *DB) DeleteAPIToken(ctx context.Context, id string) error {
	return d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE token_id = ?`, id)
		return err
	})
}

// ExtendBootToken moves an unspent token's expiry (and its served
// record's) to until, if that is later.
func (d *DB) ExtendBootToken(ctx context.Context, hash string, until time.Time) error {
	return d.tx(ctx, func(tx handle) error {
		for _, q := range []string{
			`UPDATE boot_tokens SET expires_at = ? WHERE hash = ? AND expires_at < ?`,
			`UPDATE attest_served SET expires_at = ? WHERE hash = ? AND expires_at < ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, until.UnixMilli(), hash, until.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
}

// PeekBootToken reads a token without spending it: for tokens used many
// times within their life (an agent's phase reports).
func (d *DB) PeekBootToken(ctx context.Context, hash, purpose string) (BootToken, error) {
	var t BootToken
	var exp int64
	err := d.sql.QueryRowContext(ctx, `SELECT t.purpose, t.mac, t.user_name, t.profile, t.address, t.boot_id, t.expires_at, COALESCE(s.served, '') FROM boot_tokens t LEFT JOIN attest_served s ON s.hash = t.hash WHERE t.hash = ?`, hash).
		Scan(&t.Purpose, &t.MAC, &t.User, &t.Profile, &t.Address, &t.BootID, &exp, &t.Served)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (t.Purpose != purpose || d.millis() > exp)) {
		return BootToken{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	t.Expires = fromMillis(exp)
	return t, err
}
