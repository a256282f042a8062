// Package pgtest gives tests a PostgreSQL database of their own: a
// private cluster, started at the first call of Database in a test
// binary and stopped by Main when the binary's tests end, and a fresh
// database per call.
//
// The cluster lives in a temporary directory (initdb there, owned by the
// postgres user when the tests run as root, since PostgreSQL refuses to
// run as root), listens on a unix socket in that directory only
// (listen_addresses = ”), and runs without fsync. The machine's own
// cluster, if any, is never touched.
//
// Outside of tests (a benchmark), Start starts a cluster of its own and
// Cluster.CreateDatabase makes databases in it; the caller stops it with
// Cluster.Stop.
//
// Use from a package's tests:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	conn := pgtest.Database(t) // "host=/tmp/... port=5432 user=postgres dbname=t3 sslmode=disable"
//
// Outside tests (a benchmark), Start makes a cluster of the same kind,
// with fsync on when asked (Options.Durable), and CreateDatabase a
// database in it; the caller stops it. Halt and Resume stop and start
// such a cluster again on the same directory (a PostgreSQL restart
// under running clients, for fault tests).
//
// The superuser logs in without a password; a role made with Role needs
// its password (scram-sha-256), for tests of how a password is given.
//
// It needs Debian's postgresql package (initdb, pg_ctl, postgres under
// /usr/lib/postgresql/VERSION/bin) and, as root, the postgres user and
// runuser. What is missing skips the test, or fails it under
// OVERBOOT_STRICT=1 (internal/testneed).
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/overboot/overboot/internal/testneed"
)

// binGlob finds the server's programs of Debian's postgresql packages.
const binGlob = "/usr/lib/postgresql/*/bin/pg_ctl"

// superuser is the cluster's superuser, which every test database
// belongs to (trust authentication over the private socket).
const superuser = "postgres"

// runAs is the user the cluster runs as when the tests run as root.
const runAs = "postgres"

// cluster is the test binary's private cluster. mu guards it.
var (
	mu      sync.Mutex
	cluster *Cluster
	// startErr is why the cluster could not start, said to every test
	// that asks after the first.
	startErr error
	missing  string // what the machine lacks, for testneed.Missing
	nextName int
)

// Cluster is a running private PostgreSQL cluster.
type Cluster struct {
	Dir    string // the temporary directory: data/, the socket, the log
	bin    string // the directory of initdb, pg_ctl, postgres
	asUser bool   // run its programs as runAs (we are root)
	admin  *sql.DB
	// settings are the server's options (pg_ctl -o), the same at every
	// start (Resume).
	settings string
}

// Main runs the tests of m, then stops the cluster if one was started and
// removes its directory. It returns m.Run's exit code.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
		cluster = nil
	}
	return code
}

// Database creates a new, empty database in the private cluster
// (starting the cluster first if need be) and returns a connection
// string for it (keyword/value form, unix socket, the superuser, no
// password). The database is dropped when the test ends.
func Database(t testing.TB) string {
	t.Helper()
	return DatabaseOwnedBy(t, superuser)
}

// DatabaseOwnedBy is Database for a database that role owns (see Role),
// with a connection string that logs in as role: it needs the role's
// password.
func DatabaseOwnedBy(t testing.TB, role string) string {
	t.Helper()
	c := running(t)
	name := c.newName("t")
	ctx := context.Background()
	if _, err := c.admin.ExecContext(ctx, `CREATE DATABASE `+name+` OWNER `+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE: connections a failed test left open do not keep it.
		if _, err := c.admin.ExecContext(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.conn(role, name)
}

// Role creates a login role with a new password, which (unlike the
// superuser) must give it to log in (scram-sha-256), and returns both.
// The role is dropped when the test ends, after the databases it owns
// (create it before them).
func Role(t testing.TB) (name, password string) {
	t.Helper()
	c := running(t)
	name = c.newName("role")
	password = "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx := context.Background()
	if _, err := c.admin.ExecContext(ctx, `CREATE ROLE `+name+` LOGIN PASSWORD '`+password+`'`); err != nil {
		t.Fatalf("pgtest: create role %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := c.admin.ExecContext(ctx, `DROP ROLE `+name); err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
		}
	})
	return name, password
}

func (c *Cluster) newName(prefix string) string {
	mu.Lock()
	defer mu.Unlock()
	nextName++
	return prefix + strconv.Itoa(nextName)
}

// Conn is the connection string of database name in the cluster, as the
// superuser.
func (c *Cluster) Conn(name string) string { return c.conn(superuser, name) }

func (c *Cluster) conn(role, name string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable", c.Dir, role, name)
}

// running returns the cluster, starting it at the first call.
func running(t testing.TB) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil && startErr == nil && missing == "" {
		cluster, missing, startErr = start(Options{})
	}
	switch {
	case missing != "":
		testneed.Missing(t, "%s", missing)
	case startErr != nil:
		t.Fatalf("pgtest: %v", startErr)
	}
	return cluster
}

// ErrMissing is Start's error when the machine lacks what PostgreSQL
// needs (its programs, the postgres user, runuser).
var ErrMissing = errors.New("the machine cannot run PostgreSQL")

// Options are how Start makes a cluster.
type Options struct {
	// Durable keeps PostgreSQL's fsync and synchronous commit on (a
	// benchmark's fair comparison with a store that syncs); tests run
	// without them.
	Durable bool
}

