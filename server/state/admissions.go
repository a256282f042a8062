package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PolicyApprove is the policy of an admission an administrator granted
// (the others are granted by the request itself: open, open-insecure,
// login). Package server/config owns the names; the store keeps them as
// text.
const PolicyApprove = "approve"

// PolicyTPM is the policy of admissions whose machine is its TPM
// (enroll = tpm): their secrets go only to an attested boot.
const PolicyTPM = "tpm"

// policyLegacy marks admissions carried over from a store of an older
// version until AdoptLegacy gives them their profile's policy.
const policyLegacy = "legacy"

// Admission is a machine's admission to one profile: granted under one
// enrolment policy, it admits the machine to that profile under that
// policy and to nothing else. The secrets handed out under it (the CHAP
// secret of the machine's disks of that profile, its stable SSH host
// keys) are its own.
type Admission struct {
	MAC     string `json:"mac"`
	Profile string `json:"profile"`
	// Policy is the enrolment policy that granted it (open,
	// open-insecure, approve, login): it stops counting when the
	// profile's policy changes.
	Policy string `json:"policy"`
	// Address is, under approve, the address the approval pinned: the
	// machine boots only from there. "" for an admission imported
	// without one (it pins the first address it boots from).
	Address string `json:"address,omitempty"`
	Secret  string `json:"-"` // CHAP secret of its disks; "" until one is needed
	// TargetSecret is the secret its disks' target proves itself with
	// (mutual CHAP), made with Secret.
	TargetSecret string    `json:"-"`
	HostKeys     string    `json:"-"` // stable SSH host keys (JSON, server/identity)
	Granted      time.Time `json:"granted,omitzero"`
	Seen         time.Time `json:"seen,omitzero"`
}

const admissionCols = `mac, profile, policy, address, chap_secret, target_secret, host_keys, granted_at, seen_at`

func scanAdmission(row scanner) (Admission, error) {
	var a Admission
	var g, s int64
	err := row.Scan(&a.MAC, &a.Profile, &a.Policy, &a.Address, &a.Secret, &a.TargetSecret, &a.HostKeys, &g, &s)
	a.Granted, a.Seen = fromMillis(g), fromMillis(s)
	return a, err
}

// Request is a request for approval: a machine asked to boot a profile
// with enroll = approve from an address it is not admitted at. Requests
// are kept per address, so an administrator approves the one they
// checked, not whichever asked last.
type Request struct {
	MAC      string    `json:"mac"`
	Profile  string    `json:"profile"`
	Address  string    `json:"address"`
	Hostname string    `json:"hostname,omitempty"` // as the request said
	UUID     string    `json:"uuid,omitempty"`
	First    time.Time `json:"first,omitzero"`
	Seen     time.Time `json:"seen,omitzero"`
	Asked    int       `json:"asked"` // how many times
	// Conflict: the machine is admitted to the profile at another
	// address, and this request was refused.
	Conflict bool `json:"conflict,omitempty"`
}

const requestCols = `mac, profile, address, hostname, uuid, first_at, seen_at, asked, conflict`

func scanRequest(row scanner) (Request, error) {
	var r Request
	var f, s int64
	err := row.Scan(&r.MAC, &r.Profile, &r.Address, &r.Hostname, &r.UUID, &f, &s, &r.Asked, &r.Conflict)
	r.First, r.Seen = fromMillis(f), fromMillis(s)
	return r, err
}

// MaxRequestAddresses bounds the requests kept for one machine and
// profile: past it, the one seen least recently is forgotten (a real
// machine asks again every 30 seconds).
const MaxRequestAddresses = 16

// Admission returns mac's admission to profile.
func (d *DB) Admission(ctx context.Context, mac, profile string) (Admission, error) {
	a, err := scanAdmission(d.sql.QueryRowContext(ctx, `SELECT `+admissionCols+` FROM admissions WHERE mac = ? AND profile = ?`, mac, profile))
	if errors.Is(err, sql.ErrNoRows) {
		return Admission{}, fmt.Errorf("machine %s in profile %s: %w", mac, profile, ErrNotFound)
	}
	return a, err
}

// Admissions lists the admissions of one machine, or of all ("").
func (d *DB) Admissions(ctx context.Context, mac string) ([]Admission, error) {
	if mac == "" {
		return queryAll(ctx, d.sql, scanAdmission, `SELECT `+admissionCols+` FROM admissions ORDER BY mac, profile`)
	}
	return queryAll(ctx, d.sql, scanAdmission, `SELECT `+admissionCols+` FROM admissions WHERE mac = ? ORDER BY profile`, mac)
}

