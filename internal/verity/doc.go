// Package verity owns dm-verity for overboot: the hash tree mkimage
// builds when it publishes an image, and checking data against it.
//
//   - Superblock: veritysetup's 512-byte header at the start of the hash
//     device (ParseSuperblock, MarshalBinary), strict about every field.
//   - Build: the hash device for an image, byte for byte what
//     `veritysetup format` writes for format 1, sha256, 4096-byte data and
//     hash blocks, the superblock at offset 0. A pool of goroutines hashes
//     the blocks.
//   - Verifier: checks data blocks against a hash device and a trusted
//     root hash in Go, for tests and for the agent (a *CorruptionError
//     names the block).
//
// The one format is fixed (constants BlockSize, Algorithm, HashType):
// other formats are errors naming the field, not options.
//
// Pure Go, no root, no cgo. It does not pad images (the caller pads to
// BlockSize) and does not make forward error correction (FEC) data.
//
// The tests check Build and the Verifier against veritysetup
// (cryptsetup-bin) and fail without it, unless -short.
package verity
