package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Heartbeat is how often a running server tells the store it lives, and
// StaleAfter how long without one makes it down: three missed beats.
const (
	Heartbeat  = 10 * time.Second
	StaleAfter = 3 * Heartbeat
)

// ErrServerRunning is wrapped by Register's error when another process
// holds the name and beats.
var ErrServerRunning = errors.New("a server of that name is running")

// ErrServerTaken is wrapped by Beat's error when another process took the
// name over (this one missed its beats).
var ErrServerTaken = errors.New("another process took this server's name")

// ServerInfo is one server sharing the store, as it registered itself.
type ServerInfo struct {
	Name      string    `json:"name"`
	Instance  string    `json:"-"` // this run of its process (a random ID)
	URLs      []string  `json:"urls"`
	Portal    string    `json:"iscsi_portal,omitempty"` // host:port; "" when it serves no disks
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	Stopped   time.Time `json:"stopped,omitzero"` // zero while running
}

// Up reports whether s was running at now: not stopped, and beating.
func (s ServerInfo) Up(now time.Time) bool {
	return s.Stopped.IsZero() && now.Sub(s.Heartbeat) < StaleAfter
}

const serverCols = `name, instance, urls, iscsi_portal, version, started_at, heartbeat_at, stopped_at`

func scanServer(row scanner) (ServerInfo, error) {
	var s ServerInfo
	var urls string
	var st, hb, sp int64
	err := row.Scan(&s.Name, &s.Instance, &urls, &s.Portal, &s.Version, &st, &hb, &sp)
	s.URLs = strings.Fields(urls)
	s.Started, s.Heartbeat, s.Stopped = fromMillis(st), fromMillis(hb), fromMillis(sp)
	return s, err
}

// Register records s as running now under s.Name and s.Instance. It
// refuses (ErrServerRunning) while another instance holds the name and its
// heartbeat is fresh: two processes under one name would be one server to
// the machines whose disks live there. An instance of the form DIR.RUN
// names its data directory (DIR) and its process (RUN): a new process on
// the same data directory takes the name over at once, as the directory's
// lock says the one before it is gone (a restart after kill -9 does not
// wait for its heartbeat to go stale).
func (d *DB) Register(ctx context.Context, s ServerInfo) error {
	if s.Name == "" || s.Instance == "" {
		return errors.New("register: a server needs a name and an instance")
	}
	for _, u := range s.URLs {
		if strings.ContainsAny(u, " \t\n") {
			return fmt.Errorf("register: URL %q has white space", u)
		}
	}
	return d.tx(ctx, func(tx handle) error {
		now := d.now()
		cur, err := scanServer(tx.QueryRowContext(ctx, `SELECT `+serverCols+` FROM servers WHERE name = ?`, s.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case cur.Instance != s.Instance && cur.Up(now) && !sameDataDir(cur.Instance, s.Instance):
			return fmt.Errorf("server %s: %w (heartbeat %s ago): give this one another [server] name, or stop the other",
				s.Name, ErrServerRunning, now.Sub(cur.Heartbeat).Round(time.Second))
		}
		ms := now.UnixMilli()
		_, err = tx.ExecContext(ctx, `INSERT INTO servers (`+serverCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, 0)
			ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, urls = excluded.urls,
				iscsi_portal = excluded.iscsi_portal, version = excluded.version,
				started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = 0`,
			s.Name, s.Instance, strings.Join(s.URLs, " "), s.Portal, s.Version, ms, ms)
		return err
	})
}

// Beat records that the server name, run instance, still lives. It fails
// with ErrServerTaken when another instance registered the name since.
func (d *DB) Beat(ctx context.Context, name, instance string) error {
	return d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `UPDATE servers SET heartbeat_at = ? WHERE name = ? AND instance = ? AND stopped_at = 0`,
			d.millis(), name, instance)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("server %s: %w", name, ErrServerTaken)
		}
		return nil
	})
}

// Unregister records that the server name, run instance, stopped; its row
// stays (its disks still name it as their home). Another instance's row
// is left alone.
func (d *DB) Unregister(ctx context.Context, name, instance string) error {
	return d.tx(ctx, func(tx handle) error {
		_, err := tx.ExecContext(ctx, `UPDATE servers SET stopped_at = ? WHERE name = ? AND instance = ?`, d.millis(), name, instance)
		return err
	})
}

// Servers lists the servers that ever registered, by name.
func (d *DB) Servers(ctx context.Context) ([]ServerInfo, error) {
	return queryAll(ctx, d.sql, scanServer, `SELECT `+serverCols+` FROM servers ORDER BY name`)
}

// Server returns the server registered under name.
func (d *DB) Server(ctx context.Context, name string) (ServerInfo, error) {
	s, err := scanServer(d.sql.QueryRowContext(ctx, `SELECT `+serverCols+` FROM servers WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("server %s: %w", name, ErrNotFound)
	}
	return s, err
}

// ForgetServer removes a stopped or silent server's row. It refuses while
// the server is up.
func (d *DB) ForgetServer(ctx context.Context, name string) error {
	return d.tx(ctx, func(tx handle) error {
		cur, err := scanServer(tx.QueryRowContext(ctx, `SELECT `+serverCols+` FROM servers WHERE name = ?`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("server %s: %w", name, ErrNotFound)
		} else if err != nil {
			return err
		}
		if cur.Up(d.now()) {
			return fmt.Errorf("server %s: %w (heartbeat %s ago): stop it first", name, ErrServerRunning, d.now().Sub(cur.Heartbeat).Round(time.Second))
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM servers WHERE name = ?`, name)
		return err
	})
}

// sameDataDir reports whether two instances (DIR.RUN) are runs on one
// data directory.
func sameDataDir(a, b string) bool {
	da, _, okA := strings.Cut(a, ".")
	db, _, okB := strings.Cut(b, ".")
	return okA && okB && da != "" && da == db
}
