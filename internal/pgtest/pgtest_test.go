package pgtest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/overboot/overboot/internal/testneed"
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

// TestStart: a cluster started outside of the test API has its own
// directory and socket, makes databases that answer, refuses a name that
// is not a plain identifier, and is gone after Stop.
func TestStart(t *testing.T) {
	c, err := Start(Options{})
	if errors.Is(err, ErrMissing) {
		testneed.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if c != nil {
			c.Stop()
		}
	}()
	// Apart from the cluster of the test API.
	if other := Database(t); strings.Contains(other, "host="+c.Dir+" ") {
		t.Errorf("Start shares the test cluster's directory %s", c.Dir)
	}
	ctx := context.Background()
	conn, err := c.CreateDatabase(ctx, "bench_1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	var name string
	err = db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&name)
	db.Close()
	if err != nil || name != "bench_1" {
		t.Fatalf("connected to %q (%v), want bench_1", name, err)
	}
	if _, err := c.CreateDatabase(ctx, "x; DROP DATABASE postgres"); err == nil {
		t.Error("CreateDatabase took a name that is not an identifier")
	}
	dir := c.Dir
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	c = nil
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Stop (%v)", dir, err)
	}
}

// TestHaltResume: a halted cluster refuses the queries of a client that
// was connected (at once, not after a hang), and after Resume the same
// client (database/sql's pool) works again on the same database, whose
// rows survived.
func TestHaltResume(t *testing.T) {
	c, err := Start(Options{})
	if errors.Is(err, ErrMissing) {
		testneed.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	conn, err := c.CreateDatabase(ctx, "halt")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := c.Halt(); err != nil {
		t.Fatal(err)
	}
	var v int
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = db.QueryRowContext(qctx, `SELECT v FROM t`).Scan(&v)
	cancel()
	if err == nil {
		t.Fatal("a query answered while the cluster was halted")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a query hung for a minute while the cluster was halted")
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	// database/sql drops the broken connection and dials again; the
	// first query after a restart may still meet one closed connection.
	for i := 0; ; i++ {
		if err = db.QueryRowContext(ctx, `SELECT v FROM t`).Scan(&v); err == nil || i == 3 {
			break
		}
	}
	if err != nil || v != 42 {
		t.Fatalf("after Resume: %d, %v", v, err)
	}
}
