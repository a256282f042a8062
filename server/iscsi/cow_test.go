package iscsi

import (
	"bytes"
	"crypto/rand"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func cowFixture(t *testing.T, size int) (string, string, []byte) {
	t.Helper()
	dir := t.TempDir()
	base := make([]byte, size)
	rand.Read(base)
	bp := filepath.Join(dir, "base.img")
	if err := os.WriteFile(bp, base, 0o444); err != nil {
		t.Fatal(err)
	}
	return bp, filepath.Join(dir, "m1.delta"), base
}

func readAll(t *testing.T, c *CowBacking) []byte {
	t.Helper()
	b := make([]byte, c.Size())
	if _, err := c.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCowModel(t *testing.T) {
	bp, dp, base := cowFixture(t, 1<<20+3*512)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	model := append([]byte(nil), base...)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		blocks := int64(len(model) / 512)
		off := rng.Int64N(blocks) * 512
		n := min(int64(1+rng.IntN(300))*512, int64(len(model))-off)
		p := make([]byte, n)
		rand.Read(p)
		if _, err := c.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
		if i%50 == 0 && !bytes.Equal(readAll(t, c), model) {
			t.Fatalf("after write %d the disk differs from the model", i)
		}
	}
	c.Close()
	c, err = OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, c), model) {
		t.Fatal("reopened disk differs from the model")
	}
	fi, _ := os.Stat(dp)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("delta mode %o, want 0600", fi.Mode().Perm())
	}
	if chunks := (int64(len(model)) + CowChunk - 1) / CowChunk; fi.Size() > (chunks+4)*CowChunk { // a write of up to 150 KiB holds at most 4 new slots
		t.Errorf("delta grew to %d bytes for a %d-byte disk: slots are not reused", fi.Size(), len(model))
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, c), base) {
		t.Fatal("reset disk is not the base")
	}
	c.Close()
	got, _ := os.ReadFile(bp)
	if !bytes.Equal(got, base) {
		t.Fatal("the base image changed")
	}
}

// TestCowCrash simulates a kill -9 or power loss in the middle of each
// write: the delta holds the write's new slots, the log holds every
// earlier (synced) record and any prefix of this write's record. Each
// write must read back entirely old or entirely new, and later writes
// must not appear.
func TestCowCrash(t *testing.T) {
	bp, dp, base := cowFixture(t, 4*CowChunk)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	type w struct {
		off  int64
		data []byte
	}
	// Some span chunks, some are partial, some overwrite earlier ones (so
	// slots are freed and reused).
	writes := []w{{0, nil}, {CowChunk - 1024, nil}, {2*CowChunk + 512, nil}, {3 * CowChunk, nil}, {512, nil}, {CowChunk - 512, nil}}
	sizes := []int{4096, 4096, 1024, CowChunk, 2048, 4096}
	model := append([]byte(nil), base...)
	for k := range writes {
		writes[k].data = make([]byte, sizes[k])
		rand.Read(writes[k].data)
		before := append([]byte(nil), model...)
		logBefore, _ := os.ReadFile(dp + ".log")
		if _, err := c.WriteAt(writes[k].data, writes[k].off); err != nil {
			t.Fatal(err)
		}
		copy(model[writes[k].off:], writes[k].data)
		logAfter, _ := os.ReadFile(dp + ".log")
		delta, _ := os.ReadFile(dp)
		for cut := len(logBefore); cut <= len(logAfter); cut++ {
			d2 := filepath.Join(t.TempDir(), "d")
			os.WriteFile(d2, delta, 0o600)
			os.WriteFile(d2+".log", logAfter[:cut], 0o600)
			c2, err := OpenCow(bp, d2)
			if err != nil {
				t.Fatalf("write %d cut %d: %v", k, cut, err)
			}
			disk := readAll(t, c2)
			c2.Close()
			switch {
			case bytes.Equal(disk, model):
				if cut != len(logAfter) {
					t.Fatalf("write %d applied from a torn record (cut %d of %d)", k, cut, len(logAfter))
				}
			case bytes.Equal(disk, before):
			default:
				t.Fatalf("write %d, log cut at %d: the disk is neither before nor after the write", k, cut)
			}
		}
	}
	c.Close()
}

// TestCowEmptyWrite: a write of nothing (a WRITE of 0 blocks) leaves no
// record: an empty one ended the log's replay, and every write after it
// was lost on the next open.
func TestCowEmptyWrite(t *testing.T) {
	bp, dp, base := cowFixture(t, 4*CowChunk)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.WriteAt(nil, 0); n != 0 || err != nil {
		t.Fatalf("an empty write: %d, %v", n, err)
	}
	p := make([]byte, 4096)
	rand.Read(p)
	if _, err := c.WriteAt(p, 512); err != nil {
		t.Fatal(err)
	}
	model := append([]byte(nil), base...)
	copy(model[512:], p)
	c.Close()
	c, err = OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !bytes.Equal(readAll(t, c), model) {
		t.Fatal("a write after an empty one is lost on reopening")
	}
}
