// Package iscsi is the iSCSI target embedded in the overboot server
// (RFC 7143), with CHAP authentication (RFC 1994) required on every
// target and optional mutual CHAP. It serves block devices to the Linux
// kernel's initiator, iPXE and libiscsi.
//
// What it does: login (security and operational negotiation, digests
// None or CRC32C), SendTargets discovery that shows an initiator only the
// targets its CHAP credentials open, the SBC/SPC commands initiators use
// (INQUIRY with VPD pages, READ CAPACITY 10/16, READ/WRITE/VERIFY 6/10/16,
// MODE SENSE, REPORT LUNS, SYNCHRONIZE CACHE, ...), R2T and immediate or
// unsolicited data with offset and DataSN checks of every Data-Out, NOP,
// task management, logout. ErrorRecoveryLevel is 0: a protocol error
// such as a wrong DataSN ends the connection. One connection per session
// (MaxConnections=1).
//
// LUNs (Backing) are files, read-only or writable sparse (FileBacking),
// or a machine's copy-on-write layer over a shared read-only image
// (CowBacking), crash-safe: after a crash each write reads back entirely
// old or entirely new. An Exclusive target is one machine's disk: one
// session at a time; a new login by the same initiator ends its old
// session (the machine rebooted), another initiator is refused while a
// session lives.
//
// An initiator whose connection failed logs in again with its ISID and
// gets in even while the target still thinks the old connection alive (a
// network cut): with the session's TSIH the session continues (RFC 7143
// 6.3.4), with TSIH 0 it is reinstated (6.3.5); a TSIH the target does
// not know, as after a restart, is answered "session does not exist"
// (0x020a). Either way the old connection is closed and its commands have
// finished before the login response goes out, so a write still running
// cannot land after the initiator's retry of it.
//
// Before CHAP any TCP peer looks like a machine, so Limits bound what a
// peer that never logs in can hold: a connection not logged in (normal
// or discovery session) within LoginTimeout of its accept, 5s by
// default, is closed; a logged-in session then idles as long as it likes.
// The connections not logged in yet are capped per remote IP address (8
// by default) and in total (1024), a connection over a cap closed right
// after the accept with a warning in the log. A connection that logs in
// leaves the caps: sessions take no slot, so a flood of connections that
// never log in does not add up with the machines' sessions, and as its
// connections expire a new login gets a slot (it still competes for
// them with a flood that fills the total cap). Sessions themselves are
// not capped: their peers know a CHAP secret. The warnings are
// rate-limited, one per address and ten in all per 10s, each line
// counting the refusals it stands for (refused, and refused_others for
// addresses that had no line). Stats counts connections and sessions.
//
// Not done: task management answers every abort and reset as complete,
// but only ABORT TASK acts, dropping a WRITE still waiting for its data;
// a command already running finishes (see the iscsi-test-cu known
// failures in the tests).
//
// Secrets (type Secret) never print. It needs no root; tests log in with
// the agent's initiator (initagent/iscsi) and libiscsi's tools (package
// libiscsi-bin) on 127.0.0.1.
package iscsi
