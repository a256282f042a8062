package state

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Owner kinds: a disk belongs to a machine (by MAC) or to a user (by name).
const (
	OwnerMachine = "machine"
	OwnerUser    = "user"
)

// Disk kinds.
const (
	DiskUpper = "upper" // a writable ext4 disk: the overlay's upper layer
	DiskCow   = "cow"   // a copy-on-write layer over a shared raw disk (sanboot)
)

// Disk statuses. A disk is "creating" from the moment its row is written
// until its file is complete, "deleting" from the moment its removal
// starts until the row goes, "moving" while its home copies it to
// another server (MoveTo): after a crash, server/disks finishes or
// undoes what these say.
const (
	DiskCreating = "creating"
	DiskReady    = "ready"
	DiskDeleting = "deleting"
	DiskMoving   = "moving"
)

// Disk is one private disk and whose it is.
type Disk struct {
	ID        int64     `json:"id"`
	OwnerKind string    `json:"owner_kind"`
	Owner     string    `json:"owner"`
	Profile   string    `json:"profile"`
	Kind      string    `json:"kind"`
	Path      string    `json:"path"`
	Size      int64     `json:"size_bytes"`
	Base      string    `json:"base,omitempty"` // for cow: the base image it was made over (path size mtime)
	Status    string    `json:"status"`
	Created   time.Time `json:"created,omitzero"`
	// ExportedTo is the initiator it was last exported to ("" never).
	ExportedTo string `json:"exported_to,omitempty"`
	// Home is the server whose data directory holds the disk's file
	// (Path is a path on that server); "" for a disk of a store from
	// before servers had names, until its server adopts it (AdoptDisks).
	Home string `json:"home"`
	// While the disk is moving: the server it goes to, and the SHA-256
	// (hex) of its file as the home read it before sending.
	MoveTo     string `json:"move_to,omitempty"`
	MoveDigest string `json:"move_digest,omitempty"`
	// moveSecret is the SHA-256 (hex) of the secret the home sends with
	// the copy: what the receiving server checks.
	moveSecret string
}

const diskCols = `id, owner_kind, owner, profile, kind, path, size_bytes, base, status, created_at, exported_to, home, move_to, move_digest, move_secret`

func scanDisk(row scanner) (Disk, error) {
	var k Disk
	var c int64
	err := row.Scan(&k.ID, &k.OwnerKind, &k.Owner, &k.Profile, &k.Kind, &k.Path, &k.Size, &k.Base, &k.Status, &c, &k.ExportedTo, &k.Home, &k.MoveTo, &k.MoveDigest, &k.moveSecret)
	k.Created = fromMillis(c)
	return k, err
}

// Disk returns an owner's disk for a profile.
func (d *DB) Disk(ctx context.Context, ownerKind, owner, profile string) (Disk, error) {
	k, err := scanDisk(d.sql.QueryRowContext(ctx, `SELECT `+diskCols+` FROM disks WHERE owner_kind = ? AND owner = ? AND profile = ?`, ownerKind, owner, profile))
	if errors.Is(err, sql.ErrNoRows) {
		return Disk{}, fmt.Errorf("%s %s's disk for profile %s: %w", ownerKind, owner, profile, ErrNotFound)
	}
	return k, err
}

func (d *DB) queryDisks(ctx context.Context, where string, args ...any) ([]Disk, error) {
	return queryAll(ctx, d.sql, scanDisk, `SELECT `+diskCols+` FROM disks `+where+` ORDER BY id`, args...)
}

// Disks lists every disk.
func (d *DB) Disks(ctx context.Context) ([]Disk, error) { return d.queryDisks(ctx, "") }

// DisksOf lists an owner's disks.
func (d *DB) DisksOf(ctx context.Context, ownerKind, owner string) ([]Disk, error) {
	return d.queryDisks(ctx, "WHERE owner_kind = ? AND owner = ?", ownerKind, owner)
}

