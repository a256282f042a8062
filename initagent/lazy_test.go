package initagent

import (
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/verity"
)

func TestLazyTarget(t *testing.T) {
	good := func() boot.HTTPSource {
		return boot.HTTPSource{URL: "http://s/i", Digest: "sha256:" + boot.Digest(strings.Repeat("0", 64)), Size: 1 << 20, Mode: boot.LowerLazy,
			Verity: &boot.Verity{HashURL: "http://s/v", HashSize: 16384, RootHash: strings.Repeat("ab", 32), Salt: "00ff"}}
	}
	tg, err := lazyTarget(good())
	if err != nil {
		t.Fatal(err)
	}
	// The tree's superblock is the block right behind the image's 256.
	if tg.DataBlocks != 256 || tg.HashStartBlock != 257 || len(tg.RootHash) != 32 || string(tg.Salt) != "\x00\xff" {
		t.Errorf("target %+v", tg)
	}
	noSalt := good()
	noSalt.Verity.Salt = ""
	if tg, err := lazyTarget(noSalt); err != nil || tg.Salt != nil {
		t.Errorf("no salt: %+v, %v; want a nil salt (the superblock's)", tg, err)
	}
	for _, tc := range []struct {
		name string
		edit func(h *boot.HTTPSource)
		want string
	}{
		{"no tree", func(h *boot.HTTPSource) { h.Verity = nil }, "no dm-verity tree"},
		{"size", func(h *boot.HTTPSource) { h.Size = 4097 }, "size 4097 is not a whole number"},
		{"tree size", func(h *boot.HTTPSource) { h.Verity.HashSize = 8192 }, "tree is 8192 bytes; an image of 1048576 bytes has one of 16384"},
		{"root hash", func(h *boot.HTTPSource) { h.Verity.RootHash = "abcd" }, `root hash "abcd"`},
		{"salt", func(h *boot.HTTPSource) { h.Verity.Salt = "0g" }, "salt"},
	} {
		h := good()
		tc.edit(&h)
		if _, err := lazyTarget(h); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if got := verity.HashDeviceSize(256); got != 16384 {
		t.Errorf("HashDeviceSize(256) = %d: the test's sizes are wrong", got)
	}
}
