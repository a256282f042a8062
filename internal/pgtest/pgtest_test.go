package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestDatabase: each call gives a database of its own in a cluster that
// listens on no TCP address, only on a socket in its own directory.
func TestDatabase(t *testing.T) {
	ctx := context.Background()
	var names []string
	for range 2 {
		conn := Database(t)
		cfg, err := pgx.ParseConfig(conn)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cfg.Host, os.TempDir()) {
			t.Errorf("socket directory %s is not a temporary one", cfg.Host)
		}
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		var name, listen string
		if err := db.QueryRowContext(ctx, `SELECT current_database(), current_setting('listen_addresses')`).Scan(&name, &listen); err != nil {
			t.Fatal(err)
		}
		if listen != "" {
			t.Errorf("listen_addresses = %q, want none", listen)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("a new database has %d tables (%v)", n, err)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Errorf("two calls gave one database: %s", names[0])
	}
}
