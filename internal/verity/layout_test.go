package verity

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// TestLevel0Span checks the span against a built tree: the digest of each
// data block in a range is in the span, at its place among 128 per block.
func TestLevel0Span(t *testing.T) {
	const blocks = 300 // three level-0 blocks, two levels
	data := goldenData(blocks)
	salt := []byte("salt")
	var hash bytes.Buffer
	if _, err := Build(bytes.NewReader(data), int64(len(data)), &hash, Params{Salt: salt, UUID: [16]byte{1}}); err != nil {
		t.Fatal(err)
	}
	tree := hash.Bytes()
	for _, tc := range []struct {
		off, n   int64
		wantBlks int64 // level-0 blocks in the span
	}{
		{0, 1, 1}, {0, BlockSize * blocks, 3}, {127 * BlockSize, 2 * BlockSize, 2},
		{200 * BlockSize, 1 << 30, 2}, {299 * BlockSize, BlockSize, 1},
	} {
		off, n := Level0Span(blocks, tc.off, tc.n)
		if n != tc.wantBlks*BlockSize {
			t.Errorf("Level0Span(%d, %d): %d bytes, want %d blocks", tc.off, tc.n, n, tc.wantBlks)
			continue
		}
		b := tc.off / BlockSize
		first := b - b%128
		at := off + (b-first)*sha256.Size
		want := sha256.Sum256(append(append([]byte{}, salt...), data[b*BlockSize:(b+1)*BlockSize]...))
		if !bytes.Equal(tree[at:at+sha256.Size], want[:]) {
			t.Errorf("Level0Span(%d, %d) = %d: block %d's digest is not at %d", tc.off, tc.n, off, b, at)
		}
	}
	for _, tc := range []struct {
		blocks uint64
		off, n int64
	}{
		{blocks, blocks * BlockSize, 1}, {blocks, -1, 5}, {blocks, 0, 0}, {1, 0, BlockSize}, {0, 0, 1},
	} {
		if off, n := Level0Span(tc.blocks, tc.off, tc.n); n != 0 {
			t.Errorf("Level0Span(%d, %d, %d) = %d, %d: want empty", tc.blocks, tc.off, tc.n, off, n)
		}
	}
}
