package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// buildMem builds the tree for blocks random data blocks in memory.
func buildMem(t *testing.T, blocks int) (data, hash []byte, tree *Tree) {
	t.Helper()
	data = make([]byte, blocks*BlockSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var h bytes.Buffer
	tree, err := Build(bytes.NewReader(data), int64(len(data)), &h, Params{})
	if err != nil {
		t.Fatal(err)
	}
	return data, h.Bytes(), tree
}

func newVerifier(t *testing.T, hash []byte, root []byte, sb *Superblock) *Verifier {
	t.Helper()
	v, err := NewVerifier(bytes.NewReader(hash), root, sb)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantCorruption(t *testing.T, err error, want CorruptionError) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *CorruptionError", err)
	}
	if diff := cmp.Diff(want, *ce); diff != "" {
		t.Errorf("CorruptionError (-want +got):\n%s", diff)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("errors.Is(%v, ErrCorrupt) is false", err)
	}
	if !strings.Contains(err.Error(), "data block "+strconv.FormatInt(want.Block, 10)+":") {
		t.Errorf("error %q does not name data block %d", err, want.Block)
	}
}

func TestVerifier(t *testing.T) {
	for _, tc := range levelSizes {
		t.Run(strconv.Itoa(tc.blocks), func(t *testing.T) {
			data, hash, tree := buildMem(t, tc.blocks)
			v := newVerifier(t, hash, tree.RootHash, &tree.Superblock)
			if err := v.VerifyAll(bytes.NewReader(data)); err != nil {
				t.Fatalf("VerifyAll of Build's tree: %v", err)
			}

			// A flipped byte in each of three data blocks fails that block only.
			for _, k := range []int{0, tc.blocks / 2, tc.blocks - 1} {
				block := bytes.Clone(data[k*BlockSize:][:BlockSize])
				block[4095] ^= 1
				wantCorruption(t, v.VerifyBlock(int64(k), block), CorruptionError{Block: int64(k)})
			}
			if err := v.VerifyBlock(int64(tc.blocks-1), data[(tc.blocks-1)*BlockSize:]); err != nil {
				t.Errorf("last block after the others failed: %v", err)
			}

			// A wrong root hash fails the first level checked.
			root := bytes.Clone(tree.RootHash)
			root[0] ^= 1
			v = newVerifier(t, hash, root, &tree.Superblock)
			want := CorruptionError{Block: 0}
			if tc.hashBlocks > 0 {
				want = CorruptionError{Block: 0, InTree: true, HashBlock: HashStartBlock}
			}
			wantCorruption(t, v.VerifyBlock(0, data[:BlockSize]), want)
		})
	}
}

// TestVerifierCorruptTree flips a byte in each hash block of a three-level
// tree in turn: the blocks under it fail naming it, the others verify.
func TestVerifierCorruptTree(t *testing.T) {
	const blocks = 16385
	data, hash, tree := buildMem(t, blocks)
	l, err := newLayout(blocks)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		hashBlock uint64
		bad, good int64 // a data block under it, a data block not under it
	}{
		{"top", l.start[2], 0, -1},
		{"level 1, block 1", l.start[1] + 1, 16384, 0},
		{"level 0, block 0", l.start[0], 127, 128},
		{"level 0, last", l.start[0] + 128, 16384, 16383},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bytes.Clone(hash)
			h[tc.hashBlock*BlockSize+7] ^= 1
			v := newVerifier(t, h, tree.RootHash, &tree.Superblock)
			err := v.VerifyBlock(tc.bad, data[tc.bad*BlockSize:][:BlockSize])
			wantCorruption(t, err, CorruptionError{Block: tc.bad, InTree: true, HashBlock: int64(tc.hashBlock)})
			if tc.good >= 0 {
				if err := v.VerifyBlock(tc.good, data[tc.good*BlockSize:][:BlockSize]); err != nil {
					t.Errorf("data block %d, not under hash block %d: %v", tc.good, tc.hashBlock, err)
				}
			}
		})
	}
}