// Requests lists the requests for approval of one machine, or of all ("").
func (d *DB) Requests(ctx context.Context, mac string) ([]Request, error) {
	if mac == "" {
		return queryAll(ctx, d.sql, scanRequest, `SELECT `+requestCols+` FROM requests ORDER BY mac, profile, seen_at DESC`)
	}
	return queryAll(ctx, d.sql, scanRequest, `SELECT `+requestCols+` FROM requests WHERE mac = ? ORDER BY profile, seen_at DESC`, mac)
}

// checkQuota refuses a machine that would be one more than q.Machines in
// profile (admitted or asking). A machine already counted there passes.
func checkQuota(ctx context.Context, tx handle, mac, profile string, q Quota) error {
	if q.Machines <= 0 {
		return nil
	}
	var in bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM admissions WHERE profile = ? AND mac = ?) OR EXISTS (SELECT 1 FROM requests WHERE profile = ? AND mac = ?)`,
		profile, mac, profile, mac).Scan(&in); err != nil || in {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT mac FROM admissions WHERE profile = ? UNION SELECT mac FROM requests WHERE profile = ?) AS counted`,
		profile, profile).Scan(&n); err != nil {
		return err
	}
	if n >= q.Machines {
		return fmt.Errorf("profile %s has its %d machines (max-machines): %w", profile, q.Machines, ErrQuota)
	}
	return nil
}

// Enter admits m to m.Profile under policy, a policy under which a
// request admits itself (open, open-insecure, login), and records the
// request's names in the machine's row. An admission to the profile
// under another policy is replaced, secrets and all: what was handed out
// under one policy does not carry over to another. A new admission
// counts against q.Machines; past it nothing is recorded.
func (d *DB) Enter(ctx context.Context, m Machine, policy string, q Quota) (Admission, error) {
	if policy == PolicyApprove {
		return Admission{}, errors.New("state: an approve admission is granted by Approve, not by a request")
	}
	now := d.millis()
	var out Admission
	err := d.tx(ctx, func(tx handle) error {
		old, err := scanAdmission(tx.QueryRowContext(ctx, `SELECT `+admissionCols+` FROM admissions WHERE mac = ? AND profile = ?`, m.MAC, m.Profile))
		switch {
		case err == nil && old.Policy == policy:
			if _, err := tx.ExecContext(ctx, `UPDATE admissions SET seen_at = ? WHERE mac = ? AND profile = ?`, now, m.MAC, m.Profile); err != nil {
				return err
			}
		case err == nil || errors.Is(err, sql.ErrNoRows):
			if err := checkQuota(ctx, tx, m.MAC, m.Profile, q); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO admissions (`+admissionCols+`) VALUES (?, ?, ?, ?, '', '', '', ?, ?)
				ON CONFLICT (mac, profile) DO UPDATE SET policy = excluded.policy, address = excluded.address, chap_secret = '', target_secret = '', host_keys = '', granted_at = excluded.granted_at, seen_at = excluded.seen_at`,
				m.MAC, m.Profile, policy, m.Address, now, now); err != nil {
				return err
			}
		default:
			return err
		}
		if err := d.upsertMachine(ctx, tx, m, now); err != nil {
			return err
		}
		out, err = scanAdmission(tx.QueryRowContext(ctx, `SELECT `+admissionCols+` FROM admissions WHERE mac = ? AND profile = ?`, m.MAC, m.Profile))
		return err
	})
	return out, err
}

// Refresh records that m booted m.Profile under the admission it holds:
// seen times and the request's names. pin records m.Address as the
// admission's address (an imported admission's first boot).
func (d *DB) Refresh(ctx context.Context, m Machine, pin bool) error {
	now := d.millis()
	return d.tx(ctx, func(tx handle) error {
		q := `UPDATE admissions SET seen_at = ? WHERE mac = ? AND profile = ?`
		args := []any{now, m.MAC, m.Profile}
		if pin {
			q = `UPDATE admissions SET seen_at = ?, address = ? WHERE mac = ? AND profile = ? AND address = ''`
			args = []any{now, m.Address, m.MAC, m.Profile}
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("machine %s in profile %s: %w", m.MAC, m.Profile, ErrNotFound)
		}
		return d.upsertMachine(ctx, tx, m, now)
	})
}

// Ask records a request for approval (within q.Machines for a machine
// new to the profile, and MaxRequestAddresses per machine). A machine
// the store does not know yet gets a row with the request's names; a
// known machine's row is left as it is.
func (d *DB) Ask(ctx context.Context, r Request, q Quota) error {
	now := d.millis()
	return d.tx(ctx, func(tx handle) error {
		if err := checkQuota(ctx, tx, r.MAC, r.Profile, q); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE requests SET seen_at = ?, asked = asked + 1, hostname = ?, uuid = ?, conflict = ? WHERE mac = ? AND profile = ? AND address = ?`,
			now, r.Hostname, r.UUID, r.Conflict, r.MAC, r.Profile, r.Address)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM requests WHERE mac = ? AND profile = ?`, r.MAC, r.Profile).Scan(&n); err != nil {
				return err
			}
			if n >= MaxRequestAddresses {
				if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE mac = ? AND profile = ? AND address = (
					SELECT address FROM requests WHERE mac = ? AND profile = ? ORDER BY seen_at, address LIMIT 1)`,
					r.MAC, r.Profile, r.MAC, r.Profile); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO requests (`+requestCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)`,
				r.MAC, r.Profile, r.Address, r.Hostname, r.UUID, now, now, r.Conflict); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO machines (`+machineCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, '') ON CONFLICT (mac) DO NOTHING`,
			r.MAC, r.Profile, r.Address, r.Hostname, r.UUID, now, now)
		return err
	})
}

