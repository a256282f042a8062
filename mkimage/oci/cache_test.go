package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
)

// TestFlattenerReadsEachLayerOnce: with a Cache, each layer is opened
// (decompressed, hashed) once however many passes read it, the passes
// give the same bytes, and a layer whose DiffID does not match is not
// kept for a later pass.
func TestFlattenerReadsEachLayerOnce(t *testing.T) {
	layerTar := func(name, body string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
		tw.Close()
		return b.Bytes()
	}
	diffID := func(b []byte) string { h := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(h[:]) }
	opens := map[string]int{}
	layer := func(name string, data []byte, id string) Layer {
		return Layer{Name: name, DiffID: id, Size: int64(len(data)), Open: func() (io.ReadCloser, error) {
			opens[name]++
			return io.NopCloser(bytes.NewReader(data)), nil
		}}
	}
	l1, l2 := layerTar("a", "first"), layerTar("b", "second")
	cache := t.TempDir()
	f := &Flattener{Layers: []Layer{layer("one", l1, diffID(l1)), layer("two", l2, diffID(l2))}, Cache: cache}
	var first, second bytes.Buffer
	if err := f.WriteTar(context.Background(), &first); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteTar(context.Background(), &second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) || first.Len() == 0 {
		t.Error("two passes over the kept layers differ")
	}
	if opens["one"] != 1 || opens["two"] != 1 {
		t.Errorf("layers opened %v times, want once each", opens)
	}

	bad := &Flattener{Layers: []Layer{layer("bad", l1, diffID(l2))}, Cache: t.TempDir()}
	if err := bad.WriteTar(context.Background(), io.Discard); !errors.Is(err, ErrBadLayer) {
		t.Fatalf("a layer that is not its DiffID: %v", err)
	}
	if ents, _ := os.ReadDir(bad.Cache); len(ents) != 0 {
		t.Errorf("a refused layer was kept: %d files in the cache", len(ents))
	}
}
