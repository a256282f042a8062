package state

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// TPM is a machine's TPM enrolment (enroll = tpm): the endorsement key
// (EK) its boots must prove, by its fingerprint (sha256:HEX of the
// public key's PKIX DER).
type TPM struct {
	MAC string `json:"mac"`
	// EK is the pinned EK's fingerprint; "" until one is approved (or
	// pinned at first use).
	EK string `json:"ek,omitempty"`
	// Pending is an EK that asked and waits for an administrator, and
	// the address it asked from.
	Pending        string `json:"pending,omitempty"`
	PendingAddress string `json:"pending_address,omitempty"`
	// Baseline is the firmware PCRs of the first attested boot since the
	// EK was pinned (JSON, package server/attest); "" records the next.
	Baseline string `json:"-"`
	// Refused is the last other EK that showed this MAC, refused, from
	// RefusedAddress; Refusals counts them all.
	Refused        string    `json:"refused,omitempty"`
	RefusedAddress string    `json:"refused_address,omitempty"`
	Refusals       int       `json:"refusals,omitempty"`
	Updated        time.Time `json:"updated,omitzero"`
}

const tpmCols = `mac, ek, pending, pending_address, baseline, refused, refused_address, refusals, updated_at`

func scanTPM(row scanner) (TPM, error) {
	var t TPM
	var u int64
	err := row.Scan(&t.MAC, &t.EK, &t.Pending, &t.PendingAddress, &t.Baseline, &t.Refused, &t.RefusedAddress, &t.Refusals, &u)
	t.Updated = fromMillis(u)
	return t, err
}

// TPMOf returns mac's TPM enrolment.
func (d *DB) TPMOf(ctx context.Context, mac string) (TPM, error) {
	t, err := scanTPM(d.sql.QueryRowContext(ctx, `SELECT `+tpmCols+` FROM tpms WHERE mac = ?`, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return TPM{}, fmt.Errorf("TPM of machine %s: %w", mac, ErrNotFound)
	}
	return t, err
}

// TPMs lists the TPM enrolments of all machines.
func (d *DB) TPMs(ctx context.Context) ([]TPM, error) {
	return queryAll(ctx, d.sql, scanTPM, `SELECT `+tpmCols+` FROM tpms ORDER BY mac`)
}

// ErrTPMPinned: the machine's TPM enrolment already pins another EK.
var ErrTPMPinned = errors.New("the machine is enrolled with another TPM")

// ensureTPM makes mac's row if it has none.
func (d *DB) ensureTPM(ctx context.Context, tx handle, mac string, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO tpms (mac, updated_at) VALUES (?, ?) ON CONFLICT (mac) DO NOTHING`, mac, now)
	return err
}

// AskTPM records ek, shown by mac from address, as waiting for approval.
// A machine whose enrolment pins an EK is left as it is (ErrTPMPinned).
func (d *DB) AskTPM(ctx context.Context, mac, ek, address string) error {
	now := d.millis()
	return d.tx(ctx, func(tx handle) error {
		if err := d.ensureTPM(ctx, tx, mac, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE tpms SET pending = ?, pending_address = ?, updated_at = ? WHERE mac = ? AND ek = ''`, ek, address, now, mac)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("machine %s: %w", mac, ErrTPMPinned)
		}
		return nil
	})
}

// PinTPM pins ek as mac's TPM (trust on first use): only a machine whose
// enrolment pins none yet (else ErrTPMPinned, unless it is ek already).
func (d *DB) PinTPM(ctx context.Context, mac, ek string) error {
	now := d.millis()
	return d.tx(ctx, func(tx handle) error {
		if err := d.ensureTPM(ctx, tx, mac, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE tpms SET ek = ?, pending = '', pending_address = '', baseline = '', updated_at = ? WHERE mac = ? AND ek = ''`, ek, now, mac)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var have string
		if err := tx.QueryRowContext(ctx, `SELECT ek FROM tpms WHERE mac = ?`, mac).Scan(&have); err != nil {
			return err
		}
		if have != ek {
			return fmt.Errorf("machine %s: %w", mac, ErrTPMPinned)
		}
		return nil
	})
}

// ErrTPMNotShown: the EK an administrator named is not one this
// machine showed (neither waiting, nor refused, nor pinned).
var ErrTPMNotShown = errors.New("that EK is not the one waiting")

// ApproveTPM is an administrator's approval of mac's TPM; it clears the
// firmware baseline, so the next attested boot records a new one. ek
// names the EK approved (its fingerprint): the one waiting, the last one
// refused under this MAC (the machine's TPM was replaced), or the one
// pinned (the firmware was updated: only the baseline goes); another is
// ErrTPMNotShown, naming the waiting one. "" approves the EK waiting if
// there is one, else resets the pinned one's baseline. Naming it guards
// against a waiting EK replaced by someone else's between the
// administrator's look and the approval.
func (d *DB) ApproveTPM(ctx context.Context, mac, ek string) (TPM, error) {
	var out TPM
	err := d.tx(ctx, func(tx handle) error {
		t, err := scanTPM(tx.QueryRowContext(ctx, `SELECT `+tpmCols+` FROM tpms WHERE mac = ?`, mac))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no TPM of machine %s has shown itself (it does when the machine boots a profile with enroll = tpm): %w", mac, ErrNotFound)
		}
		if err != nil {
			return err
		}
		switch {
		case ek == "" && t.Pending != "":
			ek = t.Pending
		case ek == "" && t.EK != "":
			ek = t.EK
		case ek == "":
			return fmt.Errorf("no TPM of machine %s waits for approval: %w", mac, ErrNotFound)
		case ek != t.Pending && ek != t.Refused && ek != t.EK:
			waiting := "none waits"
			if t.Pending != "" {
				waiting = "the one waiting is " + t.Pending + " (from " + t.PendingAddress + ")"
			}
			return fmt.Errorf("machine %s: EK %s: %w: %s", mac, ek, ErrTPMNotShown, waiting)
		}
		refused := t.Refused
		if refused == ek {
			refused = ""
		}
		pending, pendingAddr := t.Pending, t.PendingAddress
		if pending == ek {
			pending, pendingAddr = "", ""
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tpms SET ek = ?, pending = ?, pending_address = ?, refused = ?, baseline = '', updated_at = ? WHERE mac = ?`,
			ek, pending, pendingAddr, refused, d.millis(), mac); err != nil {
			return err
		}
		if ek != t.EK {
			// Another TPM is the machine now: what the last one could
			// read (CHAP secrets, SSH host keys) is forgotten; its next
			// attested boot gets new ones.
			if _, err := tx.ExecContext(ctx, `UPDATE admissions SET chap_secret = '', target_secret = '', host_keys = '' WHERE mac = ? AND policy = ?`, mac, PolicyTPM); err != nil {
				return err
			}
		}
		out, err = scanTPM(tx.QueryRowContext(ctx, `SELECT `+tpmCols+` FROM tpms WHERE mac = ?`, mac))
		return err
	})
	return out, err
}

