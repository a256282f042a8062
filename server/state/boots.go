package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/overboot/overboot/boot"
)

// Boot is one boot of one machine: it starts when the machine asks for its
// script, and its phase and outcome follow the latest event.
type Boot struct {
	ID      int64     `json:"id"`
	MAC     string    `json:"mac"`
	Profile string    `json:"profile"`
	User    string    `json:"user,omitempty"`
	Address string    `json:"address"`
	Image   string    `json:"image,omitempty"` // digest of the root it was given
	Started time.Time `json:"started,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	Phase   string    `json:"phase"`
	Outcome string    `json:"outcome"` // running, ok, failed
	Message string    `json:"message,omitempty"`
}

// BootEvent is one step of a boot, seen by the server (script, kernel,
// initramfs, root, document, ...) or reported by the agent (its phases).
type BootEvent struct {
	At      time.Time `json:"at,omitzero"`
	Source  string    `json:"source"` // server or agent
	Phase   string    `json:"phase"`
	Outcome string    `json:"outcome"`
	Seconds float64   `json:"seconds,omitempty"`
	Bytes   int64     `json:"bytes,omitempty"`
	Message string    `json:"message,omitempty"`
}

// KeepBoots is how many boots per machine the store keeps: the console
// shows a machine's last 100.
const KeepBoots = 100

const bootCols = `id, mac, profile, user_name, address, image, started_at, updated_at, phase, outcome, message`

func scanBoot(row scanner) (Boot, error) {
	var b Boot
	var s, u int64
	err := row.Scan(&b.ID, &b.MAC, &b.Profile, &b.User, &b.Address, &b.Image, &s, &u, &b.Phase, &b.Outcome, &b.Message)
	b.Started, b.Updated = fromMillis(s), fromMillis(u)
	return b, err
}

// StartBoot records a new boot with its first event and returns it,
// dropping the machine's boots beyond KeepBoots.
func (d *DB) StartBoot(ctx context.Context, b Boot, first BootEvent) (Boot, error) {
	now := d.millis()
	b.Started, b.Updated = fromMillis(now), fromMillis(now)
	b.Phase, b.Outcome, b.Message = first.Phase, first.Outcome, first.Message
	err := d.tx(ctx, func(tx handle) error {
		// RETURNING, not LastInsertId: PostgreSQL's driver has none.
		if err := tx.QueryRowContext(ctx, `INSERT INTO boots (mac, profile, user_name, address, image, started_at, updated_at, phase, outcome, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			b.MAC, b.Profile, b.User, b.Address, b.Image, now, now, b.Phase, b.Outcome, b.Message).Scan(&b.ID); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, b.ID, now, first); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM boots WHERE mac = ? AND id <= (SELECT id FROM boots WHERE mac = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, b.MAC, b.MAC, KeepBoots)
		return err
	})
	return b, err
}

func insertEvent(ctx context.Context, tx handle, bootID, at int64, e BootEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO boot_events (boot_id, at, source, phase, outcome, seconds, bytes, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		bootID, at, e.Source, e.Phase, e.Outcome, e.Seconds, e.Bytes, e.Message)
	return err
}

// AddBootEvent appends an event to a boot and makes it the boot's current
// phase. It returns the boot as updated.
func (d *DB) AddBootEvent(ctx context.Context, bootID int64, e BootEvent) (Boot, error) {
	now := d.millis()
	var b Boot
	err := d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `UPDATE boots SET updated_at = ?, phase = ?, outcome = ?, message = ? WHERE id = ?`, now, e.Phase, e.Outcome, e.Message, bootID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("boot %d: %w", bootID, ErrNotFound)
		}
		if err := insertEvent(ctx, tx, bootID, now, e); err != nil {
			return err
		}
		b, err = scanBoot(tx.QueryRowContext(ctx, `SELECT `+bootCols+` FROM boots WHERE id = ?`, bootID))
		return err
	})
	return b, err
}

// SetBootUser records who logged in on a boot.
func (d *DB) SetBootUser(ctx context.Context, bootID int64, user string) error {
	_, err := d.w.ExecContext(ctx, `UPDATE boots SET user_name = ? WHERE id = ?`, user, bootID)
	return err
}

