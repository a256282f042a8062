// Package state is the overboot server's store, on one of two backends:
// an embedded SQLite file (modernc.org/sqlite, pure Go, WAL mode; the
// default, for one server), or a PostgreSQL database (pgx's database/sql
// driver; for several servers sharing one store). It holds machines and
// their enrolment, users and their password hashes, disks and whose they
// are, CHAP secrets, single-use boot tokens, admin API tokens and the
// operator console's sessions signed in with them, published
// image names with their history, boot events and DHCP leases.
//
// What it owns: the schema (versioned migrations in migrate.go, applied
// at Open; on PostgreSQL under an advisory lock, so servers starting
// together take turns), the SQLite file's permissions (0600, with its
// -wal and -shm files), and consistency across kill -9 (every change is
// one transaction).
//
// One text per query and per schema step, in SQLite's dialect: '?'
// placeholders; INTEGER (64-bit), REAL, INTEGER PRIMARY KEY for ids the
// store assigns (read back with RETURNING); times are INTEGER unix
// milliseconds. On PostgreSQL the queries are rebound ($1, $2, ...) and
// the schema steps translated (INTEGER PRIMARY KEY to an identity
// column, INTEGER to BIGINT, REAL to DOUBLE PRECISION): dialect.go.
//
// Writers: on SQLite one connection writes, so a read-modify-write
// transaction meets no other writer; several processes on one file (the
// CLI's offline commands and a running server) meet in busy_timeout. On
// PostgreSQL several servers write at once: write transactions run at
// SERIALIZABLE and run again when PostgreSQL aborts one to keep it so
// (DB.tx). A boot token is therefore spent once across all servers.
//
// What it does not do: back up a PostgreSQL store (pg_dump does), or
// keep a password: a PostgreSQL connection string with one is refused;
// the password comes from a file (ReadPasswordFile) or the PG
// environment (PGPASSWORD, PGPASSFILE), and messages show the string
// through Redact.
package state