// DiskByID returns one disk.
func (d *DB) DiskByID(ctx context.Context, id int64) (Disk, error) {
	k, err := scanDisk(d.sql.QueryRowContext(ctx, `SELECT `+diskCols+` FROM disks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Disk{}, fmt.Errorf("disk %d: %w", id, ErrNotFound)
	}
	return k, err
}

// BeginDisk records a disk about to be created (status creating), within
// the profile's quota, and returns it with its ID. pathFor names its file
// from the ID. Past the quota nothing is written and the error wraps
// ErrQuota.
func (d *DB) BeginDisk(ctx context.Context, k Disk, q Quota, pathFor func(id int64) string) (Disk, error) {
	var out Disk
	err := d.tx(ctx, func(tx handle) error {
		var n int
		var bytes int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM disks WHERE profile = ?`, k.Profile).Scan(&n, &bytes); err != nil {
			return err
		}
		if q.Disks > 0 && n >= q.Disks {
			return fmt.Errorf("profile %s has its %d disks: %w", k.Profile, q.Disks, ErrQuota)
		}
		if q.DiskBytes > 0 && bytes+k.Size > q.DiskBytes {
			return fmt.Errorf("profile %s: a %d-byte disk would pass its %d bytes of disks (%d used): %w", k.Profile, k.Size, q.DiskBytes, bytes, ErrQuota)
		}
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO disks (owner_kind, owner, profile, kind, path, size_bytes, base, status, created_at, home) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?) RETURNING id`,
			k.OwnerKind, k.Owner, k.Profile, k.Kind, k.Size, k.Base, DiskCreating, d.millis(), k.Home).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("%s %s's disk for profile %s: %w", k.OwnerKind, k.Owner, k.Profile, ErrExists)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE disks SET path = ? WHERE id = ?`, pathFor(id), id); err != nil {
			return err
		}
		out, err = scanDisk(tx.QueryRowContext(ctx, `SELECT `+diskCols+` FROM disks WHERE id = ?`, id))
		return err
	})
	return out, err
}

// AddDisk records an existing disk file as ready (migration), at home
// k.Home.
func (d *DB) AddDisk(ctx context.Context, k Disk) (int64, error) {
	var id int64
	err := d.w.QueryRowContext(ctx, `INSERT INTO disks (owner_kind, owner, profile, kind, path, size_bytes, base, status, created_at, home) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		k.OwnerKind, k.Owner, k.Profile, k.Kind, k.Path, k.Size, k.Base, DiskReady, d.millis(), k.Home).Scan(&id)
	if isUnique(err) {
		return 0, fmt.Errorf("%s %s's disk for profile %s: %w", k.OwnerKind, k.Owner, k.Profile, ErrExists)
	}
	if err != nil {
		return 0, err
	}
	return id, nil
}

// SetDiskSize records what a disk takes now (a copy-on-write layer grows
// as it is written), for the profile's max-disk-bytes.
func (d *DB) SetDiskSize(ctx context.Context, id, size int64) error {
	_, err := d.w.ExecContext(ctx, `UPDATE disks SET size_bytes = ? WHERE id = ?`, size, id)
	return err
}

// SetDiskExport records the initiator a disk is exported to.
func (d *DB) SetDiskExport(ctx context.Context, id int64, initiator string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE disks SET exported_to = ? WHERE id = ?`, initiator, id)
	return err
}

// SetDiskStatus moves a disk to status.
func (d *DB) SetDiskStatus(ctx context.Context, id int64, status string) error {
	res, err := d.w.ExecContext(ctx, `UPDATE disks SET status = ? WHERE id = ?`, status, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("disk %d: %w", id, ErrNotFound)
	}
	return nil
}

// RemoveDisk forgets a disk (its file already gone).
func (d *DB) RemoveDisk(ctx context.Context, id int64) error {
	_, err := d.w.ExecContext(ctx, `DELETE FROM disks WHERE id = ?`, id)
	return err
}

