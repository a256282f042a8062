package verity

import (
	"bytes"
	"strings"
	"testing"
)

func testTarget() Target {
	tree := &Tree{
		Superblock: Superblock{DataBlocks: 129, Salt: bytes.Repeat([]byte{0xa5}, 32)},
		RootHash:   bytes.Repeat([]byte{0x3c}, 32),
	}
	return tree.Target("/dev/loop0", "/dev/loop1")
}

func TestTargetString(t *testing.T) {
	const (
		root = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c"
		salt = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
	)
	for _, tc := range []struct {
		name string
		edit func(*Target)
		want string
	}{
		{"superblock at 0", func(*Target) {}, "0 1032 verity 1 /dev/loop0 /dev/loop1 4096 4096 129 1 sha256 " + root + " " + salt},
		{"no salt", func(t *Target) { t.Salt = nil }, "0 1032 verity 1 /dev/loop0 /dev/loop1 4096 4096 129 1 sha256 " + root + " -"},
		{"ignore zero blocks", func(t *Target) { t.IgnoreZeroBlocks = true }, "0 1032 verity 1 /dev/loop0 /dev/loop1 4096 4096 129 1 sha256 " + root + " " + salt + " 1 ignore_zero_blocks"},
		{"hash after data", func(t *Target) { t.HashDevice, t.HashStartBlock = "7:0", 130 }, "0 1032 verity 1 /dev/loop0 7:0 4096 4096 129 130 sha256 " + root + " " + salt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := testTarget()
			tc.edit(&tg)
			if err := tg.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tg.String(); got != tc.want {
				t.Errorf("String:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	want := "dmsetup create root --readonly --table '0 1032 verity 1 /dev/loop0 /dev/loop1 4096 4096 129 1 sha256 " + root + " " + salt + "'"
	if got := testTarget().DmsetupCommand("root"); got != want {
		t.Errorf("DmsetupCommand:\n got %s\nwant %s", got, want)
	}
}

func TestTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Target)
		want string
	}{
		{"no data device", func(t *Target) { t.DataDevice = "" }, `data device ""`},
		{"space in hash device", func(t *Target) { t.HashDevice = "/dev/my disk" }, `hash device "/dev/my disk"`},
		{"no blocks", func(t *Target) { t.DataBlocks = 0 }, "data blocks 0"},
		{"short root", func(t *Target) { t.RootHash = t.RootHash[:31] }, "root hash of 31 bytes"},
		{"long salt", func(t *Target) { t.Salt = make([]byte, 257) }, "salt of 257 bytes"},
		{"tree in data", func(t *Target) { t.HashDevice = t.DataDevice; t.HashStartBlock = 128 }, "the hash tree starts inside the data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := testTarget()
			tc.edit(&tg)
			err := tg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
