// Package initagent is the overboot agent: the /init of the initramfs.
//
// It reads the overboot.* kernel command line (package boot), builds a boot
// plan — a list of steps that are plain values (steps.go) chosen by one
// function, Plan (plan.go), which overboot-init -dry-run prints as well —
// and runs it through an Executor: mount /proc /sys /dev /run, load the kernel modules
// shipped in the initramfs (its list, then the lists of any driver segments
// the server added as further initrds: segments.go, modules_linux.go),
// configure the network with DHCPv4, optionally
// fetch the boot document (a step like the others, whose result plans the
// rest), download the squashfs image into RAM verifying
// its SHA-256 (package initagent/fetch), loop-mount it read-only, mount a
// tmpfs upper and overlayfs as the new root, move /dev /proc /sys /run into
// it and switch_root to the image's init.
//
// With a report URL (overboot.report, or the document's report, which wins)
// the agent POSTs a boot.PhaseReport when each phase starts and ends
// (report.go): best effort, in order, never failing the boot and delaying
// it at most ReportTimeout, at its end. Reports wait for the network and,
// in document mode, for the document; a failure is reported before the
// failure policy runs. Their messages never carry the URLs' tokens or the
// document's secrets.
//
// The plan, the failure policy (Decide) and the console reporting are pure
// and tested without root; the syscalls live in the *_linux.go files and
// run only as PID 1 in an initramfs (vmtest boots them in QEMU).
//
// On failure the agent prints one message naming the phase, the step and
// what to check, then applies overboot.onfail: reboot (the default, after
// overboot.onfail.delay), poweroff, or a rescue shell (/bin/sh, u-root's
// gosh, when the initramfs has one).
//
// The agent never waits for the kernel's entropy pool: nothing in an HTTP
// boot needs cryptographic randomness, and a DHCP transaction ID does not.
package initagent
