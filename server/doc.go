// Package server is the overboot server: it wires the packages that each
// own one part of the job into one HTTP handler and one iSCSI target.
//
//	Server(listener, handler(profiles, enroll, disks, telemetry, api, state))
//
// What it serves:
//   - the boot flow (bootflow.go, login.go): /boot.ipxe; /ipxe, a
//     machine's script, where its profile's enrolment policy decides
//     between a kernel script, a wait for approval and a login menu;
//     /doc/TOKEN and /san/TOKEN, single use and bound to the address that
//     fetched the script; /login/TOKEN and /entry/TOKEN/NAME, a menu's
//     choices; /report/TOKEN, the agent's phase reports;
//   - artifacts by digest (blobs.go): /blobs/sha256/HEX with Range, ETag
//     and sendfile;
//   - the admin API under /api/v1 (package server/api, bearer tokens);
//   - /status, /status/rows, /status/events and /metrics (package
//     server/telemetry).
//
// Sub-packages: state (the SQLite store), disks (private disks and their
// targets), enroll (policies, tokens, passwords, rate limits), profiles
// (selection and resolution), telemetry, api, config, iscsi. It needs no
// root; the iSCSI target and mkfs.ext4 (for new upper disks) run as the
// server's user.
package server