// Start makes and starts a private cluster outside a test (a benchmark's
// own; Database is the tests' way): a temporary directory, a unix socket
// in it, the machine's cluster untouched. The caller stops it (Stop). An
// error says what failed, or what the machine lacks (ErrMissing).
func Start(opts Options) (*Cluster, error) {
	c, missing, err := start(opts)
	if missing != "" {
		return nil, fmt.Errorf("pgtest: %w: %s", ErrMissing, missing)
	}
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return c, nil
}

// CreateDatabase creates the empty database name (lowercase letters,
// digits and '_') in the cluster, owned by
// the superuser, and returns its connection string (as Conn). It is
// dropped with the cluster.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	if name == "" || strings.TrimFunc(name, func(r rune) bool { return r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }) != "" {
		return "", fmt.Errorf("pgtest: database name %q: want lowercase letters, digits and '_'", name)
	}
	if _, err := c.admin.ExecContext(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return c.Conn(name), nil
}

// start makes and starts a cluster. missing says what the machine lacks.
func start(opts Options) (c *Cluster, missing string, err error) {
	bins, _ := filepath.Glob(binGlob)
	if len(bins) == 0 {
		return nil, "needs PostgreSQL's server programs (" + binGlob + "): apt-get install postgresql (make deps does)", nil
	}
	// The newest major version, if several.
	sort.Slice(bins, func(i, j int) bool { return version(bins[i]) < version(bins[j]) })
	c = &Cluster{bin: filepath.Dir(bins[len(bins)-1]), asUser: os.Geteuid() == 0}
	var uid, gid int
	if c.asUser {
		u, err := user.Lookup(runAs)
		if err != nil {
			return nil, "needs the " + runAs + " user to run PostgreSQL as (it refuses root): apt-get install postgresql (make deps does)", nil
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, "needs runuser to start PostgreSQL as " + runAs + ": apt-get install util-linux", nil
		}
	}
	if c.Dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, "", err
	}
	// From here a failure removes what it made.
	defer func() {
		if err != nil {
			c.stop()
			os.RemoveAll(c.Dir)
			c = nil
		}
	}()
	if c.asUser {
		if err := os.Chown(c.Dir, uid, gid); err != nil {
			return nil, "", err
		}
	}
	data := filepath.Join(c.Dir, "data")
	// C locale: text sorts by bytes, as in SQLite.
	if err := c.run("initdb", "-D", data, "-U", superuser, "--auth=trust", "--locale=C", "--encoding=UTF8", "--no-sync"); err != nil {
		return nil, "", err
	}
	// The superuser comes in without a password; every other role
	// (Role) with its own.
	hba := "local all " + superuser + " trust\nlocal all all scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, "", err
	}
	settings := []string{
		"-c listen_addresses=''",
		"-c unix_socket_directories=" + c.Dir,
		"-c port=5432",
		"-c max_connections=300",
	}
	if !opts.Durable {
		settings = append(settings, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	c.settings = strings.Join(settings, " ")
	if err := c.pgStart(); err != nil {
		return nil, "", err
	}
	cfg, err := pgx.ParseConfig(c.Conn("postgres"))
	if err != nil {
		return nil, "", err
	}
	c.admin = stdlib.OpenDB(*cfg)
	if err := c.admin.Ping(); err != nil {
		return nil, "", fmt.Errorf("connect to the test cluster: %w", err)
	}
	return c, "", nil
}

// version is the major version in a path under /usr/lib/postgresql.
func version(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return v
}

// run runs one of the cluster's programs, as runAs when root.
func (c *Cluster) run(prog string, args ...string) error {
	argv := append([]string{filepath.Join(c.bin, prog)}, args...)
	if c.asUser {
		argv = append([]string{"runuser", "-u", runAs, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.Dir // a directory the user may enter
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.Bytes())
	}
	return nil
}

// pgStart starts the cluster's server on its data directory and waits
// until it accepts connections.
func (c *Cluster) pgStart() error {
	data := filepath.Join(c.Dir, "data")
	if err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(c.Dir, "log"), "-o", c.settings, "-w", "-t", "120", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
		return fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	return nil
}

// Halt stops the cluster's server as an administrator's restart does
// (pg_ctl stop -m fast: open transactions are rolled back, connections
// are closed, the socket goes away) and keeps its directory: Resume
// starts the same cluster again, with its databases. Connections that
// clients hold fail until then, and new ones are refused.
func (c *Cluster) Halt() error {
	if err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "-t", "120", "stop"); err != nil {
		return fmt.Errorf("pgtest: halt the cluster in %s: %w", c.Dir, err)
	}
	return nil
}

// Resume starts a halted cluster again (Halt), on the same directory,
// socket and settings, and returns once it accepts connections.
func (c *Cluster) Resume() error {
	if err := c.pgStart(); err != nil {
		return fmt.Errorf("pgtest: resume the cluster in %s: %w", c.Dir, err)
	}
	return nil
}

// stop stops the server, if it runs.
func (c *Cluster) stop() error {
	if c.admin != nil {
		c.admin.Close()
	}
	data := filepath.Join(c.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return c.run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
}

// Stop stops the cluster and removes its directory.
func (c *Cluster) Stop() error {
	err := c.stop()
	if err != nil {
		// Keep the directory: the server may still run in it.
		return fmt.Errorf("stop the test cluster in %s: %w", c.Dir, err)
	}
	return os.RemoveAll(c.Dir)
}
