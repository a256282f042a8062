package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// errRetryTx marks an error after which tx runs the transaction again.
var errRetryTx = errors.New("the transaction met another and runs again")

// WriteLeases applies ws in order in one transaction: all or nothing.
// A put replaces its MAC's lease and removes another MAC's lease on the
// same address that has expired by now; a put whose address another MAC
// holds past now is refused (not applied, the rest of the batch is) and
// reported with that lease, and so is a write whose Prev says the MAC's
// lease was other than it is (see LeaseWrite): the store is the arbiter
// of an address that several servers may want to give.
//
// Two servers putting one address at the same instant on PostgreSQL:
// the transaction that read the address free before the other's commit
// is aborted by PostgreSQL (serialization failure 40001; or, when the
// other transaction was not serializable, the address's unique index,
// 23505) and runs again (tx), and then reports the conflict.
func (d *DB) WriteLeases(ctx context.Context, ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	var conflicts []LeaseConflict
	err := d.tx(ctx, func(tx handle) error {
		conflicts = conflicts[:0]
		for i, w := range ws {
			l := w.Lease
			if w.Prev != nil {
				cur, has, err := leaseOf(ctx, tx, l.MAC)
				if err != nil {
					return err
				}
				changed := has != (w.Prev.IP != "") || has && (cur.IP != w.Prev.IP || cur.Expires.UnixMilli() != w.Prev.Expires.UnixMilli())
				if changed && has && cur.Expires.After(now) &&
					(w.Delete || cur.IP != l.IP || l.Expires.UnixMilli() < cur.Expires.UnixMilli()) {
					conflicts = append(conflicts, LeaseConflict{Index: i, Owner: cur})
					continue
				}
			}
			if w.Delete {
				if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE mac = ?`, l.MAC); err != nil {
					return fmt.Errorf("delete the lease of %s: %w", l.MAC, err)
				}
				continue
			}
			var o Lease
			var exp int64
			err := tx.QueryRowContext(ctx, `SELECT mac, ip, expires_at, hostname FROM leases WHERE ip = ? AND mac <> ? AND expires_at > ?`,
				l.IP, l.MAC, now.UnixMilli()).Scan(&o.MAC, &o.IP, &exp, &o.Hostname)
			switch {
			case err == nil:
				o.Expires = fromMillis(exp)
				conflicts = append(conflicts, LeaseConflict{Index: i, Owner: o})
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("read the lease on %s: %w", l.IP, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE ip = ? AND mac <> ?`, l.IP, l.MAC); err != nil {
				return fmt.Errorf("drop the expired lease on %s: %w", l.IP, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname) VALUES (?, ?, ?, ?)
				ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at, hostname = excluded.hostname`,
				l.MAC, l.IP, l.Expires.UnixMilli(), l.Hostname); err != nil {
				if tx.pg && isUnique(err) {
					// Another server's insert on the address committed
					// after this transaction read it free: run again,
					// and see it.
					return fmt.Errorf("put the lease of %s on %s: %w: %w", l.MAC, l.IP, errRetryTx, err)
				}
				return fmt.Errorf("put the lease of %s on %s: %w", l.MAC, l.IP, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: leases: %w", err)
	}
	return conflicts, nil
}

// leaseOf reads mac's lease inside a transaction.
func leaseOf(ctx context.Context, tx handle, mac string) (Lease, bool, error) {
	l := Lease{MAC: mac}
	var exp int64
	err := tx.QueryRowContext(ctx, `SELECT ip, expires_at, hostname FROM leases WHERE mac = ?`, mac).Scan(&l.IP, &exp, &l.Hostname)
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
