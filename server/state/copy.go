package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Tables are the store's tables (schema_version aside), parents before
// the tables whose rows refer to theirs (boots before boot_events), each
// with the columns that order its rows (its primary key).
var Tables = []struct{ Name, Order string }{
	{"machines", "mac"},
	{"admissions", "mac, profile"},
	{"requests", "mac, profile, address"},
	{"users", "name"},
	{"disks", "id"},
	{"boot_tokens", "hash"},
	{"api_tokens", "id"},
	{"console_sessions", "hash"},
	{"images", "name, version"},
	{"boots", "id"},
	{"boot_events", "id"},
	{"leases", "mac"},
	{"leases6", "duid, iaid"},
	{"servers", "name"},
	{"rate_buckets", "key"},
	{"working_sets", "boot_id"},
	{"attest_served", "hash"},
	{"tpms", "mac"},
	{"attest_sessions", "hash"},
}

// Counts are the rows of each table, by name.
type Counts map[string]int64

// String lists the tables that have rows: "3 machines, 120 boots".
func (c Counts) String() string {
	var parts []string
	for _, t := range Tables {
		if n := c[t.Name]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, t.Name))
		}
	}
	if len(parts) == 0 {
		return "no rows"
	}
	return strings.Join(parts, ", ")
}

// Total is the number of rows in all tables.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Counts counts the rows of every table.
func (d *DB) Counts(ctx context.Context) (Counts, error) {
	return counts(ctx, d.sql)
}

func counts(ctx context.Context, q handle) (Counts, error) {
	c := Counts{}
	for _, t := range Tables {
		var n int64
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.Name).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", t.Name, err)
		}
		c[t.Name] = n
	}
	return c, nil
}

// ErrNotEmpty: a copy's target has rows, and the copy was not told to
// replace them.
var ErrNotEmpty = errors.New("the target store is not empty")

// Copy copies every row of every table of from into to, in one
// transaction of to: to has all of them or none. from is read in one
// snapshot (a read transaction). A to with rows is refused (ErrNotEmpty,
// saying what it holds) unless replace, which deletes them in the same
// transaction. Both stores are at SchemaVersion (Open migrates). The copy
// checks every table's row count in to before it commits, moves to's id
// sequences past the ids copied (PostgreSQL), then runs Check on to. It
// returns the rows copied.
func Copy(ctx context.Context, from, to *DB, replace bool) (Counts, error) {
	src, err := from.sqlOf().BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: snapshotLevel(from)})
	if err != nil {
		return nil, fmt.Errorf("copy: read %s: %w", from, err)
	}
	defer src.Rollback()
	sh := handle{q: src, pg: from.pg != nil}
	want, err := counts(ctx, sh)
	if err != nil {
		return nil, fmt.Errorf("copy: read %s: %w", from, err)
	}
	err = to.runTx(ctx, nil, func(dst handle) error {
		had, err := counts(ctx, dst)
		if err != nil {
			return err
		}
		if had.Total() > 0 {
			if !replace {
				return fmt.Errorf("%w: %s holds %s (replacing deletes them)", ErrNotEmpty, to, had)
			}
			for i := len(Tables) - 1; i >= 0; i-- {
				if _, err := dst.ExecContext(ctx, `DELETE FROM `+Tables[i].Name); err != nil {
					return fmt.Errorf("empty %s: %w", Tables[i].Name, err)
				}
			}
		}
		for _, t := range Tables {
			if err := copyTable(ctx, sh, dst, t.Name, t.Order); err != nil {
				return fmt.Errorf("copy %s: %w", t.Name, err)
			}
		}
		got, err := counts(ctx, dst)
		if err != nil {
			return err
		}
		for _, t := range Tables {
			if got[t.Name] != want[t.Name] {
				return fmt.Errorf("%s: %d rows copied, the source has %d", t.Name, got[t.Name], want[t.Name])
			}
		}
		if to.pg != nil {
			for _, t := range identityTables {
				if _, err := dst.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('`+t+`', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM `+t); err != nil {
					return fmt.Errorf("%s's id sequence: %w", t, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", from, to, err)
	}
	if err := to.Check(ctx); err != nil {
		return want, fmt.Errorf("copy %s to %s: the copy fails its check: %w", from, to, err)
	}
	return want, nil
}

// snapshotLevel is the isolation that reads one snapshot across queries:
// PostgreSQL's REPEATABLE READ; SQLite's read transaction is one already.
func snapshotLevel(d *DB) sql.IsolationLevel {
	if d.pg != nil {
		return sql.LevelRepeatableRead
	}
	return sql.LevelDefault
}

// sqlOf is the pool a read transaction starts from.
func (d *DB) sqlOf() *sql.DB {
	if d.pg != nil {
		return d.wdb
	}
	return d.sql.q.(*sql.DB)
}

// copyBatch bounds the values of one INSERT (SQLite allows 32766).
const copyBatch = 900

// copyTable copies table's rows from src to dst, by the column names of
// the source, in batches of multi-row INSERTs.
func copyTable(ctx context.Context, src, dst handle, table, order string) error {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table+` ORDER BY `+order)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	head := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES `
	per := max(1, copyBatch/len(cols))
	var args []any
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		q := head + strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
		_, err := dst.ExecContext(ctx, q, args...)
		args, n = args[:0], 0
		return err
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		args = append(args, vals...)
		if n++; n == per {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}