// Approve grants the request of mac for profile from address: the
// machine is admitted to profile at address (within q.Machines), its
// requests for profile are settled, and the admission's secrets are
// cleared, so its next boot gets new ones (an earlier address may have
// seen the old). The caller ends the sessions the old secrets opened.
func (d *DB) Approve(ctx context.Context, mac, profile, address string, q Quota) (Admission, error) {
	now := d.millis()
	var out Admission
	err := d.tx(ctx, func(tx handle) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM requests WHERE mac = ? AND profile = ? AND address = ?`, mac, profile, address).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no request of machine %s for profile %s from %s: %w", mac, profile, address, ErrNotFound)
		}
		var admitted int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM admissions WHERE profile = ? AND mac <> ?`, profile, mac).Scan(&admitted); err != nil {
			return err
		}
		if q.Machines > 0 && admitted >= q.Machines {
			return fmt.Errorf("profile %s has its %d machines (max-machines): %w", profile, q.Machines, ErrQuota)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO admissions (`+admissionCols+`) VALUES (?, ?, ?, ?, '', '', '', ?, ?)
			ON CONFLICT (mac, profile) DO UPDATE SET policy = excluded.policy, address = excluded.address, chap_secret = '', target_secret = '', host_keys = '', granted_at = excluded.granted_at`,
			mac, profile, PolicyApprove, address, now, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE mac = ? AND profile = ?`, mac, profile); err != nil {
			return err
		}
		var err error
		out, err = scanAdmission(tx.QueryRowContext(ctx, `SELECT `+admissionCols+` FROM admissions WHERE mac = ? AND profile = ?`, mac, profile))
		return err
	})
	return out, err
}

// SetAdmissionSecret stores the CHAP secrets of mac's disks of profile:
// the initiator's, and the target's (mutual CHAP).
func (d *DB) SetAdmissionSecret(ctx context.Context, mac, profile, secret, target string) error {
	res, err := d.w.ExecContext(ctx, `UPDATE admissions SET chap_secret = ?, target_secret = ? WHERE mac = ? AND profile = ?`, secret, target, mac, profile)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("machine %s in profile %s: %w", mac, profile, ErrNotFound)
	}
	return nil
}

// ClearSecrets forgets the CHAP secrets of all of mac's admissions: each
// disk gets a new one when next needed. It returns how many it cleared.
func (d *DB) ClearSecrets(ctx context.Context, mac string) (int64, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE admissions SET chap_secret = '', target_secret = '' WHERE mac = ? AND (chap_secret <> '' OR target_secret <> '')`, mac)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// SetHostKeys stores the stable host keys of mac's admission to profile
// unless it has some: the first boot's stay. It returns the keys as
// stored.
func (d *DB) SetHostKeys(ctx context.Context, mac, profile, keys string) (string, error) {
	var out string
	err := d.tx(ctx, func(tx handle) error {
		if _, err := tx.ExecContext(ctx, `UPDATE admissions SET host_keys = CASE WHEN host_keys = '' THEN ? ELSE host_keys END WHERE mac = ? AND profile = ?`, keys, mac, profile); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT host_keys FROM admissions WHERE mac = ? AND profile = ?`, mac, profile).Scan(&out)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %s in profile %s: %w", mac, profile, ErrNotFound)
		}
		return err
	})
	return out, err
}

