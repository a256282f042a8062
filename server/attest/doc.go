// Package attest checks a TPM-attested boot (enroll = tpm): the
// evidence an agent sends (boot.AttestEvidence) against the session the
// server opened for it (the credential's secret, the nonce, the AK) and
// against what the server served that boot (Served: the kernel, the
// initrds, the command line as GRUB measures it) and the machine's
// firmware baseline. Verify is pure (no I/O): the handlers in package
// server read and write the store around it.
//
// What GRUB measures (Debian's GRUB 2.06 with its tpm verifier, from
// grub-core/commands/tpm.c and grub-core/lib/cmdline.c): every file it
// reads into PCR 9 as an EV_IPL event whose digest is the file's SHA-256
// and whose data is the file's name; every command into PCR 8 as
// "grub_cmd: COMMAND", and the kernel command line into PCR 8 as
// "kernel_cmdline: ARGV" (NUL-terminated), the digest being SHA-256 of
// the string without the prefix and the NUL. ARGV is the linux
// command's arguments, the kernel's file name first, joined by single
// spaces (an argument with a space in double quotes, and \ ' " escaped
// with a backslash): GRUBCmdline.
package attest
