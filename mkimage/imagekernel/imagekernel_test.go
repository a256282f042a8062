package imagekernel

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// fakeKernel is enough of a bzImage for blobstore.Check.
func fakeKernel(tag string) []byte {
	b := make([]byte, 4096)
	copy(b[0x202:], "HdrS")
	copy(b[1024:], tag)
	return b
}

type entry struct {
	name string
	typ  byte
	body string
	link string
}

// tarOf makes a tar archive of entries.
func tarOf(t *testing.T, ents []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// feed runs a tar through Capture the way mkimage's build calls it:
// every entry, a regular file's data written to the returned writer.
func feed(t *testing.T, c *Capture, archive []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := c.Capture(h.Name, h)
		if err != nil {
			t.Fatalf("capture %s: %v", h.Name, err)
		}
		if w != nil {
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// files lists the regular files under dir with their contents.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			b, _ := os.ReadFile(p)
			out[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	return out
}

func modulesDep(mods ...string) string {
	var b strings.Builder
	for _, m := range mods {
		b.WriteString(m + ":\n")
	}
	return b.String()
}

// TestCaptureStream: only the kernel files of a stream are copied (the
// vmlinuz files, both modules locations, hard links among them), and
// Find picks the newest release, or the one asked for.
func TestCaptureStream(t *testing.T) {
	k9, k10 := string(fakeKernel("6.1.0-9")), string(fakeKernel("6.1.0-10"))
	archive := tarOf(t, []entry{
		{"etc/", tar.TypeDir, "", ""},
		{"etc/hostname", tar.TypeReg, "node\n", ""},
		{"boot/", tar.TypeDir, "", ""},
		{"boot/vmlinuz-6.1.0-9-amd64", tar.TypeReg, k9, ""},
		{"boot/vmlinuz-6.1.0-10-amd64", tar.TypeReg, k10, ""},
		{"boot/vmlinuz-6.2.0-1-amd64", tar.TypeReg, "no modules for me", ""},
		{"boot/config-6.1.0-10-amd64", tar.TypeReg, "CONFIG_X=y\n", ""},
		{"boot/grub/vmlinuz-nested", tar.TypeReg, "not boot/vmlinuz-*", ""},
		{"usr/lib/modules/6.1.0-10-amd64/modules.dep", tar.TypeReg, modulesDep("kernel/a.ko"), ""},
		{"usr/lib/modules/6.1.0-10-amd64/kernel/a.ko", tar.TypeReg, "A", ""},
		{"usr/lib/modules/6.1.0-10-amd64/kernel/a-again.ko", tar.TypeLink, "", "usr/lib/modules/6.1.0-10-amd64/kernel/a.ko"},
		{"usr/lib/modules/6.1.0-10-amd64/build", tar.TypeSymlink, "", "/usr/src/linux-headers-6.1.0-10-amd64"},
		{"lib/modules/6.1.0-9-amd64/modules.dep", tar.TypeReg, modulesDep(), ""},
		{"usr/bin/true", tar.TypeReg, "ELF", ""},
		{"usr/bin/also-true", tar.TypeLink, "", "usr/bin/true"},
	})
	dir := t.TempDir()
	feed(t, &Capture{Dir: dir}, archive)
	want := map[string]string{
		"boot/vmlinuz-6.1.0-9-amd64":                       k9,
		"boot/vmlinuz-6.1.0-10-amd64":                      k10,
		"boot/vmlinuz-6.2.0-1-amd64":                       "no modules for me",
		"usr/lib/modules/6.1.0-10-amd64/modules.dep":       modulesDep("kernel/a.ko"),
		"usr/lib/modules/6.1.0-10-amd64/kernel/a.ko":       "A",
		"usr/lib/modules/6.1.0-10-amd64/kernel/a-again.ko": "A",
		"lib/modules/6.1.0-9-amd64/modules.dep":            modulesDep(),
	}
	if d := cmp.Diff(want, files(t, dir)); d != "" {
		t.Errorf("captured files (-want +got):\n%s", d)
	}

	k, err := Find(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.0-10-amd64" || k.ModulesDir != filepath.Join(dir, "usr/lib/modules") || !slices.Equal(k.Others, []string{"6.1.0-9-amd64"}) {
		t.Errorf("newest: %+v", k)
	}
	k, err = Find(dir, "6.1.0-9-amd64")
	if err != nil || k.Release != "6.1.0-9-amd64" || k.ModulesDir != filepath.Join(dir, "lib/modules") {
		t.Errorf("asked for 6.1.0-9-amd64: %+v %v", k, err)
	}
	if _, err := Find(dir, "6.2.0-1-amd64"); err == nil || !strings.Contains(err.Error(), "not in the tree, which has 6.1.0-9-amd64, 6.1.0-10-amd64") {
		t.Errorf("a release without modules: %v", err)
	}
}

// TestCaptureNone: a stream without a kernel captures nothing, and Find
// says ErrNoKernel; a kernel without modules.dep is an error naming depmod.
func TestCaptureNone(t *testing.T) {
	dir := t.TempDir()
	feed(t, &Capture{Dir: dir}, tarOf(t, []entry{
		{"etc/hostname", tar.TypeReg, "node\n", ""},
		{"boot/", tar.TypeDir, "", ""},
		{"lib/modules/6.1.0-9-amd64/modules.dep", tar.TypeReg, "", ""}, // modules, no kernel
	}))
	if _, err := Find(dir, ""); !errors.Is(err, ErrNoKernel) {
		t.Errorf("no vmlinuz: %v, want ErrNoKernel", err)
	}
	if _, err := Find(dir, "6.1.0-9-amd64"); !errors.Is(err, ErrNoKernel) {
		t.Errorf("no vmlinuz, a release asked for: %v, want ErrNoKernel", err)
	}
	if _, err := Find(t.TempDir(), ""); !errors.Is(err, ErrNoKernel) {
		t.Errorf("empty tree: %v", err)
	}
	nodep := t.TempDir()
	feed(t, &Capture{Dir: nodep}, tarOf(t, []entry{
		{"boot/vmlinuz-6.1.0-9-amd64", tar.TypeReg, string(fakeKernel("x")), ""},
		{"lib/modules/6.1.0-9-amd64/kernel/a.ko", tar.TypeReg, "A", ""},
	}))
	if _, err := Find(nodep, ""); err == nil || errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "depmod") {
		t.Errorf("no modules.dep: %v", err)
	}
}

// TestCollectDir: from a directory, the same files as from a stream, and
// nothing through a symbolic link (an absolute /lib link would read this
// machine's modules).
func TestCollectDir(t *testing.T) {
	root := t.TempDir()
	write := func(p, body string) {
		t.Helper()
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kern := string(fakeKernel("7"))
	write("boot/vmlinuz-7.0-amd64", kern)
	write("boot/vmlinuz-6.0-amd64", kern)
	write("usr/lib/modules/7.0-amd64/modules.dep", "")
	write("usr/lib/modules/7.0-amd64/kernel/b.ko", "B")
	write("etc/hostname", "node\n")
	os.Symlink("/usr/lib/modules/7.0-amd64/kernel/b.ko", filepath.Join(root, "usr/lib/modules/7.0-amd64/kernel/link.ko"))
	// 6.0's modules are behind a link out of the tree (as an absolute
	// /lib link would read this machine's).
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(outside, "modules/6.0-amd64"), 0o755)
	os.WriteFile(filepath.Join(outside, "modules/6.0-amd64/modules.dep"), nil, 0o644)
	os.Symlink(outside, filepath.Join(root, "lib"))
	dst := t.TempDir()
	if err := Collect(root, dst); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"boot/vmlinuz-7.0-amd64":                kern,
		"usr/lib/modules/7.0-amd64/modules.dep": "",
		"usr/lib/modules/7.0-amd64/kernel/b.ko": "B",
	}
	if d := cmp.Diff(want, files(t, dst)); d != "" {
		t.Errorf("collected (-want +got):\n%s", d)
	}
	if err := Collect(t.TempDir(), t.TempDir()); err != nil {
		t.Errorf("a tree without /boot: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	in := []string{"6.1.0-10-amd64", "6.1.0-9-amd64", "5.10.0-28-amd64", "6.1.0-10-cloud-amd64", "6.10.1"}
	slices.SortFunc(in, CompareVersions)
	want := []string{"5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-10-cloud-amd64", "6.10.1"}
	if d := cmp.Diff(want, in); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
}

// TestBuild: the three blobs, the initramfs holding the kernel's own
// modules (those it lacks left out) and naming the modules blob, which
// unpacks to the same tree.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	rel := "9.9.9-test"
	mods := filepath.Join(dir, "lib/modules")
	write := func(p, body string) {
		t.Helper()
		p = filepath.Join(mods, rel, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", "kernel/fs/squashfs.ko:\nkernel/drivers/block/loop.ko:\nkernel/net/virtio_net.ko: kernel/net/failover.ko\nkernel/net/failover.ko:\n")
	write("modules.builtin", "kernel/fs/overlayfs/overlay.ko\n")
	for _, m := range []string{"kernel/fs/squashfs.ko", "kernel/drivers/block/loop.ko", "kernel/net/virtio_net.ko", "kernel/net/failover.ko"} {
		write(m, "module "+m)
	}
	kfile := filepath.Join(dir, "boot", "vmlinuz-"+rel)
	os.MkdirAll(filepath.Dir(kfile), 0o755)
	os.WriteFile(kfile, fakeKernel(rel), 0o644)
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("#!agent"), 0o755)
	k, err := Find(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := blobstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := Build(ctx, st, k, Options{Agent: agent, Modules: []string{"squashfs", "loop", "overlay", "virtio_net", "e1000e"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.LeftOut, []string{"e1000e"}) || res.Release != rel {
		t.Errorf("result %+v", res)
	}
	kb, _ := os.ReadFile(st.BlobPath(res.Kernel.Digest))
	if !bytes.Equal(kb, fakeKernel(rel)) {
		t.Errorf("kernel blob is not the tree's kernel")
	}
	f, err := st.OpenBlob(res.Initramfs.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	arch, err := initramfs.List(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var marked bool
	for _, a := range arch {
		for _, e := range a.Entries {
			names = append(names, e.Name)
			if r, d, ok := ParseMarker(e.Name); ok {
				marked = r == rel && d == res.Modules.Digest
			}
		}
	}
	for _, want := range []string{"init", "lib/modules/" + rel + "/kernel/net/virtio_net.ko", "lib/modules/" + rel + "/kernel/net/failover.ko", "lib/modules/" + rel + "/kernel/fs/squashfs.ko"} {
		if !slices.Contains(names, want) {
			t.Errorf("initramfs lacks %s: %v", want, names)
		}
	}
	if !marked {
		t.Errorf("initramfs does not name the modules blob %s: %v", res.Modules.Digest, names)
	}

	mf, err := st.OpenBlob(res.Modules.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	out := filepath.Join(t.TempDir(), "unpacked")
	got, err := UnpackModules(mf, out)
	if err != nil || got != rel {
		t.Fatalf("unpack: %q %v", got, err)
	}
	if d := cmp.Diff(files(t, filepath.Join(mods)), files(t, out)); d != "" {
		t.Errorf("unpacked modules (-want +got):\n%s", d)
	}
	// The same tree gives the same blobs.
	again, err := Build(ctx, st, k, Options{Agent: agent, Modules: []string{"squashfs", "loop", "overlay", "virtio_net", "e1000e"}})
	if err != nil || again.Modules != res.Modules || again.Initramfs != res.Initramfs || again.Kernel != res.Kernel {
		t.Errorf("rebuilt: %+v, first %+v (%v)", again, res, err)
	}
}

// TestUnpackModulesRefuses: paths out of the release directory, links.
func TestUnpackModulesRefuses(t *testing.T) {
	for name, ents := range map[string][]entry{
		"dotdot":   {{"r/", tar.TypeDir, "", ""}, {"r/../../etc/x", tar.TypeReg, "x", ""}},
		"absolute": {{"/etc/x", tar.TypeReg, "x", ""}},
		"two":      {{"r/a", tar.TypeReg, "x", ""}, {"s/a", tar.TypeReg, "x", ""}},
		"symlink":  {{"r/a", tar.TypeSymlink, "", "/etc/shadow"}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			zw := zstdWriter(t, &buf)
			zw.Write(tarOf(t, ents))
			zw.Close()
			dir := t.TempDir()
			if _, err := UnpackModules(&buf, filepath.Join(dir, "out")); err == nil {
				t.Errorf("accepted")
			}
			if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
				t.Errorf("wrote outside")
			}
		})
	}
}

func zstdWriter(t *testing.T, w io.Writer) *zstd.Encoder {
	t.Helper()
	zw, err := zstd.NewWriter(w)
	if err != nil {
		t.Fatal(err)
	}
	return zw
}
