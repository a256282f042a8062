// Package initramfs builds the overboot initramfs, a compressed newc cpio
// archive holding the agent as /init, an optional rescue shell as /bin/sh,
// and the kernel modules the agent loads at boot with their dependencies
// (from /lib/modules/RELEASE/modules.dep) and, optionally, the firmware
// files they name; builds driver segments (BuildSegment: an extra initrd
// with a few drivers, their dependencies and firmware, and the list the
// agent loads them from, in the layout of package boot); and lists any
// initramfs: several concatenated segments, each plain or compressed, as
// the kernel reads them.
//
// ModuleTree reads a kernel's modules.dep, modules.builtin and
// modules.alias; ModInfo reads a module's .modinfo section (compressed
// modules too).
//
// Building needs no root: device nodes are cpio records, not files. The
// output is deterministic: the same inputs give the same bytes.
package initramfs