func TestVerifierErrors(t *testing.T) {
	data, hash, tree := buildMem(t, 3)
	v := newVerifier(t, hash, tree.RootHash, &tree.Superblock)
	for _, tc := range []struct {
		name  string
		index int64
		block []byte
		want  string
	}{
		{"negative", -1, data[:BlockSize], "verify data block -1: out of range (the tree covers 3 blocks)"},
		{"past the end", 3, data[:BlockSize], "verify data block 3: out of range"},
		{"short block", 0, data[:100], "verify data block 0: 100 bytes, want 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyBlock(tc.index, tc.block)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrCorrupt) {
				t.Errorf("VerifyBlock: %v, want an error with %q", err, tc.want)
			}
		})
	}

	short := newVerifier(t, hash[:BlockSize], tree.RootHash, &tree.Superblock)
	if err := short.VerifyBlock(0, data[:BlockSize]); err == nil || !strings.Contains(err.Error(), "read hash block 1") {
		t.Errorf("hash device without its tree: %v", err)
	}
	if err := v.VerifyAll(bytes.NewReader(data[:2*BlockSize])); err == nil || !strings.Contains(err.Error(), "verify data block 2: read") {
		t.Errorf("VerifyAll of short data: %v", err)
	}

	if _, err := NewVerifier(bytes.NewReader(hash), tree.RootHash[:20], &tree.Superblock); err == nil {
		t.Error("NewVerifier with a 20-byte root hash: no error")
	}
	if _, err := NewVerifier(bytes.NewReader(hash), tree.RootHash, &Superblock{}); err == nil {
		t.Error("NewVerifier with 0 data blocks: no error")
	}
}

// TestVerifierCache checks that hash blocks are read once while cached,
// and that the cache stays bounded.
func TestVerifierCache(t *testing.T) {
	const blocks = 16385
	data, hash, tree := buildMem(t, blocks)
	r := &countingReaderAt{r: bytes.NewReader(hash)}
	v, err := NewVerifier(r, tree.RootHash, &tree.Superblock)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(256) {
		if err := v.VerifyBlock(i, data[i*BlockSize:][:BlockSize]); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks 0..255: the top block, level 1 block 0, level 0 blocks 0, 1.
	if got := r.reads(); got != 4 {
		t.Errorf("%d hash block reads, want 4", got)
	}

	v.maxCached = 3
	if err := v.VerifyAll(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if n := len(v.cache); n > 3 {
		t.Errorf("%d cached blocks, bound 3", n)
	}
}

type countingReaderAt struct {
	r  *bytes.Reader
	mu sync.Mutex // guards n
	n  int
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.r.ReadAt(b, off)
}

func (c *countingReaderAt) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestVerifierConcurrent verifies all blocks from several goroutines (run
// with -race).
func TestVerifierConcurrent(t *testing.T) {
	const blocks = 1000
	data, hash, tree := buildMem(t, blocks)
	v := newVerifier(t, hash, tree.RootHash, &tree.Superblock)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := int64(w); i < blocks; i += 4 {
				if err := v.VerifyBlock(i, data[i*BlockSize:][:BlockSize]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// TestVerifierVeritysetup is the reverse of TestBuildVeritysetup: a tree
// `veritysetup format` made parses (and agrees with `veritysetup dump`)
// and verifies with our Verifier, and a flipped data byte fails both
// tools, our error naming the block.
func TestVerifierVeritysetup(t *testing.T) {
	veritysetup(t) // skip or fail before making the data
	for _, tc := range levelSizes {
		t.Run(strconv.Itoa(tc.blocks), func(t *testing.T) {
			dir := t.TempDir()
			dataPath, data := randomFile(t, dir, "data", tc.blocks)
			hashPath := dataPath + ".hash"
			out, err := runVeritysetup(t, "format", dataPath, hashPath)
			if err != nil {
				t.Fatal(err)
			}
			dump := parseDump(t, out)
			root, err := hex.DecodeString(dump["Root hash"])
			if err != nil {
				t.Fatalf("root hash in %q: %v", out, err)
			}

			hash, err := os.ReadFile(hashPath)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := ReadSuperblock(bytes.NewReader(hash))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{
				"UUID":        sb.UUIDString(),
				"Data blocks": strconv.FormatUint(sb.DataBlocks, 10),
				"Salt":        hexOf(sb.Salt),
			}
			want := map[string]string{"UUID": dump["UUID"], "Data blocks": dump["Data blocks"], "Salt": dump["Salt"]}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("superblock (-veritysetup +ours):\n%s", diff)
			}
			if got, want := strconv.FormatInt(HashDeviceSize(sb.DataBlocks), 10), dump["Hash device size"]; got != want {
				t.Errorf("HashDeviceSize %s, veritysetup %s", got, want)
			}

			v := newVerifier(t, hash, root, sb)
			if err := v.VerifyAll(bytes.NewReader(data)); err != nil {
				t.Fatalf("VerifyAll of veritysetup's tree: %v", err)
			}

			k := tc.blocks / 2
			flipByte(t, dataPath, int64(k)*BlockSize+1234)
			data[k*BlockSize+1234] ^= 0xff
			wantCorruption(t, v.VerifyAll(bytes.NewReader(data)), CorruptionError{Block: int64(k)})
			_, err = runVeritysetup(t, "verify", dataPath, hashPath, hexOf(root))
			if exitCode(err) <= 0 {
				t.Errorf("veritysetup verify after flipping a byte of block %d: %v, want a failure", k, err)
			}
		})
	}
}
