// Package ipxe renders what the server answers iPXE: the bootstrap that
// sends a machine's facts back (ChainScript, and ParseQuery that reads
// its query: MAC, SMBIOS UUID, host name, architecture, platform, the
// booting NIC's PCI IDs), the kernel script (KernelScript), a menu with
// an optional login form (MenuScript), a wait that asks again
// (AgainScript), a single-use chain (ChainOnceScript), an iSCSI sanboot
// (SANScript) and a refusal (FailScript).
//
// iPXE splits a script line on whitespace with no quoting, reads a token
// starting with # as a comment and expands ${...}: every value is checked
// and a value iPXE would misread is refused, never mangled. Pure: no I/O.
// Only the server reads it; the agent never sees iPXE.
package ipxe
