// Package iscsi is the iSCSI target embedded in the overboot server
// (RFC 7143), with CHAP authentication (RFC 1994) required on every
// target. It serves block devices to the Linux kernel's initiator, iPXE
// and libiscsi: read-only files (squashfs images, raw disks) and
// per-machine writable disks.
//
// This package is being built: PDUs, text keys and CHAP first.
package iscsi
