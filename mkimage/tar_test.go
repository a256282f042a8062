package mkimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// entry is one tar member for tests.
type entry struct {
	Name, Link string
	Type       byte
	Mode       int64
	UID, GID   int
	Uname      string
	Mtime      int64
	Data       string
	Xattrs     map[string]string
}

func makeTar(t testing.TB, format tar.Format, es ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: typ, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			Uname: e.Uname, ModTime: time.Unix(e.Mtime, 0), Size: int64(len(e.Data)), Format: format}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %s: %v", e.Name, err)
		}
		if _, err := io.WriteString(tw, e.Data); typ == tar.TypeReg && err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// standardPAX are the PAX records the tar writer makes from header fields.
var standardPAX = map[string]bool{"path": true, "linkpath": true, "size": true, "uid": true, "gid": true, "uname": true, "gname": true, "mtime": true, "atime": true, "ctime": true}

// readEntries lists a tar archive as entries (mode, ids, names, data, xattrs).
func readEntries(t testing.TB, b []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read rewritten tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := entry{Name: h.Name, Link: h.Linkname, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Uname: h.Uname + h.Gname, Mtime: h.ModTime.Unix(), Data: string(data)}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[x] = v
			} else if !standardPAX[k] {
				t.Errorf("entry %s: PAX record %s kept", h.Name, k)
			}
		}
		out = append(out, e)
	}
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return zw.EncodeAll(b, nil)
}

