// Package keeper is the process that keeps the machine's root alive after
// the agent is gone: it answers the kernel's NBD requests for a lazily read
// image (internal/nbd) from HTTP Range reads (initagent/fetch's
// RangeReader), and it logs the iSCSI sessions of the root in again when
// their connection fails (initagent/initiator's Watcher, which does what iscsid
// would), before and after switch_root, for as long as the machine runs.
// One per machine.
//
// The agent starts it (Start) as a child running the agent's own binary
// with argv[0] "@overboot-keeper": systemd leaves processes whose argv[0]
// begins with '@' alive at shutdown until the root is unmounted (its "root
// storage daemon" convention). It inherits three files: a control pipe
// (the JSON Config, then more sessions, Keeper.Watch, until the agent
// closes it, Keeper.Release), the NBD socket (with an image), and a pipe
// it answers on. CHAP secrets travel only over the control pipe and live
// only in the keeper's memory: never on a command line, in the
// environment or in a file.
//
// The keeper logs to the kernel log. When the image server goes away its
// reads wait and retry, so the machine's reads wait too; when an iSCSI
// connection fails, the kernel holds the session's I/O for its recovery
// timeout (overboot.iscsi.recovery) while the keeper connects and logs in
// again, so none fails. The OOM killer is told to leave it alone.
//
// Needs: root, and for sessions the iscsi_tcp module (netlink); its tests
// run it from the test binary without either (an image over HTTP).
package keeper
