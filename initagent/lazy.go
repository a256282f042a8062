package initagent

import (
	"encoding/hex"
	"fmt"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/verity"
)

// lazyTarget is the dm-verity table for a lazy root, devices left blank:
// the image's blocks, then its tree (superblock first) right behind them on
// the same device, as the keeper serves them. Salt is nil when the source
// gives none (the tree's superblock then says). It refuses a source whose
// sizes do not fit a tree of that image, before anything starts.
func lazyTarget(h boot.HTTPSource) (verity.Target, error) {
	v := h.Verity
	if v == nil {
		return verity.Target{}, fmt.Errorf("image %s: no dm-verity tree", h.Digest)
	}
	if h.Size <= 0 || h.Size%verity.BlockSize != 0 {
		return verity.Target{}, fmt.Errorf("image %s: size %d is not a whole number of %d-byte blocks", h.Digest, h.Size, verity.BlockSize)
	}
	blocks := uint64(h.Size / verity.BlockSize)
	if want := verity.HashDeviceSize(blocks); v.HashSize != want {
		return verity.Target{}, fmt.Errorf("image %s: its dm-verity tree is %d bytes; an image of %d bytes has one of %d", h.Digest, v.HashSize, h.Size, want)
	}
	root, err := hex.DecodeString(v.RootHash)
	if err != nil || len(root) != 32 {
		return verity.Target{}, fmt.Errorf("image %s: root hash %q: want 64 hex digits", h.Digest, v.RootHash)
	}
	var salt []byte
	if v.Salt != "" {
		if salt, err = hex.DecodeString(v.Salt); err != nil {
			return verity.Target{}, fmt.Errorf("image %s: salt: %w", h.Digest, err)
		}
	}
	return verity.Target{
		DataBlocks:     blocks,
		HashStartBlock: blocks + verity.HashStartBlock,
		RootHash:       root,
		Salt:           salt,
	}, nil
}
