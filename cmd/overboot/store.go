package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/state/pgurl"
)

// storeWhere is where the store of the server configured by cfg is.
func storeWhere(cfg *config.Config) state.Where {
	return state.Where{Data: cfg.Data, Postgres: cfg.Store, PasswordFile: cfg.StorePasswordFile}
}

// localStore opens the state store of the server whose data directory is
// data, for the commands that work without a running server (token create
// --data, mkimage --store --name): the PostgreSQL store the server's
// configuration names (conf, else the default configuration files when
// they exist), when that configuration's data directory is data; else
// the SQLite file DATA/state.db.
func localStore(ctx context.Context, data, conf string) (*state.DB, error) {
	if conf == "" {
		for _, p := range []string{defaultConfig, packageConfig} {
			if _, err := os.Stat(p); err == nil {
				conf = p
				break
			}
		}
	}
	if conf != "" {
		cfg, err := config.Load(conf)
		if err != nil {
			return nil, fmt.Errorf("the server's store: %w", err)
		}
		if cfg.Store != "" && samePath(cfg.Data, data) {
			return state.OpenStore(ctx, storeWhere(cfg))
		}
	}
	return state.Open(filepath.Join(data, state.FileName))
}

func samePath(a, b string) bool {
	a, errA := filepath.Abs(a)
	b, errB := filepath.Abs(b)
	return errA == nil && errB == nil && a == b
}

// storeSQLite prefixes a SQLite store's file in a store location.
const storeSQLite = "sqlite:"

// openLocation opens the store at loc: sqlite:PATH, or a PostgreSQL
// connection string (its password from pwFile, else the PG environment).
// create says whether a SQLite file may be made.
func openLocation(ctx context.Context, c *cobra.Command, flag, loc, pwFile string, create bool) (*state.DB, error) {
	switch {
	case strings.HasPrefix(loc, storeSQLite):
		path := strings.TrimPrefix(loc, storeSQLite)
		if path == "" {
			return nil, usagef(c, "--%s sqlite:PATH: the store's file, e.g. sqlite:/var/lib/overboot/state.db", flag)
		}
		if pwFile != "" {
			return nil, usagef(c, "--%s-password-file: a SQLite store has no password", flag)
		}
		if _, err := os.Stat(path); err != nil && !create {
			return nil, fmt.Errorf("--%s: no store at %s: %w", flag, path, err)
		}
		return state.Open(path)
	case pgurl.Is(loc):
		if err := pgurl.Check(loc); err != nil {
			return nil, usagef(c, "--%s: %v", flag, err)
		}
		return state.OpenStore(ctx, state.Where{Postgres: loc, PasswordFile: pwFile})
	default:
		return nil, usagef(c, "--%s %q: want sqlite:PATH or a PostgreSQL store (postgres://USER@HOST/DB?sslmode=..., or host=/run/postgresql dbname=DB)", flag, pgurl.Redact(loc))
	}
}

func storeCmd(sio stdio) *cobra.Command {
	c := group("store", "the state store: copy it between SQLite and PostgreSQL")
	var from, to, fromPW, toPW string
	var replace bool
	cp := &cobra.Command{
		Use:   "copy --from sqlite:PATH --to postgres://USER@HOST/DB?sslmode=...",
		Short: "copy every table of one store into another (SQLite to PostgreSQL, or back)",
		Long: `Copy every row of every table of the store --from into the store --to, in
one transaction of the target: it has all of them or none. A store is
sqlite:PATH (a SQLite file, DATA/state.db for a server) or a PostgreSQL
connection string: postgres://USER@HOST/DB?sslmode=verify-full, or
host=/run/postgresql dbname=DB. A connection string carries no password:
it comes from --from-password-file or --to-password-file (first line, file
mode 0600), else the PG environment (PGPASSWORD, PGPASSFILE, ~/.pgpass).

Both stores are brought to this overboot's schema first, as serve does at
start (the source too, if it is older). The source is read in one snapshot;
stop the servers that use it first, or what they write after that snapshot
is not copied. A target with rows is refused, saying what it holds, unless
--replace, which deletes them in the same transaction. Before it commits,
the copy compares every table's row count with the source's; then it runs
the target's check (what overboot's store keeps true, and SQLite's
integrity check for a SQLite target). A new SQLite target file is made
(0600); a PostgreSQL target database must exist (createdb).

Then point the servers at the target: [server] store = ... and
store-password-file = ... in their configuration.`,
		Args: exactArgs(0, "no arguments: --from and --to say the stores"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usagef(cmd, "--from and --to are needed")
			}
			if from == to {
				return usagef(cmd, "--from and --to are the same store")
			}
			ctx := cmd.Context()
			src, err := openLocation(ctx, cmd, "from", from, fromPW, false)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := openLocation(ctx, cmd, "to", to, toPW, true)
			if err != nil {
				return err
			}
			defer dst.Close()
			n, err := state.Copy(ctx, src, dst, replace)
			if errors.Is(err, state.ErrNotEmpty) {
				return fmt.Errorf("store copy: %w; --replace deletes them and copies", err)
			}
			if err != nil {
				return fmt.Errorf("store copy: %w", err)
			}
			fmt.Fprintf(sio.out, "copied %s\nfrom %s\nto   %s (row counts match; check passed)\n", n, src, dst)
			return nil
		},
	}
	cp.Flags().StringVar(&from, "from", "", "the `store` to copy: sqlite:PATH, or a PostgreSQL connection string")
	cp.Flags().StringVar(&to, "to", "", "the `store` to copy into: a PostgreSQL connection string, or sqlite:PATH")
	cp.Flags().StringVar(&fromPW, "from-password-file", "", "`file` (mode 0600) with the password of --from's PostgreSQL role (default: the PG environment)")
	cp.Flags().StringVar(&toPW, "to-password-file", "", "`file` (mode 0600) with the password of --to's PostgreSQL role (default: the PG environment)")
	cp.Flags().BoolVar(&replace, "replace", false, "delete what the target holds first (in the same transaction)")
	c.AddCommand(cp)
	return c
}
