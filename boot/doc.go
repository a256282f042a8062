// Package boot is the contract between the overboot server and the overboot
// agent (the /init in the initramfs). Both sides import it, so they cannot
// drift apart:
//
//   - Params: the kernel command-line parameters, all under the "overboot."
//     prefix, parsed and formatted by the same code (Parse, Params.Format).
//   - Document: the JSON boot document the agent may fetch from the server,
//     naming the lower and upper layers and, for iSCSI, the credentials.
//   - PhaseReport: the JSON the agent POSTs to the report URL (overboot.report
//     or the document's report) for each boot phase that starts and ends,
//     with the phase names (Phases) both sides agree on.
//   - The values both carry: MAC addresses (ParseMAC), host names, tokens
//     that survive a kernel command line and a firmware script
//     (CheckToken), URLs (CheckURL).
//   - The initramfs layout (initramfs.go): the module lists mkimage and the
//     server's driver segments write and the agent reads.
//
// What only the server reads is not here: firmware scripts are package
// server/ipxe's. Everything here is pure: no I/O, no syscalls. Parsing is strict: an unknown
// overboot.* key or a malformed value is an error that names the key.
//
// Secrets never travel on the kernel command line, which every user of the
// booted system can read in /proc/cmdline. A machine that needs secrets gets
// an overboot.doc URL carrying a single-use token and receives the secrets in
// the document.
package boot
