// Package state is the overboot server's embedded store: one SQLite file
// (modernc.org/sqlite, pure Go, WAL mode) holding machines and their
// enrolment, users and their password hashes, disks and whose they are,
// CHAP secrets, single-use boot tokens, admin API tokens, published image
// names with their history, and boot events.
//
// What it owns: the schema (versioned migrations in migrate.go, applied at
// Open), the file's permissions (0600, with its -wal and -shm files), and
// consistency across kill -9 (every change is one transaction; SQLite's WAL
// makes a commit all or nothing). Disk images and blobs stay files; the
// store says whose they are (package server/disks keeps the files in step
// with the rows).
//
// The SQL is kept portable (no SQLite-only types; times are INTEGER unix
// milliseconds; one INTEGER PRIMARY KEY per table that needs an id), so the
// same schema can move to PostgreSQL when several servers share one store.
// Placeholders are '?', which a PostgreSQL port rewrites.
//
// Several processes may open the same file (the CLI's offline commands and
// a running server): SQLite serialises writers; busy_timeout waits.
package state
