// Package target is the iSCSI target embedded in the overboot server
// (RFC 7143), with CHAP authentication (RFC 1994) required on every
// target, MD5 or SHA-256 (CHAP_A 5 or 7, SHA-256 when the initiator
// offers it), and mutual CHAP when the target has a secret of its own
// (the server gives every disk one). It serves block devices to the
// Linux kernel's initiator, iPXE and libiscsi.
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
// Before CHAP nothing tells a peer which targets exist: an unknown
// target name, a known one with another initiator's name and the right
// one all get the same CHAP exchange (a decoy challenge for the first
// two) and the same failure at the response (0x0201). A login binds to
// its target when it names it; replacing or removing the target (a new
// secret) ends the logins in flight on it, and a login whose target
// changed is refused at claim, so a revoked secret never gets in. A
// connection that has not logged in holds at most 64 KiB of continued
// text and sends at most 64 login requests (then 0x0200), through a
// 4 KiB read buffer.
//
// In full feature phase a connection holds what its commands need, no
// more: MaxCmdSN follows the commands still running (a window of 64;
// commands outside it are dropped, at most 4 immediate ones at once); a
// READ is refused above the advertised maximum transfer (32,768
// blocks), never reads past the initiator's expected length, and streams
// its Data-In through one buffer; WRITE data is kept as Data-Out
// arrives, R2Ts go out while a connection holds under 16 MiB of it, and
// a target's sessions hold 256 MiB at most (then TASK SET FULL).
//
// Any TCP peer can connect, so Limits bound what a peer that never logs
// in can hold: a connection not logged in (normal
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
// A copy-on-write layer's log is compacted (crash-safely, beside it,
// then renamed) on open when it holds more than its live map, and in use
// when it passes twice that; DiskBytes says what a layer takes on disk.
//
// Not done: task management answers every abort and reset as complete;
// ABORT TASK and the resets drop WRITEs still waiting for their data,
// but a command already running finishes (see the iscsi-test-cu known
// failures in the tests).
//
// Secrets (type Secret) never print. It needs no root; tests log in with
// the agent's initiator (initagent/initiator) and libiscsi's tools (package
// libiscsi-bin) on 127.0.0.1.
package target
