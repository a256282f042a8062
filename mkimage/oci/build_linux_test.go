package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage"
)

// build opens ref and builds its squashfs at out.
func build(t *testing.T, ref, out string, o Options) mkimage.RootResult {
	t.Helper()
	im, err := openRef(t, ref, o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mkimage.BuildRoot(context.Background(), out, mkimage.RootOptions{Source: ref, Tar: im})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	return res
}

// listing is unsquashfs -lln's view of an image: the attribute columns
// of each path (mode, uid/gid, size or device numbers).
func listing(t *testing.T, img string) map[string]string {
	t.Helper()
	out, err := exec.Command(testneed.Tool(t, "unsquashfs"), "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v: %s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		i := strings.Index(line, " squashfs-root")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[:i])
		// mode uid/gid size|major, minor date time
		name, _, _ := strings.Cut(line[i+1:], " -> ")
		m[strings.TrimPrefix(strings.TrimPrefix(name, "squashfs-root"), "/")] = strings.Join(f[:len(f)-2], " ")
	}
	return m
}

// checkAwkwardImage checks the squashfs of awkwardLayers.
func checkAwkwardImage(t *testing.T, img string) {
	t.Helper()
	ls := listing(t, img)
	for path, want := range map[string]string{
		"dev/null":           "crw-rw-rw- 0/0 1, 3",
		"bin/ping":           "-rwsr-xr-x 0/0 4",
		"home/user":          "drwxr-xr-x 1000/1000 ",
		"home/user/notes":    "-rw-r--r-- 1000/1000 1",
		"home/user/.profile": "-rw------- 1000/1000 6",
		"opt":                "drwxr-x--- 0/0",
		"opt/new":            "-rw-r--r-- 0/0 16",
		"usr/lib/data":       "-rw-r--r-- 0/0 20",
		"usr/bin/datalink":   "-rw-r--r-- 0/0 20",
		"lib":                "lrwxrwxrwx 0/0 7",
	} {
		if got, ok := ls[path]; !ok || !strings.HasPrefix(got, strings.TrimSpace(want)) {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	for _, gone := range []string{"bin/gone", "opt/old", "opt/keep", "bin/.wh.gone", "opt/.wh..wh..opq"} {
		if _, ok := ls[gone]; ok {
			t.Errorf("%s is in the image", gone)
		}
	}
}

// TestBuildRootFromRegistryImage: an image pulled from the in-process
// registry becomes a squashfs with each awkward case right, the netboot
// fix-ups applied, and the same digest every time.
func TestBuildRootFromRegistryImage(t *testing.T) {
	testneed.Tool(t, "mksquashfs")
	ref := push(t, startRegistry(t), "awkward:1", image(t, "linux/amd64", awkwardLayers()...))
	dir := t.TempDir()
	epoch := time.Unix(1_650_000_000, 0)
	a := build(t, ref, filepath.Join(dir, "a.sqfs"), Options{Epoch: &epoch})
	checkAwkwardImage(t, filepath.Join(dir, "a.sqfs"))
	if len(a.Fixups) == 0 || !strings.Contains(strings.Join(a.Fixups, "\n"), "etc/fstab: dropped") {
		t.Errorf("fix-ups %q: want the fstab's root and swap entries dropped", a.Fixups)
	}
	b := build(t, ref, filepath.Join(dir, "b.sqfs"), Options{Epoch: &epoch})
	if a.Digest != b.Digest {
		t.Errorf("two builds with SOURCE_DATE_EPOCH: %s and %s, want one digest", a.Digest, b.Digest)
	}
	c := build(t, ref, filepath.Join(dir, "c.sqfs"), Options{})
	d := build(t, ref, filepath.Join(dir, "d.sqfs"), Options{})
	if c.Digest != d.Digest {
		t.Errorf("two builds with the layers' times: %s and %s, want one digest", c.Digest, d.Digest)
	}
	if c.Digest == a.Digest {
		t.Errorf("the epoch changed nothing: %s (layer times are after it)", a.Digest)
	}
}

// childEnv carries the unprivileged build's arguments to the re-executed
// test binary.
const childEnv = "OVERBOOT_OCI_UNPRIVILEGED_BUILD"

// TestBuildRootFromImageAsUnprivilegedUser builds an image as nobody (the
// test binary run again under uid/gid 65534): ownership, devices, setuid
// and security.capability come from the layers, not from the builder.
func TestBuildRootFromImageAsUnprivilegedUser(t *testing.T) {
	if args := os.Getenv(childEnv); args != "" {
		lay, out, _ := strings.Cut(args, "\n")
		if os.Getuid() == 0 {
			t.Fatal("the unprivileged build runs as root")
		}
		build(t, "oci:"+lay, out, Options{})
		return
	}
	testneed.Root(t, "to run a build as another user and extract security.capability")
	testneed.Tool(t, "mksquashfs")
	// t.TempDir's parent is private to root: nobody needs a way in.
	base, err := os.MkdirTemp("", "overboot-oci-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(base, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(image(t, "linux/amd64", awkwardLayers()...)); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(lay, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "oci.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(base, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(outDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(outDir, "root.sqfs")
	cmd := exec.Command(bin, "-test.run=^TestBuildRootFromImageAsUnprivilegedUser$", "-test.v")
	cmd.Dir = outDir
	cmd.Env = append(os.Environ(), childEnv+"="+lay+"\n"+out, "HOME="+outDir, "GOCOVERDIR="+outDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build as nobody: %v\n%s", err, msg)
	}
	var st unix.Stat_t
	if err := unix.Stat(out, &st); err != nil || st.Uid != 65534 {
		t.Fatalf("image %s: uid %d, %v: want it written by nobody", out, st.Uid, err)
	}
	checkAwkwardImage(t, out)
	// security.capability survives into the image: extract bin/cap as root.
	x := filepath.Join(base, "x")
	if msg, err := exec.Command(testneed.Tool(t, "unsquashfs"), "-d", x, out, "bin/cap").CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, msg)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(x, "bin", "cap"), "security.capability", buf)
	if err != nil || string(buf[:n]) != capV2 {
		t.Errorf("bin/cap security.capability: %x, %v; want %x", buf[:max(n, 0)], err, capV2)
	}
}