// DiskUsage is a profile's disk count and total size.
func (d *DB) DiskUsage(ctx context.Context, profile string) (n int, bytes int64, err error) {
	err = d.sql.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM disks WHERE profile = ?`, profile).Scan(&n, &bytes)
	return n, bytes, err
}

// AdoptDisks makes home the home of the disks that have none (a store
// from before servers had names) whose file is under dir (the server's
// data directory). It returns how many it adopted.
func (d *DB) AdoptDisks(ctx context.Context, home, dir string) (int64, error) {
	if home == "" || dir == "" {
		return 0, errors.New("adopt disks: a server name and its data directory are needed")
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	res, err := d.w.ExecContext(ctx, `UPDATE disks SET home = ? WHERE home = '' AND substr(path, 1, ?) = ?`, home, len(prefix), prefix)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ErrDiskBusy is wrapped by the errors of a move that the disk's state
// does not allow (not ready, not at that home, already moving).
var ErrDiskBusy = errors.New("disk not ready to move")

// BeginMove marks disk id, ready at home from, as moving to server to:
// secretHash is the SHA-256 (hex) of the secret the copy will carry.
// From here no server exports or boots it until FinishMove or UndoMove.
// Its file's digest comes next (SetMoveDigest), once the home knows no
// machine writes to it.
func (d *DB) BeginMove(ctx context.Context, id int64, from, to, secretHash string) error {
	if from == "" || to == "" || from == to || secretHash == "" {
		return fmt.Errorf("move disk %d from %q to %q: want two different servers and a secret", id, from, to)
	}
	return d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `UPDATE disks SET status = ?, move_to = ?, move_digest = '', move_secret = ? WHERE id = ? AND home = ? AND status = ?`,
			DiskMoving, to, secretHash, id, from, DiskReady)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		k, err := scanDisk(tx.QueryRowContext(ctx, `SELECT `+diskCols+` FROM disks WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("disk %d: %w", id, ErrNotFound)
		} else if err != nil {
			return err
		}
		return fmt.Errorf("disk %d is %s at server %q, not ready at %s: %w", id, k.Status, k.Home, from, ErrDiskBusy)
	})
}

// SetMoveDigest records the SHA-256 (hex) of the file of disk id,
// moving from from to to: the receiving server checks its copy against
// it. It reports whether the move is still so.
func (d *DB) SetMoveDigest(ctx context.Context, id int64, from, to, digest string) (bool, error) {
	if digest == "" {
		return false, fmt.Errorf("disk %d: an empty digest", id)
	}
	res, err := d.w.ExecContext(ctx, `UPDATE disks SET move_digest = ? WHERE id = ? AND home = ? AND status = ? AND move_to = ?`,
		digest, id, from, DiskMoving, to)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// UndoMove puts disk id, moving from home from to server to, back to
// ready at from. It reports whether it did: false when the move is no
// longer so (finished, or undone already).
func (d *DB) UndoMove(ctx context.Context, id int64, from, to string) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE disks SET status = ?, move_to = '', move_digest = '', move_secret = '' WHERE id = ? AND home = ? AND status = ? AND move_to = ?`,
		DiskReady, id, from, DiskMoving, to)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// FinishMove switches disk id's home from from to to (its file there at
// path), ready, if it is still moving so and secretHash is its move's.
// It reports whether it did.
func (d *DB) FinishMove(ctx context.Context, id int64, from, to, secretHash, path string) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE disks SET home = ?, path = ?, status = ?, move_to = '', move_digest = '', move_secret = '' WHERE id = ? AND home = ? AND status = ? AND move_to = ? AND move_secret = ?`,
		to, path, DiskReady, id, from, DiskMoving, to, secretHash)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MoveSecretIs reports whether secretHash is the hash of k's move secret
// (k as read from the store, moving).
func (k Disk) MoveSecretIs(secretHash string) bool {
	return k.Status == DiskMoving && k.moveSecret != "" && subtle.ConstantTimeCompare([]byte(k.moveSecret), []byte(secretHash)) == 1
}
