package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Enrolment is a machine's standing with the server.
type Enrolment string

// Enrolment states.
const (
	// Pending: the machine asked to boot a profile with enroll = approve
	// and waits for an administrator. It gets no disk and no secret.
	Pending Enrolment = "pending"
	// Enrolled: admitted (approved, or booted an open profile).
	Enrolled Enrolment = "enrolled"
)

// Machine is what the server keeps about one machine.
type Machine struct {
	MAC       string    `json:"mac"` // aa:bb:cc:dd:ee:ff
	Profile   string    `json:"profile"`
	Enrolment Enrolment `json:"enrolment"`
	// Address is where the machine asked from: for a pending machine its
	// latest request; once approved, the address the approval pinned.
	Address  string    `json:"address"`
	Hostname string    `json:"hostname,omitempty"`
	UUID     string    `json:"uuid,omitempty"`
	Secret   string    `json:"-"` // CHAP secret of its own disk; "" until it has one
	Created  time.Time `json:"created"`
	Seen     time.Time `json:"seen"`
	// MachineID is stable across its boots (machine-id(5)); HostKeys are
	// its SSH host keys (JSON, server/identity), made once it is admitted.
	MachineID string `json:"machine_id,omitempty"`
	HostKeys  string `json:"-"`
}

const machineCols = `mac, profile, enrolment, address, hostname, uuid, chap_secret, created_at, seen_at, machine_id, host_keys`

func scanMachine(row interface{ Scan(...any) error }) (Machine, error) {
	var m Machine
	var created, seen int64
	err := row.Scan(&m.MAC, &m.Profile, &m.Enrolment, &m.Address, &m.Hostname, &m.UUID, &m.Secret, &created, &seen, &m.MachineID, &m.HostKeys)
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
	rows, err := d.sql.QueryContext(ctx, `SELECT `+machineCols+` FROM machines ORDER BY mac`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Machine
	for rows.Next() {
		m, err := scanMachine(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ErrQuota is wrapped by refusals past a profile's quota.
var ErrQuota = errors.New("quota exceeded")

// Quota bounds what a profile's machines can create; zero fields are
// unlimited.
type Quota struct {
	Machines  int   // machine records (pending or enrolled)
	Disks     int   // disks of the profile, whoever owns them
	DiskBytes int64 // their total size
}

// SeeMachine records that a machine asked to boot profile from address:
// a new machine is added with enrolment e (within q.Machines for the
// profile); a known one has its profile, address (only while pending),
// hostname, UUID and seen time updated. It returns the machine as stored.
func (d *DB) SeeMachine(ctx context.Context, m Machine, e Enrolment, q Quota) (Machine, error) {
	now := d.millis()
	var out Machine
	err := d.tx(ctx, func(tx *sql.Tx) error {
		old, err := scanMachine(tx.QueryRowContext(ctx, `SELECT `+machineCols+` FROM machines WHERE mac = ?`, m.MAC))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if q.Machines > 0 {
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM machines WHERE profile = ?`, m.Profile).Scan(&n); err != nil {
					return err
				}
				if n >= q.Machines {
					return fmt.Errorf("profile %s has its %d machines: %w", m.Profile, q.Machines, ErrQuota)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO machines (`+machineCols+`) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, '', '')`,
				m.MAC, m.Profile, e, m.Address, m.Hostname, m.UUID, now, now)
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			addr := old.Address
			if old.Enrolment == Pending {
				addr = m.Address
			}
			if _, err := tx.ExecContext(ctx, `UPDATE machines SET profile = ?, address = ?, hostname = ?, uuid = ?, seen_at = ? WHERE mac = ?`,
				m.Profile, addr, m.Hostname, m.UUID, now, m.MAC); err != nil {
				return err
			}
		}
		out, err = scanMachine(tx.QueryRowContext(ctx, `SELECT `+machineCols+` FROM machines WHERE mac = ?`, m.MAC))
		return err
	})
	return out, err
}

// Approve admits a pending machine. The address it last asked from is
// pinned: its later requests from elsewhere are pending again.
func (d *DB) Approve(ctx context.Context, mac string) (Machine, error) {
	var out Machine
	err := d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE machines SET enrolment = ? WHERE mac = ?`, Enrolled, mac)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("machine %s: %w (it is recorded when it first asks to boot)", mac, ErrNotFound)
		}
		out, err = scanMachine(tx.QueryRowContext(ctx, `SELECT `+machineCols+` FROM machines WHERE mac = ?`, mac))
		return err
	})
	return out, err
}

// Repend puts an enrolled machine back to pending, recording the address
// it now asks from (an approved machine asking from another address).
func (d *DB) Repend(ctx context.Context, mac, address string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE machines SET enrolment = ?, address = ?, seen_at = ? WHERE mac = ?`, Pending, address, d.millis(), mac)
	return err
}

// PinAddress records the address an enrolled machine is admitted from.
func (d *DB) PinAddress(ctx context.Context, mac, address string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE machines SET address = ? WHERE mac = ?`, address, mac)
	return err
}

// SetIdentity stores a machine's machine-id and host keys; an empty
// argument leaves that column as it is. A value already set is kept: the
// first boot's identity stays (it returns the machine as stored).
func (d *DB) SetIdentity(ctx context.Context, mac, machineID, hostKeys string) (Machine, error) {
	var out Machine
	err := d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE machines SET
			machine_id = CASE WHEN machine_id = '' THEN ? ELSE machine_id END,
			host_keys = CASE WHEN host_keys = '' THEN ? ELSE host_keys END WHERE mac = ?`, machineID, hostKeys, mac); err != nil {
			return err
		}
		var err error
		out, err = scanMachine(tx.QueryRowContext(ctx, `SELECT `+machineCols+` FROM machines WHERE mac = ?`, mac))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %s: %w", mac, ErrNotFound)
		}
		return err
	})
	return out, err
}

// SetMachineSecret stores a machine's CHAP secret.
func (d *DB) SetMachineSecret(ctx context.Context, mac, secret string) error {
	res, err := d.w.ExecContext(ctx, `UPDATE machines SET chap_secret = ? WHERE mac = ?`, secret, mac)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("machine %s: %w", mac, ErrNotFound)
	}
	return nil
}

// AddMachine inserts a machine record as is (migration, tests).
func (d *DB) AddMachine(ctx context.Context, m Machine) error {
	now := d.millis()
	_, err := d.w.ExecContext(ctx, `INSERT INTO machines (`+machineCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.MAC, m.Profile, m.Enrolment, m.Address, m.Hostname, m.UUID, m.Secret, now, now, m.MachineID, m.HostKeys)
	if isUnique(err) {
		return fmt.Errorf("machine %s: %w", m.MAC, ErrExists)
	}
	return err
}

// DeleteMachine forgets a machine (its disks are the caller's to remove
// first: see server/disks).
func (d *DB) DeleteMachine(ctx context.Context, mac string) error {
	res, err := d.w.ExecContext(ctx, `DELETE FROM machines WHERE mac = ?`, mac)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("machine %s: %w", mac, ErrNotFound)
	}
	return nil
}

// PrunePending forgets pending machines not seen since before, so made-up
// requests do not fill the table.
func (d *DB) PrunePending(ctx context.Context, before time.Time) (int64, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM machines WHERE enrolment = ? AND seen_at < ? AND mac NOT IN (SELECT owner FROM disks WHERE owner_kind = 'machine')`, Pending, before.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
