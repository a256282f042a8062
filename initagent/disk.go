package initagent

// BlankCheckBytes is how much of a device must be zeros for FormatBlank
// to call it blank: partition tables, boot sectors and the superblocks
// of common filesystems all live there.
const BlankCheckBytes = 64 << 10

// DiskContent says what the start of a device holds.
type DiskContent int

// What ClassifyDisk finds.
const (
	DiskBlank DiskContent = iota // all zeros
	DiskExt4                     // an ext2/3/4 superblock
	DiskOther                    // anything else: not ours to format
)

// ClassifyDisk looks at the first BlankCheckBytes of a device.
func ClassifyDisk(head []byte) DiskContent {
	// ext2/3/4: the superblock at 1024, its magic 0xEF53 at byte 56.
	if len(head) >= 1024+58 && head[1024+56] == 0x53 && head[1024+57] == 0xef {
		return DiskExt4
	}
	for _, b := range head {
		if b != 0 {
			return DiskOther
		}
	}
	return DiskBlank
}
