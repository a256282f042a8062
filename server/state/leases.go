package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"
)

// Lease is an address overboot's DHCP server gave a machine.
type Lease struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip"`
	Expires  time.Time `json:"expires,omitzero"`
	Hostname string    `json:"hostname,omitempty"`
}

// Lease returns a machine's lease; ok is false when it has none.
func (d *DB) Lease(ctx context.Context, mac string) (Lease, bool, error) {
	var l Lease
	var exp int64
	err := d.sql.QueryRowContext(ctx, `SELECT mac, ip, expires_at, hostname FROM leases WHERE mac = ?`, mac).Scan(&l.MAC, &l.IP, &exp, &l.Hostname)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, false, nil
	}
	l.Expires = fromMillis(exp)
	return l, err == nil, err
}

// PutLease records a lease (replacing the machine's previous one, and
// another machine's expired one on the address); it fails with ErrExists
// when another machine's lease on the address runs on.
func (d *DB) PutLease(ctx context.Context, l Lease) error {
	conflicts, err := d.WriteLeases(ctx, []LeaseWrite{{Lease: l}}, d.now())
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		o := conflicts[0].Owner
		return fmt.Errorf("lease of %s for %s: %w: leased to %s until %s", l.IP, l.MAC, ErrExists, o.MAC, o.Expires.Format(time.RFC3339))
	}
	return nil
}

// LeaseWrite is one change in WriteLeases's batch: put Lease, or, with
// Delete, remove Lease.MAC's lease.
//
// Prev, when set, makes the write conditional on what the writer (a
// DHCP server with the leases in memory) last knew of Lease.MAC's
// lease: *Prev, or none when Prev.IP is empty. Another server sharing
// the store may have changed it since; its lease must then stand. When
// the MAC's lease in the store is not Prev (address and expiry, to the
// millisecond) and runs past now, a delete is refused, and so is a put
// on another address or one that would end it sooner; a put on the same
// address that ends later (a renewal) goes in. A write without Prev is
// unconditional (an operator's).
type LeaseWrite struct {
	Lease  Lease
	Delete bool
	Prev   *Lease
}

// LeaseConflict is a write WriteLeases refused: the address of ws[Index]
// is Owner's (another MAC's), or ws[Index].Prev was not Lease.MAC's
// lease, which is Owner (the same MAC).
type LeaseConflict struct {
	Index int
	Owner Lease
}