// AdoptLegacy gives the admissions carried over from an older store the
// policy their profile has now (policyOf returns "" for a profile that is
// gone: those admissions are dropped). It returns how many it adopted and
// dropped.
func (d *DB) AdoptLegacy(ctx context.Context, policyOf func(profile string) string) (adopted, dropped int, err error) {
	err = d.tx(ctx, func(tx handle) error {
		adopted, dropped = 0, 0 // afresh if PostgreSQL runs it again
		old, err := queryAll(ctx, tx, scanAdmission, `SELECT `+admissionCols+` FROM admissions WHERE policy = ?`, policyLegacy)
		if err != nil {
			return err
		}
		for _, a := range old {
			p := policyOf(a.Profile)
			q, args := `UPDATE admissions SET policy = ? WHERE mac = ? AND profile = ?`, []any{p, a.MAC, a.Profile}
			if p == "" {
				q, args = `DELETE FROM admissions WHERE mac = ? AND profile = ?`, []any{a.MAC, a.Profile}
				dropped++
			} else {
				adopted++
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	return adopted, dropped, err
}

// AddAdmission inserts an admission as is (imports, tests): Policy ""
// is an admission of an older version, adopted by AdoptLegacy.
func (d *DB) AddAdmission(ctx context.Context, a Admission) error {
	if a.Policy == "" {
		a.Policy = policyLegacy
	}
	now := d.millis()
	_, err := d.w.ExecContext(ctx, `INSERT INTO admissions (`+admissionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.MAC, a.Profile, a.Policy, a.Address, a.Secret, a.TargetSecret, a.HostKeys, now, now)
	if isUnique(err) {
		return fmt.Errorf("machine %s in profile %s: %w", a.MAC, a.Profile, ErrExists)
	}
	return err
}

// Forget says what Prune forgets.
type Forget struct {
	// RequestsSeenBefore: requests for approval not repeated since.
	RequestsSeenBefore time.Time
	// AdmissionsSeenBefore: admissions a request granted itself (open,
	// open-insecure, login) of machines that have not booted since and
	// hold no disk of that profile. Approvals stay until an administrator
	// deletes the machine. Zero: none.
	AdmissionsSeenBefore time.Time
}

// Pruned counts what Prune forgot.
type Pruned struct {
	Requests, Admissions, Machines, Boots int64
}

// Prune forgets what f says, then the machines left with no admission,
// no request and no disk, and their boots: made-up MACs do not stay for
// ever.
func (d *DB) Prune(ctx context.Context, f Forget) (Pruned, error) {
	var p Pruned
	err := d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE seen_at < ?`, f.RequestsSeenBefore.UnixMilli())
		if err != nil {
			return err
		}
		p.Requests, _ = res.RowsAffected()
		if !f.AdmissionsSeenBefore.IsZero() {
			res, err := tx.ExecContext(ctx, `DELETE FROM admissions WHERE policy NOT IN (?, ?) AND seen_at < ?
				AND NOT EXISTS (SELECT 1 FROM disks WHERE disks.owner_kind = ? AND disks.owner = admissions.mac AND disks.profile = admissions.profile)`,
				PolicyApprove, policyLegacy, f.AdmissionsSeenBefore.UnixMilli(), OwnerMachine)
			if err != nil {
				return err
			}
			p.Admissions, _ = res.RowsAffected()
		}
		res, err = tx.ExecContext(ctx, `DELETE FROM machines WHERE
			NOT EXISTS (SELECT 1 FROM admissions WHERE admissions.mac = machines.mac)
			AND NOT EXISTS (SELECT 1 FROM requests WHERE requests.mac = machines.mac)
			AND NOT EXISTS (SELECT 1 FROM disks WHERE disks.owner_kind = ? AND disks.owner = machines.mac)`, OwnerMachine)
		if err != nil {
			return err
		}
		p.Machines, _ = res.RowsAffected()
		// The boots of machines it no longer knows (their events go with
		// them: ON DELETE CASCADE).
		res, err = tx.ExecContext(ctx, `DELETE FROM boots WHERE NOT EXISTS (SELECT 1 FROM machines WHERE machines.mac = boots.mac)`)
		if err != nil {
			return err
		}
		p.Boots, _ = res.RowsAffected()
		return nil
	})
	return p, err
}
