// Package vmtest boots QEMU machines (TCG, no KVM) against an in-process
// overboot server and checks what their consoles, screens and disks show:
// the QEMU harness (command lines as data, serial console matching,
// QMP for keys, links and screens), the artifacts every boot shares (a
// kernel and modules from the host's linux-image package, the agent's
// initramfs, test roots, a Debian image with systemd made once with
// debootstrap and kept in OVERBOOT_VMTEST_CACHE), network namespaces for
// the DHCP, TFTP and IPv6 tests, a swtpm per machine that has a TPM
// (Options.TPMState, tpm.go), and the tests themselves.
//
// The tests run only with OVERBOOT_VMTEST=1 (make vmtest sets it), as
// root, with the Debian packages make deps installs; guests reach only
// this machine's loopback (user networking with restrict=on) or the
// namespaces the tests make.
package vmtest