// WriteLeases applies ws in order in one transaction: all or nothing.
// A put replaces its MAC's lease and removes another MAC's lease on the
// same address that has expired by now; a put whose address another MAC
// holds past now is refused (not applied, the rest of the batch is) and
// reported with that lease, and so is a write whose Prev says the MAC's
// lease was other than it is (see LeaseWrite): the store is the arbiter
// of an address that several servers may want to give.
//
// On PostgreSQL several servers write at once, in batches of hundreds of
// writes. At SERIALIZABLE (tx) two such batches nearly always meet on
// the same index pages and one is aborted (40001) and run again whole,
// which at a few hundred clients a second left most of them waiting. So
// WriteLeases runs at READ COMMITTED and arbitrates row by row: it locks
// the MAC's lease and the leases on the address (SELECT ... FOR UPDATE)
// before it decides, and a write that meets another server's insert of
// the same address or MAC, not yet visible when it read (the unique
// index's 23505), is undone to a savepoint and decided again, now seeing
// that row. Two batches that lock the same rows in different orders
// would deadlock (and PostgreSQL notices only after deadlock_timeout, a
// second): so a batch first takes, in one order, a transaction advisory
// lock per MAC and address it writes (lockLeases); a deadlock left (40P01)
// runs the whole batch again.
func (d *DB) WriteLeases(ctx context.Context, ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	var conflicts []LeaseConflict
	err := d.txAt(ctx, sql.LevelReadCommitted, func(tx handle) error {
		conflicts = conflicts[:0]
		if tx.pg {
			if err := lockLeases(ctx, tx, ws); err != nil {
				return err
			}
		}
		for i, w := range ws {
			owner, refused, err := writeLease(ctx, tx, w, now)
			if err != nil {
				return err
			}
			if refused {
				conflicts = append(conflicts, LeaseConflict{Index: i, Owner: owner})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: leases: %w", err)
	}
	return conflicts, nil
}

// leaseLockClass is the first key of the advisory locks lockLeases
// takes (the two-key space, apart from migrateLock's).
const leaseLockClass = 0x6c656173 // "leas"

// lockLeases takes a transaction advisory lock for each MAC and address
// ws writes, lowest key first, so that two batches wait for each other
// in one order instead of deadlocking on row locks.
func lockLeases(ctx context.Context, tx handle, ws []LeaseWrite) error {
	keys := make([]int32, 0, 2*len(ws))
	for _, w := range ws {
		keys = append(keys, lockKey("mac "+w.Lease.MAC))
		if !w.Delete {
			keys = append(keys, lockKey("ip "+w.Lease.IP))
		}
		if w.Prev != nil && w.Prev.IP != "" {
			keys = append(keys, lockKey("ip "+w.Prev.IP))
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(pg_advisory_xact_lock(?, k)) FROM (SELECT unnest(?::int[]) AS k ORDER BY 1) AS ks`,
		int32(leaseLockClass), keys).Scan(&n)
	if err != nil {
		return fmt.Errorf("lock the leases: %w", err)
	}
	return nil
}

// lockKey is s's advisory lock key: FNV-1a, 32 bits (two keys alike only
// wait for each other).
func lockKey(s string) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32())
}

// writeLease applies w (see WriteLeases), or refuses it and returns the
// lease that stands. On PostgreSQL it runs under a savepoint, decided
// again (a few times at most) when another transaction's insert of the
// same key committed meanwhile.
func writeLease(ctx context.Context, tx handle, w LeaseWrite, now time.Time) (Lease, bool, error) {
	if !tx.pg {
		return writeLeaseOnce(ctx, tx, w, now)
	}
	for attempt := 1; ; attempt++ {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT lease`); err != nil {
			return Lease{}, false, err
		}
		owner, refused, err := writeLeaseOnce(ctx, tx, w, now)
		if err == nil {
			_, err = tx.ExecContext(ctx, `RELEASE SAVEPOINT lease`)
			return owner, refused, err
		}
		if !isUnique(err) || attempt == 5 {
			return Lease{}, false, err
		}
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT lease`); err != nil {
			return Lease{}, false, err
		}
	}
}

func writeLeaseOnce(ctx context.Context, tx handle, w LeaseWrite, now time.Time) (Lease, bool, error) {
	forUpdate := ""
	if tx.pg {
		forUpdate = " FOR UPDATE"
	}
	l := w.Lease
	cur, has, err := leaseOf(ctx, tx, l.MAC, forUpdate)
	if err != nil {
		return Lease{}, false, err
	}
	if w.Prev != nil {
		changed := has != (w.Prev.IP != "") || has && (cur.IP != w.Prev.IP || cur.Expires.UnixMilli() != w.Prev.Expires.UnixMilli())
		if changed && has && cur.Expires.After(now) &&
			(w.Delete || cur.IP != l.IP || l.Expires.UnixMilli() < cur.Expires.UnixMilli()) {
			return cur, true, nil
		}
	}
	if w.Delete {
		if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE mac = ?`, l.MAC); err != nil {
			return Lease{}, false, fmt.Errorf("delete the lease of %s: %w", l.MAC, err)
		}
		return Lease{}, false, nil
	}
	var o Lease
	var exp int64
	err = tx.QueryRowContext(ctx, `SELECT mac, ip, expires_at, hostname FROM leases WHERE ip = ? AND mac <> ?`+forUpdate,
		l.IP, l.MAC).Scan(&o.MAC, &o.IP, &exp, &o.Hostname)
	switch {
	case err == nil:
		o.Expires = fromMillis(exp)
		if o.Expires.After(now) {
			return o, true, nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE mac = ?`, o.MAC); err != nil {
			return Lease{}, false, fmt.Errorf("drop the expired lease on %s: %w", l.IP, err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return Lease{}, false, fmt.Errorf("read the lease on %s: %w", l.IP, err)
	}
	// An insert when the MAC had no lease, not an upsert: another
	// server's insert of the MAC meanwhile then fails it (23505) instead
	// of being overwritten unseen.
	if has {
		_, err = tx.ExecContext(ctx, `UPDATE leases SET ip = ?, expires_at = ?, hostname = ? WHERE mac = ?`, l.IP, l.Expires.UnixMilli(), l.Hostname, l.MAC)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname) VALUES (?, ?, ?, ?)`, l.MAC, l.IP, l.Expires.UnixMilli(), l.Hostname)
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("put the lease of %s on %s: %w", l.MAC, l.IP, err)
	}
	return Lease{}, false, nil
}

// leaseOf reads mac's lease inside a transaction (and locks it, with
// forUpdate " FOR UPDATE" on PostgreSQL).
func leaseOf(ctx context.Context, tx handle, mac, forUpdate string) (Lease, bool, error) {
	l := Lease{MAC: mac}
	var exp int64
	err := tx.QueryRowContext(ctx, `SELECT ip, expires_at, hostname FROM leases WHERE mac = ?`+forUpdate, mac).Scan(&l.IP, &exp, &l.Hostname)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Lease{}, false, nil
	case err != nil:
		return Lease{}, false, fmt.Errorf("read the lease of %s: %w", mac, err)
	}
	l.Expires = fromMillis(exp)
	return l, true, nil
}

// DeleteLease forgets a machine's lease.
func (d *DB) DeleteLease(ctx context.Context, mac string) error {
	_, err := d.w.ExecContext(ctx, `DELETE FROM leases WHERE mac = ?`, mac)
	return err
}

// Leases lists every lease.
func (d *DB) Leases(ctx context.Context) ([]Lease, error) {
	return queryAll(ctx, d.sql, func(row scanner) (Lease, error) {
		var l Lease
		var exp int64
		err := row.Scan(&l.MAC, &l.IP, &exp, &l.Hostname)
		l.Expires = fromMillis(exp)
		return l, err
	}, `SELECT mac, ip, expires_at, hostname FROM leases ORDER BY ip`)
}
