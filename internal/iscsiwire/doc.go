// Package iscsiwire is the iSCSI codec the target (server/target) and the
// initiator (initagent/initiator) share, so the two cannot read the wire
// differently: PDUs (RFC 7143 section 11: the basic header segment, data
// segments, padding, CRC32C header and data digests) read and written
// with bounds on every length, login and text key=value pairs (section
// 6, with caps on their number and size and refusal of duplicates), and
// CHAP (RFC 1994; MD5, and SHA-256 as CHAP_A 7): challenges from
// crypto/rand, responses, constant-time verification. Secrets (type
// Secret) never print. Pure: no I/O beyond the reader or writer given.
package iscsiwire
