package state

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Lease6 is an address overboot's DHCPv6 server gave one identity
// association (IA_NA) of a client: the client's DUID and the IA's IAID
// name it (RFC 8415 section 12). An address is in one Lease6 at most.
type Lease6 struct {
	DUID    string    `json:"duid"` // hex
	IAID    uint32    `json:"iaid"`
	IP      string    `json:"ip"`
	Expires time.Time `json:"expires,omitzero"`
	MAC     string    `json:"mac,omitempty"` // the client's hardware address, when known
}

// Lease6 returns the lease of the IA iaid of the client duid; ok is false
// when it has none.
func (d *DB) Lease6(ctx context.Context, duid string, iaid uint32) (Lease6, bool, error) {
	var l Lease6
	var exp int64
	err := d.sql.QueryRowContext(ctx, `SELECT duid, iaid, ip, expires_at, mac FROM leases6 WHERE duid = ? AND iaid = ?`, duid, iaid).
		Scan(&l.DUID, &l.IAID, &l.IP, &exp, &l.MAC)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease6{}, false, nil
	}
	l.Expires = fromMillis(exp)
	return l, err == nil, err
}

// PutLease6 records a lease, replacing the IA's previous one and any
// other lease of the same address, in one transaction.
func (d *DB) PutLease6(ctx context.Context, l Lease6) error {
	return d.tx(ctx, func(tx handle) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM leases6 WHERE ip = ? AND NOT (duid = ? AND iaid = ?)`, l.IP, l.DUID, l.IAID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO leases6 (duid, iaid, ip, expires_at, mac) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (duid, iaid) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at, mac = excluded.mac`,
			l.DUID, l.IAID, l.IP, l.Expires.UnixMilli(), l.MAC)
		return err
	})
}

// DeleteLease6 forgets an IA's lease.
func (d *DB) DeleteLease6(ctx context.Context, duid string, iaid uint32) error {
	_, err := d.w.ExecContext(ctx, `DELETE FROM leases6 WHERE duid = ? AND iaid = ?`, duid, iaid)
	return err
}

// Leases6 lists every DHCPv6 lease.
func (d *DB) Leases6(ctx context.Context) ([]Lease6, error) {
	return queryAll(ctx, d.sql, func(row scanner) (Lease6, error) {
		var l Lease6
		var exp int64
		err := row.Scan(&l.DUID, &l.IAID, &l.IP, &exp, &l.MAC)
		l.Expires = fromMillis(exp)
		return l, err
	}, `SELECT duid, iaid, ip, expires_at, mac FROM leases6 ORDER BY ip`)
}
