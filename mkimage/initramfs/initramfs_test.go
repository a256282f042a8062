package initramfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeKernel writes a modules tree: a depends on b and c, c on d; e alone;
// builtin_x is built in.
func fakeKernel(t *testing.T) (dir, agent string) {
	t.Helper()
	dir = t.TempDir()
	rel := filepath.Join(dir, "6.1.0-test")
	files := map[string]string{
		"kernel/fs/a.ko":       "A",
		"kernel/fs/b.ko":       "B",
		"kernel/net/c-dash.ko": "C",
		"kernel/net/d.ko.xz":   "D",
		"kernel/misc/e.ko":     "E",
	}
	for f, body := range files {
		p := filepath.Join(rel, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := "kernel/fs/a.ko: kernel/fs/b.ko kernel/net/c-dash.ko kernel/net/d.ko.xz\nkernel/fs/b.ko:\nkernel/net/c-dash.ko: kernel/net/d.ko.xz\nkernel/net/d.ko.xz:\nkernel/misc/e.ko:\n"
	if err := os.WriteFile(filepath.Join(rel, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "modules.builtin"), []byte("kernel/fs/builtin_x.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent = filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, []byte("#!agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, agent
}

func build(t *testing.T, o Options) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	s, err := Build(context.Background(), &buf, o)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestModuleClosure(t *testing.T) {
	dir, agent := fakeKernel(t)
	_, sum := build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"a", "builtin-x"}, Compression: "none"})
	want := []string{"kernel/fs/a.ko", "kernel/fs/b.ko", "kernel/net/c-dash.ko", "kernel/net/d.ko.xz"}
	if d := cmp.Diff(want, sum.Modules); d != "" {
		t.Errorf("modules (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"builtin-x"}, sum.Builtin); d != "" {
		t.Errorf("builtin (-want +got):\n%s", d)
	}
}

func TestUnknownModule(t *testing.T) {
	dir, agent := fakeKernel(t)
	_, err := Build(context.Background(), &bytes.Buffer{}, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"a", "nosuch"}})
	if !errors.Is(err, ErrNoModule) || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("err = %v", err)
	}
	_, err = Build(context.Background(), &bytes.Buffer{}, Options{Agent: agent, KernelRelease: "9.9", ModulesDir: dir, Modules: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Fatalf("missing release: err = %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{{}, {Agent: "/x", Compression: "lz77", Modules: []string{}}, {Agent: "/nonexistent", Modules: []string{}}, {Agent: "/bin/sh", Modules: []string{"a"}}} {
		if _, err := Build(context.Background(), &bytes.Buffer{}, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestRoundTripAndDeterminism(t *testing.T) {
	dir, agent := fakeKernel(t)
	for _, comp := range Compressions {
		t.Run(comp, func(t *testing.T) {
			o := Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"a", "e"}, Compression: comp}
			b1, sum := build(t, o)
			b2, _ := build(t, o)
			if !bytes.Equal(b1, b2) {
				t.Errorf("two builds differ")
			}
			if sum.Compressed != int64(len(b1)) {
				t.Errorf("summary says %d bytes, wrote %d", sum.Compressed, len(b1))
			}
			segs, err := List(bytes.NewReader(b1))
			if err != nil {
				t.Fatal(err)
			}
			if len(segs) != 1 || segs[0].Compression != comp || segs[0].Length != int64(len(b1)) {
				t.Fatalf("segments %+v", segs)
			}
			got := names(segs[0].Entries)
			for _, want := range []string{"init", "bin/sh", "dev/console", "dev/null", "newroot", "etc/overboot/modules", "lib/modules/6.1.0-test/modules.dep", "lib/modules/6.1.0-test/kernel/net/d.ko.xz", "lib/modules/6.1.0-test/kernel/misc/e.ko"} {
				if !strings.Contains(strings.Join(got, "\n")+"\n", want+"\n") {
					t.Errorf("no %s in %v", want, got)
				}
			}
			for _, e := range segs[0].Entries {
				if e.Name == "dev/console" && (e.Type() != 'c' || e.Major != 5 || e.Minor != 1) {
					t.Errorf("dev/console: %+v", e)
				}
				if e.Name == "init" && e.Mode&0o777 != 0o755 {
					t.Errorf("init mode %o", e.Mode)
				}
				// The rescue shell is the agent called as sh.
				if e.Name == "bin/sh" && (e.Type() != 'l' || e.Link != "/init") {
					t.Errorf("bin/sh: %+v, want a link to /init", e)
				}
			}
		})
	}
	o := Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"a"}, NoRescueShell: true}
	b, _ := build(t, o)
	segs, err := List(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(segs[0].Entries); slices.Contains(got, "bin/sh") {
		t.Errorf("NoRescueShell: bin/sh in %v", got)
	}
}

func TestConcatenated(t *testing.T) {
	dir, agent := fakeKernel(t)
	plain, _ := build(t, Options{Agent: agent, Modules: []string{}, Compression: "none"})
	z, _ := build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"e"}, Compression: "zstd"})
	g, _ := build(t, Options{Agent: agent, Modules: []string{}, Compression: "gzip"})
	all := append(append(append(append([]byte(nil), plain...), make([]byte, 512)...), z...), g...)
	segs, err := List(bytes.NewReader(all))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range segs {
		got = append(got, s.Compression)
	}
	if d := cmp.Diff([]string{"none", "zstd", "gzip"}, got); d != "" {
		t.Fatalf("segments (-want +got):\n%s", d)
	}
	if segs[1].Offset != int64(len(plain)+512) || segs[2].Offset != int64(len(plain)+512+len(z)) {
		t.Errorf("offsets %d %d", segs[1].Offset, segs[2].Offset)
	}
}

func TestListHostile(t *testing.T) {
	dir, agent := fakeKernel(t)
	z, _ := build(t, Options{Agent: agent, KernelRelease: "6.1.0-test", ModulesDir: dir, Modules: []string{"e"}})
	for name, in := range map[string][]byte{
		"empty":         nil,
		"zeros":         make([]byte, 100),
		"garbage":       []byte("hello world"),
		"truncated":     z[:len(z)/2],
		"bad name size": []byte(newcMagic + strings.Repeat("0", 8*11) + "FFFFFFFF" + "00000000"),
	} {
		if _, err := List(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzList(f *testing.F) {
	dir := f.TempDir()
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("x"), 0o755)
	for _, comp := range Compressions {
		var buf bytes.Buffer
		if _, err := Build(context.Background(), &buf, Options{Agent: agent, Modules: []string{}, Compression: comp}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
		f.Add(buf.Bytes()[:buf.Len()/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, err := List(bytes.NewReader(b))
		if err != nil {
			return
		}
		var total int64
		for _, s := range segs {
			if s.Offset < total || s.Length <= 0 {
				t.Fatalf("segment %+v after %d", s, total)
			}
			total = s.Offset + s.Length
		}
		if total > int64(len(b)) {
			t.Fatalf("segments span %d of %d bytes", total, len(b))
		}
	})
}
