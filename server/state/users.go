package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is a person who logs in at a boot menu.
type User struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"-"` // PHC string, argon2id (server/enroll)
	Secret       string    `json:"-"` // CHAP secret of the latest login
	TargetSecret string    `json:"-"` // its disks' target's secret (mutual CHAP), new with Secret
	Created      time.Time `json:"created,omitzero"`
	Updated      time.Time `json:"updated,omitzero"`
}

const userCols = `name, password_hash, chap_secret, target_secret, created_at, updated_at`

func scanUser(row scanner) (User, error) {
	var u User
	var c, up int64
	err := row.Scan(&u.Name, &u.PasswordHash, &u.Secret, &u.TargetSecret, &c, &up)
	u.Created, u.Updated = fromMillis(c), fromMillis(up)
	return u, err
}

// AddUser adds a user with a password hash.
func (d *DB) AddUser(ctx context.Context, name, hash string) error {
	now := d.millis()
	_, err := d.w.ExecContext(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, '', '', ?, ?)`, name, hash, now, now)
	if isUnique(err) {
		return fmt.Errorf("user %s: %w", name, ErrExists)
	}
	return err
}

// User returns one user.
func (d *DB) User(ctx context.Context, name string) (User, error) {
	u, err := scanUser(d.sql.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return u, err
}

// Users lists users by name.
func (d *DB) Users(ctx context.Context) ([]User, error) {
	return queryAll(ctx, d.sql, scanUser, `SELECT `+userCols+` FROM users ORDER BY name`)
}

// CountUsers counts users.
func (d *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

func (d *DB) updateUser(ctx context.Context, name, set string, args ...any) error {
	res, err := d.w.ExecContext(ctx, `UPDATE users SET `+set+`, updated_at = ? WHERE name = ?`, append(args, d.millis(), name)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (d *DB) SetPassword(ctx context.Context, name, hash string) error {
	return d.updateUser(ctx, name, `password_hash = ?`, hash)
}

// SetUserSecret stores the CHAP secrets of a user's latest login: the
// initiator's and the target's (mutual CHAP).
func (d *DB) SetUserSecret(ctx context.Context, name, secret, target string) error {
	return d.updateUser(ctx, name, `chap_secret = ?, target_secret = ?`, secret, target)
}

// DeleteUser forgets a user (the caller removes the user's disks first).
func (d *DB) DeleteUser(ctx context.Context, name string) error {
	res, err := d.w.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}
