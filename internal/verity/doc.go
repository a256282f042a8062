// Package verity owns dm-verity for overboot.
//
//   - Superblock: veritysetup's 512-byte header at the start of the hash
//     device (ParseSuperblock, MarshalBinary), strict about every field.
//
// The one format is fixed (constants BlockSize, Algorithm, HashType):
// other formats are errors naming the field, not options.
package verity
