// Package swtpmtest gives tests a real TPM 2.0: swtpm, one state
// directory per test machine, kept across the machine's reboots (Boot
// restarts swtpm on it, so the PCRs start from zero and the EK stays), and
// a TCG2 crypto-agile event log that looks like a Secure Boot through
// OVMF, shim and GRUB (Log), its digests extended into the TPM's SHA-256
// PCRs so that the log replays to what the TPM quotes.
//
// Tests that use it need swtpm (internal/testneed): they skip without it,
// and fail under OVERBOOT_STRICT=1.
package swtpmtest