func xzBytes(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw, err := xz.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func TestTarReader(t *testing.T) {
	plain := makeTar(t, tar.FormatPAX, entry{Name: "a", Data: "hello", Mode: 0o644})
	gnu := makeTar(t, tar.FormatGNU, entry{Name: "a", Data: "hello", Mode: 0o644})
	v7 := makeTar(t, tar.FormatUSTAR, entry{Name: "a", Data: "hello", Mode: 0o644})
	copy(v7[257:265], make([]byte, 8)) // strip the ustar magic: an old v7 header...
	var sum int64
	for i, c := range v7[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	copy(v7[148:156], fmt.Sprintf("%06o\x00 ", sum)) // ...with a valid checksum
	empty := make([]byte, 10240)
	for _, tc := range []struct {
		name     string
		in       []byte
		wantComp string
		wantErr  string
	}{
		{"plain pax", plain, "", ""},
		{"plain gnu", gnu, "", ""},
		{"v7", v7, "", ""},
		{"empty archive", empty, "", ""},
		{"gzip", gzipBytes(t, plain), "gzip", ""},
		{"zstd", zstdBytes(t, plain), "zstd", ""},
		{"xz", xzBytes(t, plain), "xz", ""},
		{"text", []byte(strings.Repeat("hello world\n", 100)), "", "not a tar archive"},
		{"short", []byte("hi"), "", "not a tar archive"},
		{"zstd text", zstdBytes(t, []byte(strings.Repeat("x", 1000))), "zstd", "zstd data but not a compressed tar archive"},
		{"broken gzip", []byte{0x1f, 0x8b, 0, 0, 0}, "gzip", "gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, comp, closeFn, err := tarReader(bytes.NewReader(tc.in))
			if comp != tc.wantComp {
				t.Errorf("compression %q, want %q", comp, tc.wantComp)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("tarReader = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("tarReader: %v", err)
			}
			defer closeFn()
			if _, err := rewriteTar(r, io.Discard, false, nil); err != nil {
				t.Fatalf("rewriteTar: %v", err)
			}
		})
	}
}

func TestCleanTarName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		unsafe   bool
	}{
		{in: "./", want: "."},
		{in: ".", want: "."},
		{in: "/", want: "."},
		{in: "", want: "."},
		{in: "./etc/fstab", want: "etc/fstab"},
		{in: "/etc/fstab", want: "etc/fstab"},
		{in: "usr/lib/", want: "usr/lib"},
		{in: "a//b/./c", want: "a/b/c"},
		{in: "../etc/passwd", unsafe: true},
		{in: "a/../../b", unsafe: true},
		{in: "a/../b", unsafe: true},
		{in: "..", unsafe: true},
		{in: "a/..", unsafe: true},
		{in: "a/..b", want: "a/..b"},
		{in: "...", want: "..."},
	} {
		got, err := cleanTarName(tc.in)
		if tc.unsafe {
			if !errors.Is(err, ErrUnsafeTar) {
				t.Errorf("cleanTarName(%q) = %q, %v; want ErrUnsafeTar", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanTarName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRewriteTar(t *testing.T) {
	fstab := "UUID=1 / ext4 defaults 0 1\nLABEL=s none swap sw 0 0\n/dev/sda1 /boot ext4 defaults 0 2\n"
	fixed := "# overboot: netboot root, dropped: UUID=1 / ext4 defaults 0 1\n# overboot: netboot root, dropped: LABEL=s none swap sw 0 0\n/dev/sda1 /boot ext4 defaults 0 2\n"
	for _, tc := range []struct {
		name      string
		format    tar.Format
		in        []entry
		noFixups  bool
		want      []entry
		wantStats tarStats
		wantErr   string
		wantIs    error
	}{
		{
			name:   "root tree with names, owners and xattrs",
			format: tar.FormatPAX,
			in: []entry{
				{Name: "./", Type: tar.TypeDir, Mode: 0o755, Uname: "root", Mtime: 100},
				{Name: "./etc/", Type: tar.TypeDir, Mode: 0o755, Mtime: 90},
				{Name: "./etc/fstab", Mode: 0o640, UID: 7, GID: 8, Uname: "lp", Mtime: 80, Data: fstab},
				{Name: "./bin/ping", Mode: 0o4755, Uname: "root", Mtime: 300, Data: "ELF", Xattrs: map[string]string{"security.capability": "\x01\x00", "user.test": "hello"}},
				{Name: "./bin/ping6", Type: tar.TypeLink, Link: "./bin/ping", Mtime: 300},
				{Name: "./home/u/f", Mode: 0o600, UID: 1234, GID: 5678, Uname: "nobody", Mtime: 50, Data: "x"},
				{Name: "./dev/null", Type: tar.TypeChar, Mode: 0o666, Mtime: 60},
				{Name: "./run/fifo", Type: tar.TypeFifo, Mode: 0o600, Mtime: 60},
				{Name: "./lib", Type: tar.TypeSymlink, Link: "usr/lib", Mode: 0o777, Mtime: 60},
				{Name: "./dangling", Type: tar.TypeSymlink, Link: "/nonexistent/../x", Mode: 0o777, Mtime: 60},
			},
			want: []entry{
				{Name: "etc", Type: tar.TypeDir, Mode: 0o755, Mtime: 90},
				{Name: "etc/fstab", Type: tar.TypeReg, Mode: 0o640, UID: 7, GID: 8, Mtime: 80, Data: fixed},
				{Name: "bin/ping", Type: tar.TypeReg, Mode: 0o4755, Mtime: 300, Data: "ELF", Xattrs: map[string]string{"security.capability": "\x01\x00", "user.test": "hello"}},
				{Name: "bin/ping6", Type: tar.TypeLink, Link: "bin/ping", Mtime: 300},
				{Name: "home/u/f", Type: tar.TypeReg, Mode: 0o600, UID: 1234, GID: 5678, Mtime: 50, Data: "x"},
				{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Mtime: 60},
				{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600, Mtime: 60},
				{Name: "lib", Type: tar.TypeSymlink, Link: "usr/lib", Mode: 0o777, Mtime: 60},
				{Name: "dangling", Type: tar.TypeSymlink, Link: "/nonexistent/../x", Mode: 0o777, Mtime: 60},
			},
			wantStats: tarStats{
				Entries:  15, // . etc etc/fstab bin bin/ping bin/ping6 home home/u home/u/f dev dev/null run run/fifo lib dangling
				MaxMtime: 300,
				Root:     &rootAttrs{Mode: 0o755, Mtime: 100},
				Fixups:   []string{`etc/fstab: dropped "UUID=1 / ext4 defaults 0 1"`, `etc/fstab: dropped "LABEL=s none swap sw 0 0"`},
			},
		},
		{
			name:     "no fix-ups",
			format:   tar.FormatGNU,
			noFixups: true,
			in:       []entry{{Name: "etc/fstab", Mode: 0o644, Data: fstab}},
			want:     []entry{{Name: "etc/fstab", Type: tar.TypeReg, Mode: 0o644, Data: fstab}},
			wantStats: tarStats{
				Entries: 3,
			},
		},
		{
			name:   "fstab symlink is noted",
			format: tar.FormatUSTAR,
			in:     []entry{{Name: "etc/fstab", Type: tar.TypeSymlink, Link: "../run/fstab", Mode: 0o777}},
			want:   []entry{{Name: "etc/fstab", Type: tar.TypeSymlink, Link: "../run/fstab", Mode: 0o777}},
			wantStats: tarStats{
				Entries: 3,
				Notes:   []string{"etc/fstab is a symbolic link in the archive: not fixed"},
			},
		},
		{
			name:   "absolute names and a later directory entry",
			format: tar.FormatUSTAR,
			in: []entry{
				{Name: "/usr/bin/x", Mode: 0o755, Data: "x", Mtime: 5},
				{Name: "/usr/", Type: tar.TypeDir, Mode: 0o700, Mtime: 4},
			},
			want: []entry{
				{Name: "usr/bin/x", Type: tar.TypeReg, Mode: 0o755, Data: "x", Mtime: 5},
				{Name: "usr", Type: tar.TypeDir, Mode: 0o700, Mtime: 4},
			},
			wantStats: tarStats{Entries: 4, MaxMtime: 5},
		},
		{
			name:    "dot-dot",
			in:      []entry{{Name: "../../etc/passwd", Data: "x"}},
			wantErr: `"../../etc/passwd": contains ".."`,
			wantIs:  ErrUnsafeTar,
		},
		{
			name:    "hard link out of the root",
			in:      []entry{{Name: "a", Data: "x"}, {Name: "b", Type: tar.TypeLink, Link: "../a"}},
			wantErr: `hard link "b"`,
			wantIs:  ErrUnsafeTar,
		},
		{
			name:    "hard link to nothing",
			in:      []entry{{Name: "b", Type: tar.TypeLink, Link: "a"}},
			wantErr: "not earlier in the archive",
			wantIs:  ErrBadSource,
		},
		{
			name:    "hard link to a directory",
			in:      []entry{{Name: "d", Type: tar.TypeDir}, {Name: "b", Type: tar.TypeLink, Link: "d"}},
			wantErr: "hard link to the directory",
			wantIs:  ErrBadSource,
		},
		{
			name:    "through a symlink",
			in:      []entry{{Name: "etc", Type: tar.TypeSymlink, Link: "/etc"}, {Name: "etc/shadow", Data: "x"}},
			wantErr: "etc is a symbolic link, not a directory",
			wantIs:  ErrUnsafeTar,
		},
		{
			name:    "file where a directory was implied",
			in:      []entry{{Name: "a/b", Data: "x"}, {Name: "a", Data: "y"}},
			wantErr: "earlier entries use it as a directory",
			wantIs:  ErrBadSource,
		},
		{
			name:    "duplicate",
			in:      []entry{{Name: "a", Data: "1"}, {Name: "./a", Data: "2"}},
			wantErr: "appears twice",
			wantIs:  ErrBadSource,
		},
		{
			name:    "two roots",
			in:      []entry{{Name: "./", Type: tar.TypeDir}, {Name: "/", Type: tar.TypeDir}},
			wantErr: "appears twice",
			wantIs:  ErrBadSource,
		},
		{
			name:    "root is a file",
			in:      []entry{{Name: ".", Data: "x"}},
			wantErr: "the root is a regular file",
			wantIs:  ErrBadSource,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			format := tc.format
			if format == 0 {
				format = tar.FormatPAX
			}
			in := makeTar(t, format, tc.in...)
			var out bytes.Buffer
			st, err := rewriteTar(bytes.NewReader(in), &out, tc.noFixups, nil)
			check, checkErr := rewriteTar(bytes.NewReader(in), nil, tc.noFixups, nil)
			if tc.wantErr != "" {
				if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("rewriteTar = %v, want %v containing %q", err, tc.wantIs, tc.wantErr)
				}
				if checkErr == nil || checkErr.Error() != err.Error() {
					t.Errorf("check only = %v, want %v", checkErr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("rewriteTar: %v", err)
			}
			if checkErr != nil {
				t.Fatalf("check only: %v", checkErr)
			}
			if diff := cmp.Diff(tc.want, readEntries(t, out.Bytes())); diff != "" {
				t.Errorf("rewritten archive (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStats, st); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st, check); diff != "" {
				t.Errorf("check-only stats differ from rewrite stats (-rewrite +check):\n%s", diff)
			}
		})
	}
}

// FuzzRewriteTar feeds rewriteTar any bytes: it must not panic, and what it
// writes must be a tar archive with clean, unique, relative names and no owner
// names, which a second rewrite leaves as it is.
func FuzzRewriteTar(f *testing.F) {
	f.Add(makeTar(f, tar.FormatPAX,
		entry{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		entry{Name: "etc/fstab", Data: "/dev/sda1 / ext4 defaults 0 1\n", Uname: "root"},
		entry{Name: "bin/x", Data: "x", Xattrs: map[string]string{"user.a": "b"}},
		entry{Name: "bin/y", Type: tar.TypeLink, Link: "bin/x"}))
	f.Add(makeTar(f, tar.FormatGNU, entry{Name: strings.Repeat("long/", 40) + "name", Data: "x"}))
	f.Add(makeTar(f, tar.FormatUSTAR, entry{Name: "../x", Data: "x"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		// A few header bytes can describe a sparse file of terabytes, which
		// rewriteTar expands (as GNU tar would on extraction): cap the output.
		var out bytes.Buffer
		st, err := rewriteTar(bytes.NewReader(in), &capWriter{w: &out, n: 1 << 20}, false, nil)
		if err != nil {
			return
		}
		if st.Entries < 1 {
			t.Fatalf("%d entries: the root is always one", st.Entries)
		}
		names := map[string]bool{}
		for _, e := range readEntries(t, out.Bytes()) {
			if e.Name == "." || e.Name == "" || strings.HasPrefix(e.Name, "/") || e.Name != strings.TrimSuffix(e.Name, "/") {
				t.Fatalf("unclean name %q", e.Name)
			}
			if _, err := cleanTarName(e.Name); err != nil {
				t.Fatalf("name %q: %v", e.Name, err)
			}
			if names[e.Name] {
				t.Fatalf("duplicate %q", e.Name)
			}
			names[e.Name] = true
			if e.Uname != "" {
				t.Fatalf("owner name kept on %q", e.Name)
			}
		}
		var again bytes.Buffer
		st2, err := rewriteTar(bytes.NewReader(out.Bytes()), &again, false, nil)
		if err != nil {
			t.Fatalf("second rewrite: %v", err)
		}
		if st2.Entries != st.Entries {
			t.Fatalf("second rewrite: %d entries, first %d", st2.Entries, st.Entries)
		}
		if diff := cmp.Diff(readEntries(t, out.Bytes()), readEntries(t, again.Bytes())); diff != "" {
			t.Fatalf("second rewrite changed the archive (-first +second):\n%s", diff)
		}
	})
}

// capWriter fails once more than n bytes are written.
type capWriter struct {
	w io.Writer
	n int
}

func (c *capWriter) Write(p []byte) (int, error) {
	if len(p) > c.n {
		return 0, errors.New("output cap reached")
	}
	c.n -= len(p)
	return c.w.Write(p)
}

// recorder is a Capturer that keeps what it is given.
type recorder struct {
	calls []string          // "name type"
	data  map[string]string // captured regular files
}

type recordWriter struct {
	bytes.Buffer
	done func(string)
}

func (w *recordWriter) Close() error { w.done(w.String()); return nil }

func (r *recorder) Capture(name string, h *tar.Header) (io.WriteCloser, error) {
	r.calls = append(r.calls, fmt.Sprintf("%s %c %s", name, h.Typeflag, h.Linkname))
	if h.Typeflag != tar.TypeReg || !strings.HasPrefix(name, "boot/") {
		return nil, nil
	}
	return &recordWriter{done: func(s string) { r.data[name] = s }}, nil
}

// TestRewriteTarCapture: the build pass hands the Capturer every entry
// with its cleaned name (and a hard link's cleaned target), and a copy of
// the data it asks for, while the output stays whole; the check pass
// (no writer) captures nothing.
func TestRewriteTarCapture(t *testing.T) {
	in := makeTar(t, tar.FormatPAX,
		entry{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		entry{Name: "./boot/", Type: tar.TypeDir, Mode: 0o755},
		entry{Name: "./boot/vmlinuz-1", Type: tar.TypeReg, Mode: 0o644, Data: "kernel"},
		entry{Name: "/boot/vmlinuz-2", Link: "./boot/vmlinuz-1", Type: tar.TypeLink, Mode: 0o644},
		entry{Name: "etc/motd", Type: tar.TypeReg, Mode: 0o644, Data: "hi"},
	)
	rec := &recorder{data: map[string]string{}}
	var out bytes.Buffer
	if _, err := rewriteTar(bytes.NewReader(in), &out, false, rec); err != nil {
		t.Fatal(err)
	}
	want := []string{"boot 5 ", "boot/vmlinuz-1 0 ", "boot/vmlinuz-2 1 boot/vmlinuz-1", "etc/motd 0 "}
	if d := cmp.Diff(want, rec.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"boot/vmlinuz-1": "kernel"}, rec.data); d != "" {
		t.Errorf("captured (-want +got):\n%s", d)
	}
	got := readEntries(t, out.Bytes())
	if len(got) != 4 || got[1].Data != "kernel" || got[3].Data != "hi" {
		t.Errorf("output changed by the capture: %+v", got)
	}
	none := &recorder{data: map[string]string{}}
	if _, err := rewriteTar(bytes.NewReader(in), nil, false, none); err != nil || len(none.calls) != 0 {
		t.Errorf("check pass: %v %v", none.calls, err)
	}
}
