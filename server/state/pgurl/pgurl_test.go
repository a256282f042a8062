package pgurl

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckAndRedact(t *testing.T) {
	for _, c := range []struct {
		conn, redacted string
		err            string // "" none, "password" ErrPassword, else a part of the message
	}{
		{"postgres://overboot@db.example/overboot?sslmode=verify-full", "postgres://overboot@db.example/overboot?sslmode=verify-full", ""},
		{"postgresql:///overboot?host=/run/postgresql", "postgresql:///overboot?host=%2Frun%2Fpostgresql", ""},
		{"host=/run/postgresql dbname=overboot", "host=/run/postgresql dbname=overboot", ""},
		{"postgres://overboot:s3cret@db.example/overboot", "postgres://overboot:xxxxx@db.example/overboot", "password"},
		{"postgres://overboot@db.example/overboot?password=s3cret", "postgres://overboot@db.example/overboot?password=xxxxx", "password"},
		{"host=db dbname=overboot password=s3cret", "host=db dbname=overboot password=xxxxx", "password"},
		{"host=db password = 's3 cret' dbname=overboot", "host=db password=xxxxx dbname=overboot", "password"},
		{"host=db sslpassword=s3cret", "host=db sslpassword=xxxxx", "password"},
		{"postgres://u:s3cret@[::1/x", "postgres://(a URL that does not parse)", "not a URL"},
		{"/var/lib/overboot/state.db", "/var/lib/overboot/state.db", "want postgres://"},
	} {
		if got := Redact(c.conn); got != c.redacted {
			t.Errorf("Redact(%q) = %q, want %q", c.conn, got, c.redacted)
		}
		err := Check(c.conn)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("Check(%q): %v", c.conn, err)
		case c.err == "password" && !errors.Is(err, ErrPassword):
			t.Errorf("Check(%q) = %v, want ErrPassword", c.conn, err)
		case c.err != "" && c.err != "password" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Check(%q) = %v, want %q in it", c.conn, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "s3") {
			t.Errorf("Check(%q) shows the password: %v", c.conn, err)
		}
	}
}

func TestIs(t *testing.T) {
	for in, want := range map[string]bool{
		"postgres://db/x": true, "postgresql://db/x": true, "host=/run/postgresql dbname=x": true,
		"": false, "/var/lib/overboot/state.db": false, "sqlite:/x": false,
	} {
		if got := Is(in); got != want {
			t.Errorf("Is(%q) = %v", in, got)
		}
	}
}
