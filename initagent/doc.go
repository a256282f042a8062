// Package initagent is the overboot agent: the /init of the initramfs.
//
// In one line: Agent.Boot(cmdline) = run(Plan(boot.Parse(cmdline), doc),
// Executor), where doc is the result of the plan's own FetchDocument step.
//
// It reads the overboot.* kernel command line (package boot) and asks one
// function, Plan (plan.go), for the boot's steps: plain values (steps.go)
// whose String reads like the shell command, which tests inspect without
// root and overboot-init -dry-run prints. An Executor runs them: mount
// /proc /sys /dev /run, load the kernel modules shipped in the initramfs
// (its list, then the lists of any driver segments the server added as
// further initrds: segments.go, modules_linux.go), configure the network
// with DHCPv4 or DHCPv6, fetch the boot document in document mode (a step
// like the others, whose result plans the rest) or, for a machine enrolled
// by its TPM (overboot.attest), have the TPM prove what booted and open
// the document the server seals to it (the Attest step: the exchange in
// attest.go, the TPM through go-attestation in tpm_linux.go), download the squashfs
// image into RAM verifying its SHA-256 or attach and verify an iSCSI LUN,
// loop-mount the image read-only (or read it on demand through the
// keeper), mount a tmpfs or iSCSI upper and overlayfs as the new root,
// hand the iSCSI sessions to the keeper (Keep), move /dev /proc /sys /run
// into the new root and switch_root to the image's init.
//
// The keeper (initagent/keeper) is the agent's one child that outlives
// it: it serves a lazy root over NBD and logs failed iSCSI connections in
// again (initagent/initiator's Watcher), after switch_root for as long as the
// machine runs. LazyAttach starts it; Keep hands it the sessions that
// ISCSIAttach and IBFTAttach made, or starts it when there is no lazy
// root.
//
// Where things live: the plan and its steps are pure (plan.go, steps.go,
// handover.go, disk.go); LinuxExecutor (exec_linux.go) only dispatches
// each step to the file of its concern: mount_linux.go, loop_linux.go,
// modules_linux.go, net_linux.go and net6_linux.go, download_linux.go,
// iscsi_linux.go (and Keep; the protocol is in initagent/initiator),
// tpm_linux.go (Attest),
// lazy_linux.go, verify_linux.go,
// format_linux.go (ext4 on a blank disk), files_linux.go (the machine's
// identity), switchroot_linux.go; failure_linux.go applies the failure
// policy. A new kind of step is a value in steps.go, a case in Plan's
// lowerSteps or upperSteps, and a case in LinuxExecutor.Do with its own
// file.
//
// Everything the agent fetches or reports over HTTP goes through one
// client and one retry policy (package initagent/fetch), and every URL it
// shows goes through fetch.RedactURL (fetch.RedactImageURL for an image,
// whose file name stays visible).
//
// With a report URL (overboot.report, or the document's report, which wins)
// the agent POSTs a boot.PhaseReport when each phase starts and ends
// (report.go): best effort, in order, never failing the boot and delaying
// it at most ReportTimeout, at its end. Reports wait for the network and,
// in document mode, for the document; a failure is reported before the
// failure policy runs. Their messages never carry the URLs' tokens, an
// image URL's user information or query, or the document's secrets.
//
// The plan, the failure policy (Decide) and the console reporting are pure
// and tested without root; the syscalls live in the *_linux.go files and
// run only as PID 1 in an initramfs (vmtest boots them in QEMU).
//
// On failure the agent prints one message naming the phase, the step and
// what to check, then applies overboot.onfail: reboot (the default, after
// overboot.onfail.delay), poweroff, or a rescue shell (boot.InitramfsShell:
// the agent's own binary as sh, package initagent/rescue).
//
// The agent never waits for the kernel's entropy pool: nothing in an HTTP
// boot needs cryptographic randomness, and a DHCP transaction ID does not.
package initagent
