// Package pgurl reads the location of a PostgreSQL store as a config
// file or a command line gives it: a postgres:// URL or a keyword/value
// connection string, which must carry no password (it would then be in a
// file, a command line or a log), and which messages show redacted. It
// uses the standard library only, so that the config package can check a
// store's location without the SQL drivers.
package pgurl

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ErrPassword: a connection string carries a password.
var ErrPassword = errors.New("the connection string has a password in it: put it in a file (store-password-file, mode 0600) or the PG environment (PGPASSWORD, PGPASSFILE, ~/.pgpass)")

// Is reports whether a store's location names PostgreSQL: a postgres://
// or postgresql:// URL, or a keyword/value connection string
// ("host=/run/postgresql dbname=overboot").
func Is(where string) bool {
	return isURL(where) || strings.Contains(where, "=")
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// passwordKV finds a password in a keyword/value connection string.
var passwordKV = regexp.MustCompile(`(^|\s)(ssl)?password\s*=`)

// Check checks a PostgreSQL connection string as far as it can without
// pgx: a URL parses, a keyword/value string has keys, and neither
// carries a password. Its errors show the string redacted.
func Check(conn string) error {
	red := Redact(conn)
	if isURL(conn) {
		u, err := url.Parse(conn)
		if err != nil {
			return fmt.Errorf("%s: not a URL: want postgres://USER@HOST/DB?sslmode=...", red)
		}
		if _, ok := u.User.Password(); ok {
			return fmt.Errorf("%s: %w", red, ErrPassword)
		}
		q := u.Query()
		if q.Has("password") || q.Has("sslpassword") {
			return fmt.Errorf("%s: %w", red, ErrPassword)
		}
		return nil
	}
	if !strings.Contains(conn, "=") {
		return fmt.Errorf("%q: want postgres://USER@HOST/DB?sslmode=... or keyword=value pairs (host=/run/postgresql dbname=overboot)", red)
	}
	if passwordKV.MatchString(conn) {
		return fmt.Errorf("%s: %w", red, ErrPassword)
	}
	return nil
}

// Redact returns a connection string with any password in it replaced
// by xxxxx: the only form of it that goes into a message or a log.
func Redact(conn string) string {
	if isURL(conn) {
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
