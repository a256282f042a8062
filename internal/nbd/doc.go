// Package nbd is the boot agent's network block device: it serves a
// read-only image to the kernel as /dev/nbdN from inside the agent.
//
// The agent makes a socket pair, hands one end to the kernel over generic
// netlink (Connect, Linux only) and answers the kernel's requests on the
// other end (Serve) from a Backend, anything with ReadAt and Size:
//
//	kernel nbd.ko <-socketpair-> Serve(ctx, conn, backend) -> remote image
//
// There is no handshake: the netlink attributes (size, block size, flags,
// timeouts) stand in for it, and the kernel goes straight to the
// transmission phase of the NBD protocol (proto.go).
//
// Needs: root (CAP_SYS_ADMIN) and the nbd module loaded, for Connect,
// Reconfigure and Disconnect; nothing for the framing and Serve, which the
// tests exercise without root over socket pairs.
//
// Does not: negotiate (no oldstyle or newstyle handshake, no TLS, no
// structured replies, which the kernel does not use), or write: the device is
// flagged read-only and writes and trims are answered with EPERM.
//
// The kernel check (TestKernelNBD, run with OVERBOOT_VMTEST=1) boots Debian's
// kernel in QEMU with nbd.ko and this package's test binary as /init, which
// connects devices over netlink, reads them back through the block layer
// and disconnects them. It needs qemu-system-x86_64, linux-image-amd64 and
// the go command, and fails when one is missing.
package nbd
