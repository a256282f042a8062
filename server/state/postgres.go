package state

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/overboot/overboot/server/state/pgurl"
)

// pgStore is where a PostgreSQL store is.
type pgStore struct {
	conn     string // the connection string, without a password
	password string // from a file, or "" for the PG environment
	redacted string // conn for messages
}

// maxPGConns bounds one server's connections to PostgreSQL (its default
// max_connections is 100: room for several servers and the CLI).
const maxPGConns = 16

// IsPostgres reports whether a store's location names PostgreSQL (see
// package pgurl).
func IsPostgres(where string) bool { return pgurl.Is(where) }

// ErrPasswordInURL: a store's connection string carries a password.
var ErrPasswordInURL = pgurl.ErrPassword

// Redact returns a connection string with any password masked.
func Redact(conn string) string { return pgurl.Redact(conn) }

// CheckPostgres checks a PostgreSQL connection string as a store's
// location: it carries no password (that comes from a file or the PG
// environment), and pgx parses it.
func CheckPostgres(conn string) error {
	if err := pgurl.Check(conn); err != nil {
		return fmt.Errorf("store %w", err)
	}
	if _, err := pgx.ParseConfig(conn); err != nil {
		// pgx's message shows the string with any password masked.
		return fmt.Errorf("store %s: %w", Redact(conn), err)
	}
	return nil
}

// ReadPasswordFile reads a store's password from path: its first line.
// The file must be readable by its owner only (0600 or 0400).
func ReadPasswordFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("store password: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return "", fmt.Errorf("store password file %s has mode %04o: others may read it; make it the server user's only (chmod 600 %s)", path, m, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("store password: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("store password file %s is empty", path)
	}
	return pw, nil
}

// OpenPostgres opens the PostgreSQL store conn names (a postgres:// URL
// or a keyword/value string, without a password; see CheckPostgres) and
// brings its schema up to date. password is the role's, or "" for the
// PG environment (PGPASSWORD, PGPASSFILE, ~/.pgpass), which pgx reads.
func OpenPostgres(ctx context.Context, conn, password string) (*DB, error) {
	return openPG(ctx, conn, password, true)
}

// OpenPostgresAsIs opens the PostgreSQL store conn names without changing
// its schema (for commands that only look): a store of another version
// than SchemaVersion, or none, is refused.
func OpenPostgresAsIs(ctx context.Context, conn, password string) (*DB, error) {
	return openPG(ctx, conn, password, false)
}

func openPG(ctx context.Context, conn, password string, migrate bool) (*DB, error) {
	if err := CheckPostgres(conn); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	red := Redact(conn)
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("state: store %s: %w", red, err)
	}
	if password != "" {
		cfg.Password = password
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxPGConns)
	db.SetMaxIdleConns(maxPGConns)
	h := handle{q: db, pg: true}
	d := &DB{sql: h, w: h, wdb: db, dbs: []*sql.DB{db}, pg: &pgStore{conn: conn, password: password, redacted: red}, now: time.Now}
	do := d.migrate
	if !migrate {
		do = d.checkVersion
	}
	if err := do(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("state: store %s: %w", red, err)
	}
	return d, nil
}

// Where says where a server's store is: in the PostgreSQL database
// Postgres names, with the password in PasswordFile (or else from the
// PG environment), or else (Postgres "") in the SQLite file FileName in
// the data directory Data.
type Where struct {
	Data         string
	Postgres     string
	PasswordFile string
}

// OpenStore opens the store w says.
func OpenStore(ctx context.Context, w Where) (*DB, error) {
	if w.Postgres == "" {
		return Open(filepath.Join(w.Data, FileName))
	}
	var pw string
	if w.PasswordFile != "" {
		var err error
		if pw, err = ReadPasswordFile(w.PasswordFile); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	return OpenPostgres(ctx, w.Postgres, pw)
}
