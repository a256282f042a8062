package verity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuildVeritysetup holds Build to veritysetup at the level boundaries:
// `veritysetup verify` accepts our tree, `veritysetup dump` reads our
// superblock as we wrote it, `veritysetup format` with our salt and UUID
// writes the same bytes and root hash, and a flipped data byte fails
// `veritysetup verify`.
func TestBuildVeritysetup(t *testing.T) {
	veritysetup(t) // skip or fail before making the data
	for _, tc := range levelSizes {
		t.Run(strconv.Itoa(tc.blocks), func(t *testing.T) {
			dir := t.TempDir()
			data, _ := randomFile(t, dir, "data", tc.blocks)
			hashPath, tree := buildFile(t, data, Params{})
			root := hexOf(tree.RootHash)

			if _, err := runVeritysetup(t, "verify", data, hashPath, root); err != nil {
				t.Fatalf("veritysetup verify of our tree: %v", err)
			}

			out, err := runVeritysetup(t, "dump", hashPath)
			if err != nil {
				t.Fatal(err)
			}
			sb := tree.Superblock
			want := map[string]string{
				"UUID":             sb.UUIDString(),
				"Hash type":        "1",
				"Data blocks":      strconv.Itoa(tc.blocks),
				"Data block size":  "4096",
				"Hash blocks":      strconv.Itoa(tc.hashBlocks),
				"Hash block size":  "4096",
				"Hash algorithm":   "sha256",
				"Salt":             hexOf(sb.Salt),
				"Hash device size": strconv.FormatInt(tree.HashSize, 10),
			}
			if diff := cmp.Diff(want, parseDump(t, out)); diff != "" {
				t.Errorf("veritysetup dump (-ours +veritysetup):\n%s", diff)
			}
			if got, want := tree.HashSize, int64(1+tc.hashBlocks)*BlockSize; got != want {
				t.Errorf("HashSize = %d, want %d", got, want)
			}
			if got := HashDeviceSize(uint64(tc.blocks)); got != tree.HashSize {
				t.Errorf("HashDeviceSize(%d) = %d, Build wrote %d", tc.blocks, got, tree.HashSize)
			}

			theirs := hashPath + ".veritysetup"
			out, err = runVeritysetup(t, "format", "--salt", hexOf(sb.Salt), "--uuid", sb.UUIDString(), data, theirs)
			if err != nil {
				t.Fatal(err)
			}
			if got := parseDump(t, out)["Root hash"]; got != root {
				t.Errorf("veritysetup format root hash %s, Build's %s", got, root)
			}
			ours, err := os.ReadFile(hashPath)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := os.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, ref) {
				t.Errorf("hash device differs from veritysetup format's (%d and %d bytes, first difference at %d)", len(ours), len(ref), firstDiff(ours, ref))
			}

			flipByte(t, data, int64(tc.blocks-1)*BlockSize+100)
			_, err = runVeritysetup(t, "verify", data, hashPath, root)
			if exitCode(err) <= 0 {
				t.Errorf("veritysetup verify after flipping a data byte: %v, want a failure", err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// goldenData is deterministic data for TestBuildGolden: block i, byte j
// is byte(i*31 + j*7 + j>>8).
func goldenData(blocks int) []byte {
	b := make([]byte, blocks*BlockSize)
	for i := range blocks {
		for j := range BlockSize {
			b[i*BlockSize+j] = byte(i*31 + j*7 + j>>8)
		}
	}
	return b
}

// TestBuildGolden checks Build against figures veritysetup 2.6.1 gave for
// goldenData, so it runs without veritysetup too. To regenerate, write
// goldenData(n) to a file and run
//
//	veritysetup format --salt 000102...1f --uuid 12345678-9abc-4def-8123-456789abcdef DATA HASH
//	sha256sum HASH
func TestBuildGolden(t *testing.T) {
	salt := make([]byte, 32)
	for i := range salt {
		salt[i] = byte(i)
	}
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	for _, tc := range []struct {
		blocks   int
		root     string
		hashFile string // sha256 of the hash device
	}{
		{1, "12457cb350db99eaa9e34ade830b0bbe084c5f5d9cc827ccb843cf8aef533b53", "0f12bf3220be313347674d8e3d6b96663e01058a5fa665099a1ba1eee6c5d5b2"},
		{129, "4e7dbddc9fe038c355df0e47cefacd0aaf3b26b0ef774576c445cd3f3874523f", "f5a00f79fcfa7e8c52bb5240be4c6091869f487ea7d508fdbcecabe22b0c7842"},
	} {
		t.Run(strconv.Itoa(tc.blocks), func(t *testing.T) {
			var hash bytes.Buffer
			tree, err := Build(bytes.NewReader(goldenData(tc.blocks)), int64(tc.blocks)*BlockSize, &hash, Params{Salt: salt, UUID: uuid})
			if err != nil {
				t.Fatal(err)
			}
			if got := hexOf(tree.RootHash); got != tc.root {
				t.Errorf("root hash %s, want %s", got, tc.root)
			}
			if got := fmt.Sprintf("%x", sha256.Sum256(hash.Bytes())); got != tc.hashFile {
				t.Errorf("hash device sha256 %s, want %s", got, tc.hashFile)
			}
			if got := tree.Superblock.UUIDString(); got != "12345678-9abc-4def-8123-456789abcdef" {
				t.Errorf("UUID %s", got)
			}
		})
	}
}

// TestBuildWorkers checks that the tree does not depend on the number of
// workers.
func TestBuildWorkers(t *testing.T) {
	const blocks = 3*batchBlocks + 5
	data := goldenData(blocks)
	salt := []byte("salt")
	var want []byte
	for _, workers := range []int{1, 2, 3, 7, 64} {
		var hash bytes.Buffer
		tree, err := Build(bytes.NewReader(data), int64(len(data)), &hash, Params{Salt: salt, UUID: [16]byte{1}, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		got := append(hash.Bytes(), tree.RootHash...)
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Errorf("%d workers: a different tree than 1 worker", workers)
		}
	}
}

func TestBuildDefaults(t *testing.T) {
	p := Params{}
	a, err := Build(bytes.NewReader(make([]byte, BlockSize)), BlockSize, io.Discard, p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(bytes.NewReader(make([]byte, BlockSize)), BlockSize, io.Discard, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Superblock.Salt) != DefaultSaltSize || bytes.Equal(a.Superblock.Salt, b.Superblock.Salt) {
		t.Errorf("salts %x and %x: want two random %d-byte salts", a.Superblock.Salt, b.Superblock.Salt, DefaultSaltSize)
	}
	if a.Superblock.UUID == b.Superblock.UUID || a.Superblock.UUID[6]>>4 != 4 {
		t.Errorf("UUIDs %s and %s: want two random version 4 UUIDs", a.Superblock.UUIDString(), b.Superblock.UUIDString())
	}
	if diff := cmp.Diff(Params{}, p); diff != "" {
		t.Errorf("Build changed its Params (-want +got):\n%s", diff)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

type failReaderAt struct{}

func (failReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errors.New("i/o error") }

func TestBuildErrors(t *testing.T) {
	block := bytes.NewReader(make([]byte, 2*BlockSize))
	for _, tc := range []struct {
		name string
		data io.ReaderAt
		size int64
		hash io.Writer
		p    Params
		want string
	}{
		{"empty", block, 0, io.Discard, Params{}, "data size 0 bytes is not a positive multiple of 4096: pad the image"},
		{"unaligned", block, 4097, io.Discard, Params{}, "data size 4097 bytes is not a positive multiple of 4096"},
		{"short data", block, 3 * BlockSize, io.Discard, Params{}, "read data at offset 0: ends before the size given"},
		{"read error", failReaderAt{}, BlockSize, io.Discard, Params{}, "read data at offset 0: i/o error"},
		{"long salt", block, BlockSize, io.Discard, Params{Salt: make([]byte, 257)}, "salt_size 257"},
		{"write error", block, BlockSize, failWriter{}, Params{}, "write hash device: disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.data, tc.size, tc.hash, tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// BenchmarkBuild reports Build's throughput (MB/s of data) on 256 MiB in
// memory, with one worker and with one per CPU.
func BenchmarkBuild(b *testing.B) {
	const size = 256 << 20
	data := bytes.NewReader(bytes.Repeat([]byte{0x5a}, size))
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := Build(data, size, io.Discard, Params{Workers: workers}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
