package verity

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sectorsPerBlock is BlockSize in the 512-byte sectors of a table line.
const sectorsPerBlock = BlockSize / 512

// Target is the kernel's dm-verity table for one device, as data: what
// Create loads, and what a dry run prints (String). The parameters are
// those of Documentation/admin-guide/device-mapper/verity.rst:
//
//	<version> <dev> <hash_dev> <data_block_size> <hash_block_size>
//	<num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>
//	[<#opt_params> <opt_params>]
//
// with version 1, sha256 and 4096-byte blocks fixed by this package.
//
// On a corrupt block the kernel's default is kept: the read fails with
// EIO (and the status turns to C). The options that restart or panic the
// machine (restart_on_corruption, panic_on_corruption, the *_on_error
// ones), that let corrupt data through (ignore_corruption), or that
// verify a block only the first time it is read (check_at_most_once,
// which misses a network disk changing under us) are deliberately not
// offered.
type Target struct {
	// DataDevice and HashDevice are block device paths (/dev/loop0) or
	// MAJOR:MINOR; they may be the same device.
	DataDevice string
	HashDevice string
	// DataBlocks is the number of BlockSize data blocks; the device has
	// DataBlocks*8 sectors.
	DataBlocks uint64
	// HashStartBlock is where the tree starts on HashDevice, in BlockSize
	// blocks: HashStartBlock (1) when the superblock is at offset 0.
	HashStartBlock uint64
	// RootHash is the trusted sha256 root hash; Salt is the tree's salt
	// (written "-" when empty).
	RootHash []byte
	Salt     []byte
	// IgnoreZeroBlocks adds ignore_zero_blocks: blocks whose hash is that
	// of a zero block read as zeros without being read or verified.
	IgnoreZeroBlocks bool
}

// Target is the table for the tree under sb with the superblock at
// offset 0 of hashDev.
func (sb *Superblock) Target(dataDev, hashDev string, rootHash []byte) Target {
	return Target{
		DataDevice:     dataDev,
		HashDevice:     hashDev,
		DataBlocks:     sb.DataBlocks,
		HashStartBlock: HashStartBlock,
		RootHash:       rootHash,
		Salt:           sb.Salt,
	}
}

// Target is the table for the tree Build wrote to hashDev (superblock at
// offset 0) for the data on dataDev.
func (t *Tree) Target(dataDev, hashDev string) Target {
	return t.Superblock.Target(dataDev, hashDev, t.RootHash)
}

// Validate checks what the kernel would reject, so the error names the
// field instead of a bare EINVAL.
func (t Target) Validate() error {
	for _, d := range []struct{ name, dev string }{{"data device", t.DataDevice}, {"hash device", t.HashDevice}} {
		if d.dev == "" || strings.ContainsFunc(d.dev, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("verity target: %s %q: want a path or MAJOR:MINOR, without spaces", d.name, d.dev)
		}
	}
	if t.DataBlocks == 0 || t.DataBlocks > MaxDataBlocks {
		return fmt.Errorf("verity target: data blocks %d: out of range (1 to %d)", t.DataBlocks, uint64(MaxDataBlocks))
	}
	if len(t.RootHash) != digestSize {
		return fmt.Errorf("verity target: root hash of %d bytes, want %d (sha256)", len(t.RootHash), digestSize)
	}
	if len(t.Salt) > MaxSaltSize {
		return fmt.Errorf("verity target: salt of %d bytes, more than %d", len(t.Salt), MaxSaltSize)
	}
	if t.DataDevice == t.HashDevice && t.HashStartBlock < t.DataBlocks {
		return errors.New("verity target: the hash tree starts inside the data (same device, hash start block before the end of the data)")
	}
	return nil
}

// Sectors is the device's length in 512-byte sectors.
func (t Target) Sectors() uint64 { return t.DataBlocks * sectorsPerBlock }

// Params is the target's parameter string, the part of the table line
// after "verity".
func (t Target) Params() string {
	salt := "-"
	if len(t.Salt) > 0 {
		salt = hex.EncodeToString(t.Salt)
	}
	f := []string{
		"1", t.DataDevice, t.HashDevice,
		strconv.Itoa(BlockSize), strconv.Itoa(BlockSize),
		strconv.FormatUint(t.DataBlocks, 10), strconv.FormatUint(t.HashStartBlock, 10),
		Algorithm, hex.EncodeToString(t.RootHash), salt,
	}
	var opts []string
	if t.IgnoreZeroBlocks {
		opts = append(opts, "ignore_zero_blocks")
	}
	if len(opts) > 0 {
		f = append(f, strconv.Itoa(len(opts)))
		f = append(f, opts...)
	}
	return strings.Join(f, " ")
}

// String is the table line, as `dmsetup table` prints it:
// "0 SECTORS verity PARAMS".
func (t Target) String() string {
	return fmt.Sprintf("0 %d verity %s", t.Sectors(), t.Params())
}

// DmsetupCommand is the shell command that sets up the device as Create
// does, for a dry run to print.
func (t Target) DmsetupCommand(name string) string {
	return fmt.Sprintf("dmsetup create %s --readonly --table '%s'", name, t)
}
