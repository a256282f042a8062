// Package iscsi is the iSCSI target embedded in the overboot server
// (RFC 7143), with CHAP authentication (RFC 1994) required on every
// target and optional mutual CHAP. It serves block devices to the Linux
// kernel's initiator, iPXE and libiscsi.
//
// What it does: login (security and operational negotiation, digests
// None or CRC32C), SendTargets discovery that shows an initiator only the
// targets its CHAP credentials open, the SBC/SPC commands initiators use
// (INQUIRY with VPD pages, READ CAPACITY 10/16, READ/WRITE/VERIFY 6/10/16,
// MODE SENSE, REPORT LUNS, SYNCHRONIZE CACHE, ...), R2T and immediate
// data, NOP, task management answers, logout. LUNs are files: read-only,
// or writable sparse files.
//
// Not yet: copy-on-write LUNs, one-session-per-machine rules, async
// abort, DataSN checks of Data-Out (see the iscsi-test-cu failures in the
// tests' notes). ErrorRecoveryLevel is 0.
//
// Secrets (type Secret) never print. It needs no root; tests use libiscsi's
// tools (package libiscsi-bin) on 127.0.0.1.
package iscsi
