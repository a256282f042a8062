package keeper

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// rangeLog serves b and records the Range headers it was asked for.
type rangeLog struct {
	mu     sync.Mutex
	ranges []string
}

func (l *rangeLog) serve(b []byte) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.ranges = append(l.ranges, r.Header.Get("Range"))
		l.mu.Unlock()
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(b))
	}))
}

func (l *rangeLog) asked(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.ranges {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

// squashfsImage is size bytes with a squashfs superblock whose tables
// start at tables.
func squashfsImage(size, tables int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i * 7)
	}
	copy(b, make([]byte, squashfsSuperblockSize))
	binary.LittleEndian.PutUint32(b[0:], 0x73717368)
	binary.LittleEndian.PutUint16(b[28:], 4)
	binary.LittleEndian.PutUint64(b[40:], uint64(size-100))
	binary.LittleEndian.PutUint64(b[64:], uint64(tables))
	return b
}

// TestDevice: the image and its tree on one device, a read across the
// seam gets both; the tree's first bytes are at the image's size.
func TestDevice(t *testing.T) {
	img := squashfsImage(8<<20, 7<<20)
	tree := bytes.Repeat([]byte("tree"), 4096*4/4) // 4 blocks
	var il, tl rangeLog
	is, ts := il.serve(img), tl.serve(tree)
	defer is.Close()
	defer ts.Close()
	d, err := openDevice(context.Background(), Image{URL: is.URL, Size: int64(len(img)), TreeURL: ts.URL, TreeSize: int64(len(tree)), CacheBytes: 8 << 20, Name: "test"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != int64(len(img)+len(tree)) {
		t.Errorf("size %d", d.Size())
	}
	buf := make([]byte, 8192)
	if n, err := d.ReadAt(buf, int64(len(img))-4096); err != nil || n != len(buf) {
		t.Fatalf("read across the seam: %d, %v", n, err)
	}
	if !bytes.Equal(buf[:4096], img[len(img)-4096:]) || !bytes.Equal(buf[4096:], tree[:4096]) {
		t.Errorf("the seam read other bytes")
	}
	if n, err := d.ReadAt(buf, d.Size()-4096); n != 4096 || err == nil {
		t.Errorf("a read past the end: %d, %v; want 4096 and an error", n, err)
	}

	// Prefetch asks for the squashfs tables (7 MiB on, in 256 KiB
	// chunks) and for the tree's level-0 blocks of them.
	d.prefetch(t.Logf)
	if want := fmt.Sprintf("bytes=%d-", 7<<20); !il.asked(want) {
		t.Errorf("prefetch did not ask for the tables: %q, want %s...", il.ranges, want)
	}

	if _, err := openDevice(context.Background(), Image{URL: is.URL, Size: int64(len(img)) - 1, TreeURL: ts.URL, TreeSize: int64(len(tree)), Name: "test"}, t.Logf); err == nil || !strings.Contains(err.Error(), "whole 4096-byte blocks") {
		t.Errorf("an image of odd size with a tree: %v", err)
	}
	if _, err := openDevice(context.Background(), Image{URL: is.URL, Size: int64(len(img)), TreeURL: ts.URL + "/missing", TreeSize: 8192, Name: "test"}, t.Logf); err == nil || !strings.Contains(err.Error(), "dm-verity tree of image test") {
		t.Errorf("a tree of the wrong size: %v", err)
	}
}

func TestSquashfsTables(t *testing.T) {
	img := squashfsImage(1<<20, 900<<10)
	if off, n, ok := squashfsTables(img, 1<<20); !ok || off != 900<<10 || n != 1<<20-100-900<<10 {
		t.Errorf("tables at %d, %d bytes, %v", off, n, ok)
	}
	for name, edit := range map[string]func(b []byte){
		"magic":   func(b []byte) { b[0] = 'x' },
		"version": func(b []byte) { b[28] = 3 },
		"used":    func(b []byte) { binary.LittleEndian.PutUint64(b[40:], 2<<20) },
		"inodes":  func(b []byte) { binary.LittleEndian.PutUint64(b[64:], 1<<20) },
		"short":   nil,
	} {
		b := append([]byte{}, img[:squashfsSuperblockSize]...)
		if edit != nil {
			edit(b)
		} else {
			b = b[:50]
		}
		if _, _, ok := squashfsTables(b, 1<<20); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}
