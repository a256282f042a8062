// Package server is the overboot server: it wires the packages that each
// own one part of the job into one HTTP handler and one iSCSI target.
//
//	Server(listener, handler(parse → profiles → enroll.Decide → effects(state, disks, identity) → answer → ipxe))
//
// What it serves:
//   - the boot flow: /boot.ipxe and /ipxe, a machine's script, where its
//     profile's enrolment policy decides between a kernel script, a wait
//     for approval and a menu (script.go); /login/TOKEN and
//     /entry/TOKEN/NAME, a menu's choices (login.go, script.go);
//     /doc/TOKEN (document.go) and /san/TOKEN (sanboot.go), single use and
//     bound to the address that fetched the script, with the machine's
//     disk (disk.go); /report/TOKEN, the agent's phase reports
//     (report.go). The handlers parse, admit (server/enroll), run the
//     side effects (spend a token, attach a disk, make an identity) and
//     hand the facts to package server/answer, which decides what the
//     machine gets; server/ipxe renders it;
//   - artifacts by digest (blobs.go): /blobs/sha256/HEX with Range, ETag
//     and sendfile;
//   - the admin API under /api/v1 (package server/api, bearer tokens);
//   - /status, /status/rows, /status/events and /metrics (package
//     server/telemetry).
//
// Sub-packages: answer (what a machine gets, pure), ipxe (its iPXE
// rendering), state (the SQLite store), disks (private disks and their
// targets), enroll (policies, tokens, passwords, rate limits), profiles
// (selection and resolution), drivers (NIC driver segments), telemetry,
// api, config, target (the iSCSI target), dhcp, tftp, pci. It needs no
// root; the iSCSI target and mkfs.ext4 (for new upper disks) run as the
// server's user.
package server
