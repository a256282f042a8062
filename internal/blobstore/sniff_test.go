package blobstore

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// squashfs returns a blob of size bytes starting with a squashfs
// superblock, changed by edit.
func squashfs(size int, edit func(sb []byte)) []byte {
	b := make([]byte, size)
	copy(b, "hsqs")
	le := binary.LittleEndian
	le.PutUint32(b[12:], 128<<10) // block_size
	le.PutUint16(b[22:], 17)      // block_log
	le.PutUint16(b[28:], 4)       // s_major
	le.PutUint64(b[40:], uint64(min(size, 3000)))
	if edit != nil {
		edit(b)
	}
	return b
}

// bzImage returns a blob of size bytes with a bzImage setup header.
func bzImage(size int) []byte {
	b := make([]byte, size)
	b[0x1fe], b[0x1ff] = 0x55, 0xaa
	copy(b[0x202:], "HdrS")
	return b
}

func compressed(t *testing.T, name string, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch name {
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write(p)
		err = w.Close()
	case "zstd":
		var w *zstd.Encoder
		if w, err = zstd.NewWriter(&buf); err == nil {
			w.Write(p)
			err = w.Close()
		}
	case "xz":
		var w *xz.Writer
		if w, err = xz.NewWriter(&buf); err == nil {
			w.Write(p)
			err = w.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheck(t *testing.T) {
	cpio := []byte("07070100000001000041ed00000000000000000000000266000000000000000000000000000000000000000000000000000000000000000200000000.\x00")
	le := binary.LittleEndian
	type c struct {
		name string
		blob []byte
		kind Kind
		want string // part of the KindError's message; "" for no error
	}
	cases := []c{
		{"root", squashfs(4096, nil), KindRoot, ""},
		{"root, kind guessed", squashfs(4096, nil), "", ""},
		{"root of 4 KiB blocks", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 4096); le.PutUint16(b[22:], 12) }), KindRoot, ""},
		{"root of 1 MiB blocks", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 1<<20); le.PutUint16(b[22:], 20) }), KindRoot, ""},
		{"root, every byte used", squashfs(4096, func(b []byte) { le.PutUint64(b[40:], 4096) }), KindRoot, ""},
		{"kernel", bzImage(4096), KindKernel, ""},
		{"kernel, kind guessed", bzImage(4096), "", ""},
		{"cpio", cpio, KindInitramfs, ""},
		{"cpio, crc format", append([]byte("070702"), cpio[6:]...), KindInitramfs, ""},
		{"gzip", compressed(t, "gzip", cpio), KindInitramfs, ""},
		{"zstd", compressed(t, "zstd", cpio), KindInitramfs, ""},
		{"xz", compressed(t, "xz", cpio), KindInitramfs, ""},
		{"lz4 legacy", []byte("\x02\x21\x4c\x18\x10\x00\x00\x00data"), KindInitramfs, ""},
		{"initramfs, kind guessed", compressed(t, "gzip", cpio), "", ""},
		{"disk of text", []byte("just some text\n"), KindDisk, ""},
		{"disk that is a squashfs", squashfs(4096, nil), KindDisk, ""},
		{"empty disk", nil, KindDisk, ""},

		{"text as a root", []byte(strings.Repeat("[server]\ndata = /var/lib/overboot\n", 3)[:86]), KindRoot, "text, not a root (squashfs)"},
		{"text, no kind", []byte("# overboot.conf\n[server]\n"), "", "text, not a squashfs root, a kernel or an initramfs"},
		{"binary, no kind", []byte{0, 1, 2, 3, 0xff, 0xfe}, "", "data of no kind overboot knows, not a squashfs root"},
		{"empty root", nil, KindRoot, "empty, not a root"},
		{"empty, no kind", nil, "", "empty, not a squashfs root"},
		{"kernel as a root", bzImage(4096), KindRoot, "a kernel (bzImage), not a root (squashfs)"},
		{"root as a kernel", squashfs(4096, nil), KindKernel, "a squashfs image, not a kernel"},
		{"gzip as a root", compressed(t, "gzip", cpio), KindRoot, "gzip data, not a root"},
		{"root as an initramfs", squashfs(4096, nil), KindInitramfs, "a squashfs image, not an initramfs"},
		{"text as an initramfs", []byte("hello\n"), KindInitramfs, "text, not an initramfs"},
		{"lz4 frame as an initramfs", []byte("\x04\x22\x4d\x18\x64\x40\xa7data"), KindInitramfs, "lz4 frame data (the kernel unpacks only lz4's legacy format, lz4 -l), not an initramfs"},
		{"big-endian squashfs", []byte("sqsh" + strings.Repeat("\x00", 200)), KindRoot, "big-endian"},

		{"squashfs cut at its superblock", squashfs(4096, nil)[:60], KindRoot, "cut short: 60 bytes"},
		{"squashfs magic alone", []byte("hsqs-version-1"), KindRoot, "cut short: 14 bytes"},
		{"squashfs magic alone, no kind", []byte("hsqs-version-1"), "", "a squashfs image cut short: 14 bytes, less than its 96-byte superblock, not a root (squashfs)"},
		{"squashfs version 3", squashfs(4096, func(b []byte) { le.PutUint16(b[28:], 3) }), KindRoot, "of squashfs version 3"},
		{"squashfs block size 3", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 3) }), KindRoot, "block size 3 (want a power of two from 4 KiB to 1 MiB)"},
		{"squashfs block size 2 KiB", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 2048); le.PutUint16(b[22:], 11) }), KindRoot, "block size 2048"},
		{"squashfs block size 2 MiB", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 2<<20); le.PutUint16(b[22:], 21) }), KindRoot, "block size 2097152"},
		{"squashfs block size not a power of two", squashfs(4096, func(b []byte) { le.PutUint32(b[12:], 3<<12) }), KindRoot, "block size 12288"},
		{"squashfs block_log wrong", squashfs(4096, func(b []byte) { le.PutUint16(b[22:], 16) }), KindRoot, "block_log 16"},
		{"squashfs longer than the blob", squashfs(4096, func(b []byte) { le.PutUint64(b[40:], 1<<30) }), KindRoot, "says it has 1073741824 bytes, in a blob of 4096"},
		{"squashfs of nothing", squashfs(4096, func(b []byte) { le.PutUint64(b[40:], 96) }), KindRoot, "says it has 96 bytes"},
		{"bzImage cut short", bzImage(0x20a), KindKernel, "a kernel (bzImage) cut short: 522 bytes"},
		{"setup header alone", bzImage(0x210), "", "cut short: 528 bytes"},
	}
	for _, c := range cases {
		err := Check(bytes.NewReader(c.blob), int64(len(c.blob)), c.kind)
		var ke *KindError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && !errors.As(err, &ke):
			t.Errorf("%s: %v, want a KindError", c.name, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %q, want %q in it", c.name, err, c.want)
		}
	}
	if err := Check(bytes.NewReader(nil), 0, "iso"); err == nil || errors.As(err, new(*KindError)) {
		t.Errorf("kind iso: %v", err)
	}
}

