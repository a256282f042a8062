package mkimage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/internal/testneed"
)

func TestMksquashfsArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, out string
		opt      RootOptions
		want     []string
	}{
		{
			name: "defaults",
			src:  "/srv/tree", out: "/tmp/root.sqfs",
			opt:  RootOptions{Source: "/srv/tree"},
			want: []string{"/srv/tree", "/tmp/root.sqfs", "-noappend", "-exit-on-error", "-mkfs-time", "0", "-comp", "zstd", "-b", "131072", "-no-progress"},
		},
		{
			name: "everything set, progress wanted",
			src:  "tree", out: "img",
			opt:  RootOptions{Source: "tree", Compression: "gzip", Level: 6, BlockSize: 1 << 20, Processors: 3, Progress: io.Discard},
			want: []string{"tree", "img", "-noappend", "-exit-on-error", "-mkfs-time", "0", "-comp", "gzip", "-Xcompression-level", "6", "-b", "1048576", "-processors", "3"},
		},
		{
			name: "xz has no level",
			src:  "tree", out: "img",
			opt:  RootOptions{Source: "tree", Compression: "xz", BlockSize: 4096},
			want: []string{"tree", "img", "-noappend", "-exit-on-error", "-mkfs-time", "0", "-comp", "xz", "-b", "4096", "-no-progress"},
		},
		{
			name: "tar from stdin: no -mkfs-time, never a progress bar",
			src:  "-", out: "img",
			opt:  RootOptions{Source: "root.tar.zst", Compression: "lz4", Progress: io.Discard},
			want: []string{"-", "img", "-tar", "-noappend", "-exit-on-error", "-comp", "lz4", "-b", "131072", "-no-progress"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, MksquashfsArgs(tc.src, tc.out, tc.opt)); diff != "" {
				t.Errorf("MksquashfsArgs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMksquashfsArgvExtras(t *testing.T) {
	mode := int64(0o41755)
	got := mksquashfsArgv("-", "img", RootOptions{Source: "x.tar"}, engineExtras{RootMode: &mode})
	want := []string{"-", "img", "-tar", "-noappend", "-exit-on-error", "-comp", "zstd", "-b", "131072", "-no-progress", "-root-mode", "1755"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tar argv (-want +got):\n%s", diff)
	}
	got = mksquashfsArgv("tree", "img", RootOptions{Source: "tree"}, engineExtras{
		Pseudo:  []string{"etc/fstab F 1700000000 0644 0 0 cat '/w/fstab'"},
		Exclude: []string{"etc/fstab"},
	})
	want = []string{"tree", "img", "-noappend", "-exit-on-error", "-mkfs-time", "0", "-comp", "zstd", "-b", "131072", "-no-progress",
		"-p", "etc/fstab F 1700000000 0644 0 0 cat '/w/fstab'", "-e", "etc/fstab"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("directory argv with fix-up (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     RootOptions
		wantErr string // "" = valid
	}{
		{"zero but source", RootOptions{Source: "x"}, ""},
		{"no source", RootOptions{}, "source: none given"},
		{"unknown compressor", RootOptions{Source: "x", Compression: "brotli"}, `compression "brotli"`},
		{"lzma is not for kernels", RootOptions{Source: "x", Compression: "lzma"}, `compression "lzma"`},
		{"zstd 22", RootOptions{Source: "x", Compression: "zstd", Level: 22}, ""},
		{"zstd 23", RootOptions{Source: "x", Level: 23}, "level 23: zstd wants 1 to 22"},
		{"gzip 10", RootOptions{Source: "x", Compression: "gzip", Level: 10}, "level 10: gzip wants 1 to 9"},
		{"negative level", RootOptions{Source: "x", Compression: "lzo", Level: -1}, "level -1: lzo wants 1 to 9"},
		{"xz level", RootOptions{Source: "x", Compression: "xz", Level: 6}, "xz has no compression levels"},
		{"lz4 level", RootOptions{Source: "x", Compression: "lz4", Level: 1}, "lz4 has no compression levels"},
		{"block 4K", RootOptions{Source: "x", BlockSize: 4096}, ""},
		{"block 1M", RootOptions{Source: "x", BlockSize: 1 << 20}, ""},
		{"block 2K", RootOptions{Source: "x", BlockSize: 2048}, "block size 2048"},
		{"block 2M", RootOptions{Source: "x", BlockSize: 2 << 20}, "block size 2097152"},
		{"block not a power of two", RootOptions{Source: "x", BlockSize: 96 << 10}, "block size 98304"},
		{"negative processors", RootOptions{Source: "x", Processors: -2}, "processors -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opt.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrOption) {
				t.Fatalf("Validate = %v, want an ErrOption containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuildRootErrors(t *testing.T) {
	testneed.Tool(t, "mksquashfs")
	dir := t.TempDir()
	notTar := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notTar, bytes.Repeat([]byte("not a tar archive\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	gzNotTar := filepath.Join(dir, "x.gz")
	if err := os.WriteFile(gzNotTar, gzipBytes(t, bytes.Repeat([]byte("text "), 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		out     string
		opt     RootOptions
		wantIs  error
		wantMsg string
	}{
		{"missing source", filepath.Join(dir, "a.sqfs"), RootOptions{Source: filepath.Join(dir, "nope")}, os.ErrNotExist, "nope"},
		{"not a tar", filepath.Join(dir, "b.sqfs"), RootOptions{Source: notTar}, ErrBadSource, "not a tar archive"},
		{"gzip but not a tar", filepath.Join(dir, "c.sqfs"), RootOptions{Source: gzNotTar}, ErrBadSource, "gzip data but not a compressed tar archive"},
		{"device", filepath.Join(dir, "d.sqfs"), RootOptions{Source: "/dev/null"}, ErrBadSource, "want a directory or a tar archive"},
		{"output inside the source", filepath.Join(tree, "e.sqfs"), RootOptions{Source: tree}, ErrOption, "inside the source"},
		{"bad option", filepath.Join(dir, "f.sqfs"), RootOptions{Source: tree, BlockSize: 3}, ErrOption, "block size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildRoot(context.Background(), tc.out, tc.opt)
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("BuildRoot = %v, want %v containing %q", err, tc.wantIs, tc.wantMsg)
			}
			if _, err := os.Stat(tc.out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output %s exists after a failure", tc.out)
			}
			assertNoLeftovers(t, filepath.Dir(tc.out))
		})
	}
}

func TestBuildRootNoMksquashfs(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := BuildRoot(context.Background(), filepath.Join(t.TempDir(), "x"), RootOptions{Source: t.TempDir()})
	if !errors.Is(err, ErrNoMksquashfs) || !strings.Contains(err.Error(), "install squashfs-tools") {
		t.Fatalf("BuildRoot = %v, want ErrNoMksquashfs", err)
	}
}

// assertNoLeftovers checks that a build left no work directory behind.
func assertNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".mkimage-root-") {
			t.Errorf("work directory %s left behind", e.Name())
		}
	}
}

func TestBarWriter(t *testing.T) {
	var progress bytes.Buffer
	w := &barWriter{progress: &progress, log: slog.New(slog.DiscardHandler)}
	stream := "Parallel mksquashfs: Using 2 processors\nCreating 4.0 filesystem on o10, block size 131072.\n" +
		"\r[==    ] 100/4928   2%\r[===   ] 600/4928  12%\r[===   ] 610/4928  12%" +
		"\r[====  ] 2500/4928  50%\r[===== ] 4928/4928 100%\n\nExportable Squashfs 4.0 filesystem\n"
	// Written in small pieces, as a pipe delivers it.
	for i := 0; i < len(stream); i += 7 {
		w.Write([]byte(stream[i:min(i+7, len(stream))]))
	}
	want := "mksquashfs:   2% (100/4928)\nmksquashfs:  12% (600/4928)\nmksquashfs:  50% (2500/4928)\nmksquashfs: 100% (4928/4928)\n"
	if diff := cmp.Diff(want, progress.String()); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestTailWriter(t *testing.T) {
	w := &tailWriter{log: slog.New(slog.DiscardHandler), max: 32}
	for i := 0; i < 50; i++ {
		io.WriteString(w, "noise line\n")
	}
	io.WriteString(w, "FATAL ERROR: it broke\n")
	got := w.String()
	if !strings.HasSuffix(got, "FATAL ERROR: it broke\n") || len(got) > 32 || strings.HasPrefix(got, "oise") {
		t.Errorf("tail = %q, want whole last lines within 32 bytes", got)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/x":         "'/tmp/x'",
		"/a b/it's":      `'/a b/it'\''s'`,
		"$(rm -rf /)`x`": "'$(rm -rf /)`x`'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
