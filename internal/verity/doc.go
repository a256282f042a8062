// Package verity owns dm-verity for overboot: the hash tree mkimage
// builds when it publishes an image, checking data against it, and the
// kernel device the agent reads the image through.
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
//   - Target: the kernel's dm-verity table line, as data (String prints
//     it, DmsetupCommand the equivalent dmsetup command for a dry run).
//   - Create (Linux): sets the Target up through the device-mapper ioctls
//     on /dev/mapper/control and returns the read-only /dev/dm-N; Remove
//     takes it down. A corrupt block fails its read with EIO; no option
//     to restart, to panic or to let corrupt data through is offered.
//
// The one format is fixed (constants BlockSize, Algorithm, HashType):
// other formats are errors naming the field, not options.
//
// Everything but Create is pure Go, without root. Create needs
// CAP_SYS_ADMIN and the dm-mod and dm-verity modules (with dm-bufio and
// reed_solomon, their dependencies on Debian's kernel) already loaded:
// loading them is the agent's job. It makes /dev/mapper/control and
// /dev/dm-N with mknod when no devtmpfs did. It uses no udev, no
// libdevmapper and no /dev/mapper/NAME links.
//
// It does not pad images (the caller pads to BlockSize) and does not
// make forward error correction (FEC) data.
//
// The tests check Build and the Verifier against veritysetup
// (cryptsetup-bin) and fail without it, unless -short. TestCreate needs
// root, loop devices and the dm modules loaded, and skips otherwise.
package verity
