package hashtrees

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/overboot/overboot/boot"
)

func image(t *testing.T, size int) (string, boot.Digest) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, boot.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func TestGetBuildsOnceAndVerifies(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "trees"))
	if err != nil {
		t.Fatal(err)
	}
	path, d := image(t, 300*4096)
	var wg sync.WaitGroup
	trees := make([]Tree, 8)
	for i := range trees {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := s.Get(context.Background(), d, path, 300*4096)
			if err != nil {
				t.Error(err)
			}
			trees[i] = tr
		}()
	}
	wg.Wait()
	for _, tr := range trees[1:] {
		if tr != trees[0] {
			t.Fatalf("trees differ: %+v %+v", tr, trees[0])
		}
	}
	tr := trees[0]
	data, _ := os.ReadFile(s.Path(d))
	sum := sha256.Sum256(data)
	if string(tr.Hash) != "sha256:"+hex.EncodeToString(sum[:]) || int64(len(data)) != tr.HashSize {
		t.Errorf("record %+v does not describe the tree file (%d bytes)", tr, len(data))
	}
	if fi, _ := os.Stat(s.recordPath(d)); fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode())
	}
	// Reproducible: the same image gives the same tree in another store.
	s2, _ := Open(filepath.Join(t.TempDir(), "trees2"))
	tr2, err := s2.Get(context.Background(), d, path, 300*4096)
	if err != nil || tr2 != tr {
		t.Errorf("rebuilt: %+v %v, first %+v", tr2, err, tr)
	}
	if got, ok := s.Lookup(d); !ok || got != tr {
		t.Errorf("Lookup: %+v %v", got, ok)
	}
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Fatal("veritysetup is needed (apt-get install cryptsetup-bin)")
	}
	out, err := exec.Command("veritysetup", "verify", path, s.Path(d), tr.RootHash).CombinedOutput()
	if err != nil {
		t.Errorf("veritysetup verify: %v\n%s", err, out)
	}
}

func TestGetRefusesUnpadded(t *testing.T) {
	s, _ := Open(t.TempDir())
	path, d := image(t, 4096*3+100)
	if _, err := s.Get(context.Background(), d, path, 4096*3+100); err == nil || !strings.Contains(err.Error(), "multiple of 4096") {
		t.Errorf("unpadded image: %v", err)
	}
	if _, err := s.Get(context.Background(), d, path, 4096); err == nil || !strings.Contains(err.Error(), "expected") {
		t.Errorf("wrong size: %v", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestLoadRefusesTruncatedTree(t *testing.T) {
	s, _ := Open(t.TempDir())
	path, d := image(t, 16*4096)
	tr, err := s.Get(context.Background(), d, path, 16*4096)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path(d))
	os.WriteFile(s.Path(d), data[:len(data)-1], 0o644)
	if _, ok := s.Lookup(d); ok {
		t.Error("a truncated tree was found")
	}
	// Get rebuilds it.
	if tr2, err := s.Get(context.Background(), d, path, 16*4096); err != nil || tr2 != tr {
		t.Errorf("rebuild: %+v %v", tr2, err)
	}
	if data2, _ := os.ReadFile(s.Path(d)); !bytes.Equal(data2, data) {
		t.Error("rebuilt tree differs")
	}
}

// TestChangedImageRefused: a tree vouches for the image its digest names;
// a file that changed on disk gets none.
func TestChangedImageRefused(t *testing.T) {
	s, _ := Open(t.TempDir())
	path, d := image(t, 8*4096)
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte{1, 2, 3}, 5000)
	f.Close()
	if _, err := s.Get(context.Background(), d, path, 8*4096); err == nil || !strings.Contains(err.Error(), "changed on disk") {
		t.Errorf("changed image: %v", err)
	}
	if _, ok := s.Lookup(d); ok {
		t.Error("a tree was made")
	}
}
