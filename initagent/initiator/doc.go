// Package initiator is the agent's iSCSI initiator, on top of the kernel's
// iscsi_tcp: the kernel carries the session's I/O, this package logs it
// in and keeps it logged in.
//
//   - Login (login.go): security (CHAP, mutual CHAP; u-root's iscsinl has
//     none) and operational negotiation, written against a small
//     Transport, so the same code logs in over a plain TCP connection in
//     tests and through the kernel's connection (netlink PDU passthrough)
//     at boot.
//   - Attach (kernel_linux.go): a session of the kernel's initiator, over
//     iscsinl's netlink calls, with its recovery timeout; it returns the
//     Session and its block device.
//   - Watcher (recover.go): what iscsid does for a running system, for
//     the keeper: on a connection error from the kernel it stops the
//     connection for recovery, connects again (retrying while the server
//     is away), binds the new socket to the same kernel connection, logs
//     in with the session's ISID and TSIH (TSIH 0 when the target no
//     longer knows the session) and starts it: the I/O the kernel held
//     resumes. Netlink (netlink_linux.go, layout in uevent.go) is the
//     kernel side it drives; tests drive a fake over TCP to the real
//     target (server/target).
//   - ParseIBFT (ibft.go): the disk the firmware booted from.
//
// Needs root and the iscsi_tcp module for Attach and Netlink; nothing for
// the rest. Does not: discovery, more than one connection per session,
// error recovery levels above 0 (a failed connection is a session
// recovery, as iscsid does it with ErrorRecoveryLevel=0).
package initiator
