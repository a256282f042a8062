// Package profiles answers "which profile does this machine boot, and what
// exactly is in it": it selects a machine's profile from the configuration
// (its [machine MAC] section, else the default profile) and resolves the
// profile's kernel, initramfs and root to blobs at the moment a machine
// asks, so a name published a second ago is what the next boot gets.
//
// References are absolute file paths (copied into the blob store when the
// set is made), sha256:HEX (a blob that must exist), or image names
// (published in the state store, server/state).
//
// It renders nothing and decides no enrolment: the boot flow in package
// server does, with boot's script types.
package profiles