// BootByID returns one boot.
func (d *DB) BootByID(ctx context.Context, id int64) (Boot, error) {
	b, err := scanBoot(d.sql.QueryRowContext(ctx, `SELECT `+bootCols+` FROM boots WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Boot{}, fmt.Errorf("boot %d: %w", id, ErrNotFound)
	}
	return b, err
}

func (d *DB) queryBoots(ctx context.Context, q string, args ...any) ([]Boot, error) {
	return queryAll(ctx, d.sql, scanBoot, q, args...)
}

// Boots lists a machine's boots, newest first ("" = every machine's), at
// most limit.
func (d *DB) Boots(ctx context.Context, mac string, limit int) ([]Boot, error) {
	if mac == "" {
		return d.queryBoots(ctx, `SELECT `+bootCols+` FROM boots ORDER BY id DESC LIMIT ?`, limit)
	}
	return d.queryBoots(ctx, `SELECT `+bootCols+` FROM boots WHERE mac = ? ORDER BY id DESC LIMIT ?`, mac, limit)
}

// LatestBoots returns each machine's latest boot, by MAC.
func (d *DB) LatestBoots(ctx context.Context) ([]Boot, error) {
	return d.queryBoots(ctx, `SELECT `+bootCols+` FROM boots WHERE id IN (SELECT MAX(id) FROM boots GROUP BY mac) ORDER BY mac`)
}

// ActiveBoots lists the boots updated at or after since that have not
// failed and not reached the phase done (the hand-over, after which the
// agent reports nothing), by MAC then ID.
func (d *DB) ActiveBoots(ctx context.Context, since time.Time, done string) ([]Boot, error) {
	return d.queryBoots(ctx, `SELECT `+bootCols+` FROM boots WHERE outcome <> 'failed' AND phase <> ? AND updated_at >= ? ORDER BY mac, id`, done, since.UnixMilli())
}

// BootsUpdatedSince lists the boots updated at or after since, oldest
// update first, at most limit: what another server sharing the store
// recorded, for this one's status page.
func (d *DB) BootsUpdatedSince(ctx context.Context, since time.Time, limit int) ([]Boot, error) {
	return d.queryBoots(ctx, `SELECT `+bootCols+` FROM boots WHERE updated_at >= ? ORDER BY updated_at, id LIMIT ?`, since.UnixMilli(), limit)
}

const eventCols = `at, source, phase, outcome, seconds, bytes, message`

func scanEvent(row scanner, more ...any) (BootEvent, error) {
	var e BootEvent
	var at int64
	err := row.Scan(append(more, &at, &e.Source, &e.Phase, &e.Outcome, &e.Seconds, &e.Bytes, &e.Message)...)
	e.At = fromMillis(at)
	return e, err
}

// BootEvents lists a boot's events in order.
func (d *DB) BootEvents(ctx context.Context, bootID int64) ([]BootEvent, error) {
	return queryAll(ctx, d.sql, func(row scanner) (BootEvent, error) { return scanEvent(row) },
		`SELECT `+eventCols+` FROM boot_events WHERE boot_id = ? ORDER BY id`, bootID)
}

// MachineBootEvents returns the events of a machine's latest limit boots,
// by boot ID, each boot's in order: a machine page's waterfalls in one
// query.
func (d *DB) MachineBootEvents(ctx context.Context, mac string, limit int) (map[int64][]BootEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("boot events of %s: limit %d: want 1 or more", mac, limit)
	}
	type event struct {
		boot int64
		e    BootEvent
	}
	evs, err := queryAll(ctx, d.sql, func(row scanner) (event, error) {
		var ev event
		var err error
		ev.e, err = scanEvent(row, &ev.boot)
		return ev, err
	}, `SELECT boot_id, `+eventCols+` FROM boot_events WHERE boot_id IN (SELECT id FROM boots WHERE mac = ? ORDER BY id DESC LIMIT ?) ORDER BY boot_id, id`, mac, limit)
	if err != nil {
		return nil, fmt.Errorf("boot events of %s: %w", mac, err)
	}
	out := map[int64][]BootEvent{}
	for _, ev := range evs {
		out[ev.boot] = append(out[ev.boot], ev.e)
	}
	return out, nil
}

// RootTime is when a boot reached its root: the agent's switch_root.
type RootTime struct {
	BootID  int64
	MAC     string
	Profile string
	Image   string // digest of the root it was given
	Started time.Time
	Root    time.Time // the boot's first switch_root event
}

// RootTimes lists the boots started at or after since that reached the
// agent's switch_root (its last phase, which reports "running" only: then
// it hands over to the image's init), newest first, at most limit: the console's time
// to root.
func (d *DB) RootTimes(ctx context.Context, since time.Time, limit int) ([]RootTime, error) {
	if limit < 1 {
		return nil, fmt.Errorf("root times: limit %d: want 1 or more", limit)
	}
	rts, err := queryAll(ctx, d.sql, func(row scanner) (RootTime, error) {
		var rt RootTime
		var s, r int64
		err := row.Scan(&rt.BootID, &rt.MAC, &rt.Profile, &rt.Image, &s, &r)
		rt.Started, rt.Root = fromMillis(s), fromMillis(r)
		return rt, err
	}, `SELECT b.id, b.mac, b.profile, b.image, b.started_at, MIN(e.at) FROM boots b JOIN boot_events e ON e.boot_id = b.id
		WHERE b.started_at >= ? AND e.phase = ? AND e.source = 'agent'
		GROUP BY b.id, b.mac, b.profile, b.image, b.started_at
		ORDER BY b.started_at DESC, b.id DESC LIMIT ?`, since.UnixMilli(), boot.PhaseSwitchRoot, limit)
	if err != nil {
		return nil, fmt.Errorf("root times: %w", err)
	}
	return rts, nil
}

// BootImages lists the root digests of boots updated since since: the
// blobs machines may still be reading.
func (d *DB) BootImages(ctx context.Context, since time.Time) (map[string]bool, error) {
	return d.stringSet(ctx, `SELECT DISTINCT image FROM boots WHERE image <> '' AND updated_at >= ?`, since.UnixMilli())
}
