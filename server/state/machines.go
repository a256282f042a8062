package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Machine is what the server keeps about one machine: its names and its
// identity. What it may boot is in its admissions (one per profile) and
// its requests for approval, not here.
type Machine struct {
	MAC string `json:"mac"` // aa:bb:cc:dd:ee:ff
	// Profile and Address are the profile of its latest admitted request
	// and the address that request came from; Hostname and UUID what
	// that request said. A request that was not admitted changes none of
	// them.
	Profile  string    `json:"profile"`
	Address  string    `json:"address"`
	Hostname string    `json:"hostname,omitempty"`
	UUID     string    `json:"uuid,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	Seen     time.Time `json:"seen,omitzero"`
	// MachineID is stable across its boots (machine-id(5)); not a secret.
	MachineID string `json:"machine_id,omitempty"`
}

const machineCols = `mac, profile, address, hostname, uuid, created_at, seen_at, machine_id`

func scanMachine(row scanner) (Machine, error) {
	var m Machine
	var created, seen int64
	err := row.Scan(&m.MAC, &m.Profile, &m.Address, &m.Hostname, &m.UUID, &created, &seen, &m.MachineID)
	m.Created, m.Seen = fromMillis(created), fromMillis(seen)
	return m, err
}

// Machine returns one machine by MAC.
func (d *DB) Machine(ctx context.Context, mac string) (Machine, error) {
	m, err := scanMachine(d.sql.QueryRowContext(ctx, `SELECT `+machineCols+` FROM machines WHERE mac = ?`, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return Machine{}, fmt.Errorf("machine %s: %w", mac, ErrNotFound)
	}
	return m, err
}

// Machines lists every machine by MAC.
func (d *DB) Machines(ctx context.Context) ([]Machine, error) {
	return queryAll(ctx, d.sql, scanMachine, `SELECT `+machineCols+` FROM machines ORDER BY mac`)
}

// scanner is a row to scan: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// stringSet runs a query of one text column and returns its values as a
// set.
func (d *DB) stringSet(ctx context.Context, query string, args ...any) (map[string]bool, error) {
	vs, err := queryAll(ctx, d.sql, func(row scanner) (string, error) {
		var s string
		return s, row.Scan(&s)
	}, query, args...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(vs))
	for _, v := range vs {
		out[v] = true
	}
	return out, nil
}

// ErrQuota is wrapped by refusals past a profile's quota.
var ErrQuota = errors.New("quota exceeded")

// Quota bounds what a profile's machines can create; zero fields are
// unlimited (package server/profiles gives every profile its defaults).
type Quota struct {
	Machines  int   // machines admitted to the profile or asking for it
	Disks     int   // disks of the profile, whoever owns them
	DiskBytes int64 // their total size
}

// SetMachineID stores a machine's machine-id unless it has one: the first
// boot's stays. It returns the machine-id as stored.
func (d *DB) SetMachineID(ctx context.Context, mac, machineID string) (string, error) {
	var out string
	err := d.tx(ctx, func(tx handle) error {
		if _, err := tx.ExecContext(ctx, `UPDATE machines SET machine_id = CASE WHEN machine_id = '' THEN ? ELSE machine_id END WHERE mac = ?`, machineID, mac); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT machine_id FROM machines WHERE mac = ?`, mac).Scan(&out)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %s: %w", mac, ErrNotFound)
		}
		return err
	})
	return out, err
}

// AddMachine inserts a machine record as is (migration, tests).
func (d *DB) AddMachine(ctx context.Context, m Machine) error {
	now := d.millis()
	_, err := d.w.ExecContext(ctx, `INSERT INTO machines (`+machineCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		m.MAC, m.Profile, m.Address, m.Hostname, m.UUID, now, now, m.MachineID)
	if isUnique(err) {
		return fmt.Errorf("machine %s: %w", m.MAC, ErrExists)
	}
	return err
}

// DeleteMachine forgets a machine, its admissions and its requests (its
// disks are the caller's to remove first: see server/disks).
func (d *DB) DeleteMachine(ctx context.Context, mac string) error {
	return d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM machines WHERE mac = ?`, mac)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("machine %s: %w", mac, ErrNotFound)
		}
		for _, q := range []string{`DELETE FROM admissions WHERE mac = ?`, `DELETE FROM requests WHERE mac = ?`} {
			if _, err := tx.ExecContext(ctx, q, mac); err != nil {
				return err
			}
		}
		return nil
	})
}

// upsertMachine records what an admitted request said of its machine:
// a new machine is added, a known one has its profile, address,
// hostname, UUID and seen time updated.
func (d *DB) upsertMachine(ctx context.Context, tx handle, m Machine, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO machines (`+machineCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, '')
		ON CONFLICT (mac) DO UPDATE SET profile = excluded.profile, address = excluded.address, hostname = excluded.hostname, uuid = excluded.uuid, seen_at = excluded.seen_at`,
		m.MAC, m.Profile, m.Address, m.Hostname, m.UUID, now, now)
	return err
}