func TestSniff(t *testing.T) {
	for _, c := range []struct {
		blob []byte
		want Kind
	}{
		{squashfs(4096, nil), KindRoot},
		{[]byte("hsqs"), KindRoot}, // a guess: Check says more
		{bzImage(4096), KindKernel},
		{[]byte("070701"), KindInitramfs},
		{[]byte("\x1f\x8b\x08"), KindInitramfs},
		{[]byte("\x02\x21\x4c\x18"), KindInitramfs},
		{[]byte("some text"), KindDisk},
		{nil, KindDisk},
	} {
		if got := Sniff(bytes.NewReader(c.blob)); got != c.want {
			t.Errorf("Sniff(%.16q) = %s, want %s", c.blob, got, c.want)
		}
	}
}

// TestCheckMksquashfs: what mksquashfs makes (as mkimage does) passes as
// a root, at the block sizes mkimage may use.
func TestCheckMksquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatalf("mksquashfs missing: make deps installs squashfs-tools")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("overboot\n"), 0o644)
	for _, bs := range []string{"4K", "128K", "1M"} {
		img := filepath.Join(dir, bs+".sqfs")
		if out, err := exec.Command("mksquashfs", src, img, "-b", bs, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs -b %s: %v\n%s", bs, err, out)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if err := Check(f, fi.Size(), KindRoot); err != nil {
			t.Errorf("mksquashfs -b %s: %v", bs, err)
		}
		if err := Check(f, fi.Size(), ""); err != nil {
			t.Errorf("mksquashfs -b %s, kind guessed: %v", bs, err)
		}
		// The same image cut short, as an interrupted upload leaves it
		// (mksquashfs pads to 4 KiB: cut into what it used).
		sb := make([]byte, 96)
		f.ReadAt(sb, 0)
		short := int64(binary.LittleEndian.Uint64(sb[40:])) - 1
		if err := Check(io.NewSectionReader(f, 0, short), short, KindRoot); err == nil {
			t.Errorf("mksquashfs -b %s, cut to %d bytes: accepted", bs, short)
		}
		f.Close()
	}
}
