package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
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
// A batch (a DHCP server's, hundreds of writes) costs a few statements
// whatever its size: it reads the leases of its MACs and addresses in
// one query, decides every write in order on those (decideLeases), and
// then deletes the leases it changes and inserts what they became.
//
// On PostgreSQL several servers write at once. At SERIALIZABLE two such
// batches nearly always meet on the same index pages and one is aborted
// (40001) and run again whole. So WriteLeases runs at READ COMMITTED
// and first takes a transaction advisory lock per MAC and address it
// writes (lockLeases), lowest key first: two batches that share a MAC
// or an address run one after the other, and the second, whose read
// comes after the first's commit, sees its leases and is refused where
// they conflict. Every lease write goes through WriteLeases (and takes
// those locks); a unique violation (23505) from a writer that did not,
// or a deadlock (40P01), runs the whole batch again.
func (d *DB) WriteLeases(ctx context.Context, ws []LeaseWrite, now time.Time) ([]LeaseConflict, error) {
	var conflicts []LeaseConflict
	err := d.txAt(ctx, sql.LevelReadCommitted, func(tx handle) error {
		if tx.pg {
			if err := lockLeases(ctx, tx, ws); err != nil {
				return err
			}
		}
		rows, err := readLeases(ctx, tx, ws)
		if err != nil {
			return err
		}
		var touched []string
		conflicts, touched = decideLeases(rows, ws, now)
		return storeLeases(ctx, tx, rows, touched)
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
// ws writes (a write's Prev address too), lowest key first, so that two
// batches wait for each other in one order instead of deadlocking.
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

// leaseRows are leases of the store by MAC, and the MAC of the lease on
// each of their addresses.
type leaseRows struct {
	byMAC map[string]Lease
	byIP  map[string]string
}

// readLeases reads the leases of the MACs and addresses ws writes.
func readLeases(ctx context.Context, tx handle, ws []LeaseWrite) (leaseRows, error) {
	rows := leaseRows{byMAC: map[string]Lease{}, byIP: map[string]string{}}
	var macs, ips []string
	for _, w := range ws {
		macs = append(macs, w.Lease.MAC)
		if !w.Delete {
			ips = append(ips, w.Lease.IP)
		}
	}
	slices.Sort(macs)
	macs = slices.Compact(macs)
	slices.Sort(ips)
	ips = slices.Compact(ips)
	var q string
	var args []any
	if tx.pg {
		q, args = `SELECT mac, ip, expires_at, hostname FROM leases WHERE mac = ANY(?::text[]) OR ip = ANY(?::text[])`, []any{macs, ips}
	} else {
		q = `SELECT mac, ip, expires_at, hostname FROM leases WHERE mac IN (` + marks(len(macs)) + `) OR ip IN (` + marks(len(ips)) + `)`
		for _, v := range append(macs, ips...) {
			args = append(args, v)
		}
	}
	all, err := queryAll(ctx, tx, func(row scanner) (Lease, error) {
		var l Lease
		var exp int64
		err := row.Scan(&l.MAC, &l.IP, &exp, &l.Hostname)
		l.Expires = fromMillis(exp)
		return l, err
	}, q, args...)
	if err != nil {
		return rows, fmt.Errorf("read the leases: %w", err)
	}
	for _, l := range all {
		rows.byMAC[l.MAC] = l
		rows.byIP[l.IP] = l.MAC
	}
	return rows, nil
}

// marks is n SQL placeholders, "?, ?, ..."; n = 0 gives NULL (IN (NULL)
// matches nothing).
func marks(n int) string {
	if n == 0 {
		return "NULL"
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// decideLeases applies ws in order to rows (see WriteLeases and
// LeaseWrite) and returns the writes refused, and the MACs whose leases
// changed: their leases in rows now, or none.
func decideLeases(rows leaseRows, ws []LeaseWrite, now time.Time) ([]LeaseConflict, []string) {
	var conflicts []LeaseConflict
	var touched []string
	drop := func(mac string) {
		if l, ok := rows.byMAC[mac]; ok {
			delete(rows.byMAC, mac)
			if rows.byIP[l.IP] == mac {
				delete(rows.byIP, l.IP)
			}
		}
		touched = append(touched, mac)
	}
	for i, w := range ws {
		l := w.Lease
		cur, has := rows.byMAC[l.MAC]
		if p := w.Prev; p != nil {
			changed := has != (p.IP != "") || has && (cur.IP != p.IP || cur.Expires.UnixMilli() != p.Expires.UnixMilli())
			if changed && has && cur.Expires.After(now) &&
				(w.Delete || cur.IP != l.IP || l.Expires.UnixMilli() < cur.Expires.UnixMilli()) {
				conflicts = append(conflicts, LeaseConflict{Index: i, Owner: cur})
				continue
			}
		}
		if w.Delete {
			drop(l.MAC)
			continue
		}
		if other, ok := rows.byIP[l.IP]; ok && other != l.MAC {
			o := rows.byMAC[other]
			if o.Expires.After(now) {
				conflicts = append(conflicts, LeaseConflict{Index: i, Owner: o})
				continue
			}
			drop(other)
		}
		drop(l.MAC)
		l.Expires = fromMillis(l.Expires.UnixMilli())
		rows.byMAC[l.MAC] = l
		rows.byIP[l.IP] = l.MAC
	}
	slices.Sort(touched)
	return conflicts, slices.Compact(touched)
}

// storeLeases makes the leases of the MACs touched what rows says: the
// old ones deleted, the new ones inserted.
func storeLeases(ctx context.Context, tx handle, rows leaseRows, touched []string) error {
	if len(touched) == 0 {
		return nil
	}
	var macs, ips, hosts []string
	var exps []int64
	for _, mac := range touched {
		if l, ok := rows.byMAC[mac]; ok {
			macs, ips, exps, hosts = append(macs, mac), append(ips, l.IP), append(exps, l.Expires.UnixMilli()), append(hosts, l.Hostname)
		}
	}
	var err error
	if tx.pg {
		if _, err = tx.ExecContext(ctx, `DELETE FROM leases WHERE mac = ANY(?::text[])`, touched); err != nil {
			return fmt.Errorf("delete the leases changed: %w", err)
		}
		if len(macs) > 0 {
			_, err = tx.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname)
				SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[])`, macs, ips, exps, hosts)
		}
	} else {
		args := make([]any, len(touched))
		for i, m := range touched {
			args[i] = m
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM leases WHERE mac IN (`+marks(len(touched))+`)`, args...); err != nil {
			return fmt.Errorf("delete the leases changed: %w", err)
		}
		if len(macs) > 0 {
			args = args[:0]
			for i := range macs {
				args = append(args, macs[i], ips[i], exps[i], hosts[i])
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO leases (mac, ip, expires_at, hostname) VALUES `+
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", len(macs)), ", "), args...)
		}
	}
	if err != nil {
		if tx.pg && isUnique(err) {
			// A lease written meanwhile without WriteLeases's locks:
			// the batch runs again and sees it.
			return fmt.Errorf("put the leases: %w: %w", errRetryTx, err)
		}
		return fmt.Errorf("put the leases: %w", err)
	}
	return nil
}

// errRetryTx marks an error after which txAt runs the transaction again.
var errRetryTx = errors.New("the transaction met another and runs again")

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
