package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
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

// IsPostgres reports whether a store's location names PostgreSQL: a
// postgres:// or postgresql:// URL, or a keyword/value connection string
// ("host=/run/postgresql dbname=overboot").
func IsPostgres(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://") || strings.Contains(where, "=")
}

// passwordKV finds a password in a keyword/value connection string.
var passwordKV = regexp.MustCompile(`(^|\s)(ssl)?password\s*=`)

// ErrPasswordInURL: a store's connection string carries a password,
// which would then be in a config file, a command line or a log.
var ErrPasswordInURL = errors.New("the connection string has a password in it")

// CheckPostgres checks a PostgreSQL connection string as a store's
// location: it parses, and it carries no password (the password comes
// from a file or the PG environment: PGPASSWORD, PGPASSFILE, ~/.pgpass).
func CheckPostgres(conn string) error {
	red := Redact(conn)
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return fmt.Errorf("store %s: not a URL: want postgres://USER@HOST/DB?sslmode=...", red)
		}
		if _, ok := u.User.Password(); ok {
			return fmt.Errorf("store %s: %w", red, ErrPasswordInURL)
		}
		q := u.Query()
		if q.Has("password") || q.Has("sslpassword") {
			return fmt.Errorf("store %s: %w", red, ErrPasswordInURL)
		}
	} else if passwordKV.MatchString(conn) {
		return fmt.Errorf("store %s: %w", red, ErrPasswordInURL)
	}
	if _, err := pgx.ParseConfig(conn); err != nil {
		// pgx's message shows the string with any password masked.
		return fmt.Errorf("store %s: %w", red, err)
	}
	return nil
}

// Redact returns a connection string with any password in it replaced
// by xxxxx: the only form of it that goes into a message or a log.
func Redact(conn string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return conn[:strings.Index(conn, "://")+3] + "(a URL that does not parse)"
		}
		q := u.Query()
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.Redacted()
	}
	return redactKV.ReplaceAllString(conn, "${1}${2}password=xxxxx")
}

var redactKV = regexp.MustCompile(`(^|\s)(ssl)?password\s*=\s*('(\\.|[^'])*'|\S*)`)

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
	if err := d.migrate(ctx); err != nil {
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
