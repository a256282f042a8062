// Package initramfs builds the overboot initramfs, a compressed newc cpio
// archive holding the agent as /init, an optional rescue shell as /bin/sh,
// and the kernel modules the agent loads at boot with their dependencies
// (from /lib/modules/RELEASE/modules.dep), and lists any initramfs: several
// concatenated segments, each plain or compressed, as the kernel reads them.
//
// Building needs no root: device nodes are cpio records, not files. The
// output is deterministic: the same inputs give the same bytes.
package initramfs
