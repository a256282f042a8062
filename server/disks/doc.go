// Package disks owns the private disks the server hands out: a machine's
// or a user's writable upper disk (a sparse ext4 file) or copy-on-write
// layer over a shared raw disk image (for sanboot), their files on disk,
// their rows in the state store (whose each disk is, package server/state),
// their CHAP secrets, and their export as iSCSI targets (package
// server/target).
//
// Files live in DATA/disks/ID/ (0700; files 0600), named by the disk's row.
// A disk's row is written before its file and removed after it, with a
// status (creating, ready, deleting) that Recover uses after a crash to
// finish or undo what was under way: no disk is lost, none is left without
// a row. Disks that predate the store (DATA/machines/MAC/) are imported by
// MigrateLegacy and stay where they are.
//
// It decides nothing about who may have a disk: its callers (the boot flow
// after enrolment, a login, the admin API) have done that.
package disks