// RefuseTPM records that ek, another EK than the one mac's enrolment
// pins, showed mac from address, and was refused; nothing else changes.
func (d *DB) RefuseTPM(ctx context.Context, mac, ek, address string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE tpms SET refused = ?, refused_address = ?, refusals = refusals + 1, updated_at = ? WHERE mac = ?`, ek, address, d.millis(), mac)
	return err
}

// SetTPMBaseline records the firmware baseline of mac's TPM ek, if it
// has none yet (the first attested boot since its approval); false when
// another boot recorded one first, or ek is no longer pinned.
func (d *DB) SetTPMBaseline(ctx context.Context, mac, ek, baseline string) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE tpms SET baseline = ?, updated_at = ? WHERE mac = ? AND ek = ? AND baseline = ''`, baseline, d.millis(), mac, ek)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// AttestSession is one attestation between its challenge and its
// evidence: what the evidence is checked against. Secret is the
// credential's secret (only the machine's TPM can activate it): it seals
// the document, and is never logged.
type AttestSession struct {
	MAC, User, Profile string
	Address            string // only this address may spend it
	BootID             int64
	EK                 string // the fingerprint of the EK the challenge was made for
	AK                 []byte // the AK's TPMT_PUBLIC
	Nonce              []byte
	Secret             []byte
	Served             string // what the boot was served (JSON, server/attest)
	Expires            time.Time
}

// PutAttestSession stores a session by the hash of its evidence token.
func (d *DB) PutAttestSession(ctx context.Context, hash string, s AttestSession) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO attest_sessions (hash, mac, user_name, profile, address, boot_id, ek, ak, nonce, secret, served, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		hash, s.MAC, s.User, s.Profile, s.Address, s.BootID, s.EK, hex.EncodeToString(s.AK), hex.EncodeToString(s.Nonce), hex.EncodeToString(s.Secret), s.Served, s.Expires.UnixMilli())
	if err != nil {
		return err
	}
	// The expired ones go with the next session (best effort: Take
	// checks the time).
	d.w.ExecContext(ctx, `DELETE FROM attest_sessions WHERE expires_at < ?`, d.millis())
	return nil
}

// TakeAttestSession spends a session, as TakeBootToken spends a token:
// it must exist, not have expired and be spent from address (else
// ErrWrongAddress, and it stays); then it is gone.
func (d *DB) TakeAttestSession(ctx context.Context, hash, address string) (AttestSession, error) {
	var s AttestSession
	err := d.tx(ctx, func(tx handle) error {
		var exp int64
		var ak, nonce, secret string
		err := tx.QueryRowContext(ctx, `SELECT mac, user_name, profile, address, boot_id, ek, ak, nonce, secret, served, expires_at FROM attest_sessions WHERE hash = ?`, hash).
			Scan(&s.MAC, &s.User, &s.Profile, &s.Address, &s.BootID, &s.EK, &ak, &nonce, &secret, &s.Served, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("attestation session: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		switch {
		case d.millis() > exp:
			return fmt.Errorf("attestation session expired: %w", ErrNotFound)
		case s.Address != address:
			return fmt.Errorf("%w: handed to %s, spent from %s", ErrWrongAddress, s.Address, address)
		}
		s.Expires = fromMillis(exp)
		for _, f := range []struct {
			dst *[]byte
			src string
		}{{&s.AK, ak}, {&s.Nonce, nonce}, {&s.Secret, secret}} {
			if *f.dst, err = hex.DecodeString(f.src); err != nil {
				return fmt.Errorf("attestation session: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM attest_sessions WHERE hash = ?`, hash)
		return err
	})
	if err != nil {
		return AttestSession{}, err
	}
	return s, nil
}
