package blobstore

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/overboot/overboot/boot"
)

func TestIngestPublishResolve(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, n, err := s.Ingest(strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	if d != boot.DigestFromSum(sum[:]) || n != 5 {
		t.Fatalf("Ingest = %s, %d", d, n)
	}
	st, err := os.Stat(s.BlobPath(d))
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("blob: %v, mode %v", err, st.Mode())
	}
	m, err := s.Publish(Manifest{Name: "greeting", Kind: KindRoot, Digest: d, Size: n})
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 || m.Created.IsZero() {
		t.Fatalf("Publish = %+v", m)
	}
	d2, n2, _ := s.Ingest(strings.NewReader("hello, world"))
	m2, err := s.Publish(Manifest{Name: "greeting", Kind: KindRoot, Digest: d2, Size: n2})
	if err != nil || m2.Version != 2 {
		t.Fatalf("second Publish = %+v, %v", m2, err)
	}
	got, err := s.Resolve("greeting")
	if err != nil || got.Digest != d2 {
		t.Fatalf("Resolve(name) = %+v, %v", got, err)
	}
	// The old blob stays readable by digest.
	old, err := s.Resolve(string(d))
	if err != nil || old.Size != 5 {
		t.Fatalf("Resolve(old digest) = %+v, %v", old, err)
	}
	all, err := s.List()
	if err != nil || len(all) != 1 || all[0].Name != "greeting" {
		t.Fatalf("List = %+v, %v", all, err)
	}
}

func TestPublishChecks(t *testing.T) {
	s, _ := Open(t.TempDir())
	d, n, _ := s.Ingest(strings.NewReader("x"))
	for name, m := range map[string]Manifest{
		"bad name":     {Name: "../etc", Kind: KindRoot, Digest: d, Size: n},
		"upper name":   {Name: "Root", Kind: KindRoot, Digest: d, Size: n},
		"bad kind":     {Name: "a", Kind: "iso", Digest: d, Size: n},
		"missing blob": {Name: "a", Kind: KindRoot, Digest: testDigest(), Size: n},
		"wrong size":   {Name: "a", Kind: KindRoot, Digest: d, Size: n + 1},
	} {
		if _, err := s.Publish(m); err == nil {
			t.Errorf("%s: Publish succeeded", name)
		}
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBlob(testDigest()); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenBlob(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBlob("sha256:../../x"); err == nil {
		t.Error("OpenBlob accepted a malformed digest")
	}
}

func TestCommitAndConcurrentPublish(t *testing.T) {
	s, _ := Open(t.TempDir())
	f, err := s.TempFile("w-*")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("payload")
	f.Close()
	d, n, err := s.Commit(f.Name())
	if err != nil || n != 7 {
		t.Fatalf("Commit = %s %d %v", d, n, err)
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Fatalf("temp file left behind: %v", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Publish(Manifest{Name: "p", Kind: KindDisk, Digest: d, Size: n}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if m, err := s.Get("p"); err != nil || m.Digest != d {
		t.Fatalf("after concurrent publishes: %+v %v", m, err)
	}
}

func testDigest() boot.Digest {
	sum := sha256.Sum256([]byte("absent"))
	return boot.DigestFromSum(sum[:])
}

// TestIngestAs: content is kept as a blob only when it hashes to the
// digest asked for and has the size asked for; otherwise nothing is left
// in the store, tmp/ included.
func TestIngestAs(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	want := boot.DigestFromSum(sum[:])
	for _, c := range []struct {
		name, body string
		size       int64
	}{
		{"other content", "HELLO", 5},
		{"longer", "hello, world", 5},
		{"longer, size unknown", "hello!", -1},
		{"shorter", "hell", 5},
		{"right content, wrong size", "hello", 4},
	} {
		err := s.IngestAs(strings.NewReader(c.body), want, c.size)
		var de *DigestError
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want a DigestError", c.name, err)
		}
		if _, err := os.Stat(s.BlobPath(want)); err == nil {
			t.Fatalf("%s: kept", c.name)
		}
	}
	if err := s.IngestAs(strings.NewReader("hello"), want, 5); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(s.BlobPath(want)); err != nil || string(b) != "hello" {
		t.Errorf("blob: %q %v", b, err)
	}
	if err := s.IngestAs(strings.NewReader("hello"), want, -1); err != nil {
		t.Errorf("again, size unknown: %v", err)
	}
	filepath.WalkDir(filepath.Join(s.Dir(), "tmp"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {

			t.Errorf("left in tmp: %s", p)
		}
		return nil
	})
}
