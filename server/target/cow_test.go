package target

import (
	"bytes"
	"crypto/rand"
	"fmt"
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

// compactedSize is the size of a log holding n chunks and nothing else.
func compactedSize(n int) int64 {
	return int64(16*n + 12*((n+4095)/4096))
}

// TestCowCompaction: the log, a record a write, is compacted in use once
// it passes twice the live map's size (and cowCompactMin), and on open;
// the disk reads the same throughout, and again after reopening.
func TestCowCompaction(t *testing.T) {
	old := cowCompactMin
	cowCompactMin = 4 << 10
	t.Cleanup(func() { cowCompactMin = old })
	bp, dp, base := cowFixture(t, 8*CowChunk)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	model := append([]byte(nil), base...)
	rng := mrand.New(mrand.NewPCG(3, 4))
	var maxLog int64
	for i := range 600 {
		// Over and over the same four chunks: nearly every record is
		// superseded soon.
		off := rng.Int64N(4*CowChunk/512) * 512
		p := make([]byte, min(int64(1+rng.IntN(16))*512, 4*CowChunk-off))
		rand.Read(p)
		if _, err := c.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
		fi, err := os.Stat(dp + ".log")
		if err != nil {
			t.Fatal(err)
		}
		maxLog = max(maxLog, fi.Size())
		if i%100 == 0 && !bytes.Equal(readAll(t, c), model) {
			t.Fatalf("after write %d the disk differs from the model", i)
		}
	}
	// Compacted at cowCompactMin: it never grows much past it.
	if limit := cowCompactMin + 128; maxLog > limit {
		t.Errorf("the log grew to %d bytes for a map of at most 5 chunks (limit %d)", maxLog, limit)
	}
	if !bytes.Equal(readAll(t, c), model) {
		t.Fatal("the disk differs from the model")
	}
	c.Close()
	c, err = OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fi, err := os.Stat(dp + ".log")
	if err != nil {
		t.Fatal(err)
	}
	if want := compactedSize(len(c.m)); fi.Size() != want {
		t.Errorf("after open the log is %d bytes, want %d: the live map alone", fi.Size(), want)
	}
	if !bytes.Equal(readAll(t, c), model) {
		t.Fatal("the reopened disk differs from the model")
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %o, want 0600", fi.Mode().Perm())
	}
}

// TestCowCompactionCrash simulates a kill -9 or power loss at any point
// of a compaction: before its rename the old log stands beside any
// prefix of the new one (.log.tmp), after it the new log alone. Each
// opens to the same disk, and a stale .log.tmp is removed.
func TestCowCompactionCrash(t *testing.T) {
	bp, dp, base := cowFixture(t, 8*CowChunk)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	model := append([]byte(nil), base...)
	rng := mrand.New(mrand.NewPCG(5, 6))
	for range 200 {
		off := rng.Int64N(8*CowChunk/512) * 512
		p := make([]byte, min(int64(1+rng.IntN(300))*512, 8*CowChunk-off))
		rand.Read(p)
		if _, err := c.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	c.Close()
	oldLog, _ := os.ReadFile(dp + ".log")
	delta, _ := os.ReadFile(dp)
	c, err = OpenCow(bp, dp) // compacts
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, c), model) {
		t.Fatal("the compacted disk differs from the model")
	}
	c.Close()
	newLog, _ := os.ReadFile(dp + ".log")
	if len(newLog) >= len(oldLog) {
		t.Fatalf("open left the log at %d bytes (was %d): not compacted", len(newLog), len(oldLog))
	}
	if d, _ := os.ReadFile(dp); !bytes.Equal(d, delta) {
		t.Fatal("the compaction changed the delta")
	}
	check := func(what string, log, tmp []byte) {
		t.Helper()
		d2 := filepath.Join(t.TempDir(), "d")
		os.WriteFile(d2, delta, 0o600)
		os.WriteFile(d2+".log", log, 0o600)
		if tmp != nil {
			os.WriteFile(d2+".log.tmp", tmp, 0o600)
		}
		c2, err := OpenCow(bp, d2)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		disk := readAll(t, c2)
		c2.Close()
		if !bytes.Equal(disk, model) {
			t.Fatalf("%s: the disk differs from the model", what)
		}
		if _, err := os.Stat(d2 + ".log.tmp"); !os.IsNotExist(err) {
			t.Fatalf("%s: the stale .log.tmp is still there (%v)", what, err)
		}
	}
	for cut := 0; cut <= len(newLog); cut++ {
		check(fmt.Sprintf("old log, new log cut at %d of %d", cut, len(newLog)), oldLog, newLog[:cut])
	}
	check("new log renamed", newLog, nil)
}

// TestCowDiskBytes: DiskBytes counts the delta and the log as they take
// disk, not the base.
func TestCowDiskBytes(t *testing.T) {
	bp, dp, _ := cowFixture(t, 16*CowChunk)
	c, err := OpenCow(bp, dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	usage := func() int64 {
		t.Helper()
		n, err := c.DiskBytes()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := usage(); n != 0 {
		t.Errorf("a new layer takes %d bytes", n)
	}
	p := make([]byte, 3*CowChunk)
	rand.Read(p)
	if _, err := c.WriteAt(p, 4*CowChunk); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dp + ".log")
	if n := usage(); n < 3*CowChunk+fi.Size() || n > 3*CowChunk+64<<10 {
		t.Errorf("3 chunks written: %d bytes on disk, want about %d", n, 3*CowChunk+fi.Size())
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if n := usage(); n != 0 {
		t.Errorf("after Reset the layer takes %d bytes", n)
	}
}
