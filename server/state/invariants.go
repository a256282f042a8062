package state

import (
	"context"
	"errors"
	"fmt"
)

// checkInvariants checks what the store itself keeps true, on either
// backend: one schema version, the one this overboot knows; disks of
// known kinds, owners and statuses, each ready one with a file; and on
// PostgreSQL, each identity column's next value past the ids in use (a
// copy that set ids by hand must move it on: see Copy).
func (d *DB) checkInvariants(ctx context.Context) error {
	var errs []error
	vs, err := queryAll(ctx, d.sql, func(row scanner) (int, error) {
		var v int
		return v, row.Scan(&v)
	}, `SELECT version FROM schema_version`)
	if err != nil {
		return fmt.Errorf("state: check: %w", err)
	}
	if len(vs) != 1 || vs[0] != SchemaVersion {
		errs = append(errs, fmt.Errorf("schema_version holds %v, want one row: %d", vs, SchemaVersion))
	}
	var n int
	if err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM disks WHERE status NOT IN (?, ?, ?) OR owner_kind NOT IN (?, ?) OR kind NOT IN (?, ?) OR (status = ? AND path = '')`,
		DiskCreating, DiskReady, DiskDeleting, OwnerMachine, OwnerUser, DiskUpper, DiskCow, DiskReady).Scan(&n); err != nil {
		return fmt.Errorf("state: check: %w", err)
	}
	if n > 0 {
		errs = append(errs, fmt.Errorf("%d disks of an unknown status, owner kind or kind, or ready without a file", n))
	}
	if d.pg != nil {
		for _, table := range identityTables {
			var max, last int64
			var seq string
			var called bool
			err := d.sql.QueryRowContext(ctx, `SELECT (SELECT COALESCE(MAX(id), 0) FROM `+table+`), pg_get_serial_sequence(?, 'id')`, table).Scan(&max, &seq)
			if err == nil {
				// seq is PostgreSQL's own (schema-qualified, quoted) name.
				err = d.sql.QueryRowContext(ctx, `SELECT last_value, is_called FROM `+seq).Scan(&last, &called)
			}
			if err != nil {
				return fmt.Errorf("state: check: %s's id sequence: %w", table, err)
			}
			next := last
			if called {
				next++
			}
			if next <= max {
				errs = append(errs, fmt.Errorf("%s: the next id would be %d, and ids up to %d are taken", table, next, max))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("state: check %s: %w", d, err)
	}
	return nil
}

// identityTables are the tables whose id the store assigns (INTEGER
// PRIMARY KEY in the schema).
var identityTables = []string{"disks", "boots", "boot_events"}
