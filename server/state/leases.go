package state

import (
	"context"
	"database/sql"
	"errors"
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

// PutLease records a lease (replacing the machine's previous one).
func (d *DB) PutLease(ctx context.Context, l Lease) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname) VALUES (?, ?, ?, ?)
		ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at, hostname = excluded.hostname`,
		l.MAC, l.IP, l.Expires.UnixMilli(), l.Hostname)
	return err
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
