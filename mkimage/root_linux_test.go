package mkimage

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/testneed"
)

// needRoot: tier-2 tests need root and squashfs-tools; CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	testneed.Root(t, "device nodes, ownership, loop mounts")
	testneed.Tool(t, "mksquashfs")
	testneed.Tool(t, "unsquashfs")
}

const fstabIn = "# /etc/fstab\nUUID=1234 / ext4 errors=remount-ro 0 1\nUUID=5678 /boot ext4 defaults 0 2\n/dev/sda3 none swap sw 0 0\n"

// richTree builds a tree with everything a real root has that naive
// writers get wrong.
func richTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "big"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc", "fstab"), []byte(fstabIn), 0o644))
	for i := range 1000 {
		must(os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("f%04d", i)), []byte(fmt.Sprint(i)), 0o644))
	}
	must(os.Symlink("/nowhere/at/all", filepath.Join(dir, "dangling")))
	must(os.WriteFile(filepath.Join(dir, "hard1"), []byte("linked"), 0o644))
	must(os.Link(filepath.Join(dir, "hard1"), filepath.Join(dir, "hard2")))
	must(os.WriteFile(filepath.Join(dir, "suid"), []byte("#!/bin/sh\n"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "suid"), 0o4755))
	must(os.WriteFile(filepath.Join(dir, "owned"), []byte("x"), 0o640))
	must(os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
	must(unix.Mknod(filepath.Join(dir, "dev", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Chmod(filepath.Join(dir, "dev", "null"), 0o666)) // past the umask
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(unix.Chmod(filepath.Join(dir, "fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(dir, "owned"), "user.test", []byte("hello"), 0))
	return dir
}

// checkImage verifies img against the tree richTree makes.
func checkImage(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{
		"squashfs-root/big/f0999", "squashfs-root/dangling -> /nowhere/at/all",
		"-rwsr-xr-x 0/0", "-rw-r----- 1234/5678", "crw-rw-rw- 0/0", "prw------- 0/0",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("unsquashfs -lln has no %q", want)
		}
	}
	if n := strings.Count(listing, "squashfs-root/big/f"); n != 1000 {
		t.Errorf("the 1000-entry directory lists %d entries", n)
	}

	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "squashfs", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	var s1, s2 unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "hard1"), &s1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(mnt, "hard2"), &s2); err != nil {
		t.Fatal(err)
	}
	if s1.Ino != s2.Ino || s1.Nlink != 2 {
		t.Errorf("hardlink: inodes %d and %d, nlink %d", s1.Ino, s2.Ino, s1.Nlink)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(mnt, "owned"), "user.test", buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Errorf("xattr user.test = %q, %v", buf[:max(n, 0)], err)
	}
	fstab, err := os.ReadFile(filepath.Join(mnt, "etc", "fstab"))
	if err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, l := range strings.Split(string(fstab), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			active = append(active, l)
		}
	}
	if len(active) != 1 || !strings.Contains(active[0], " /boot ") {
		t.Errorf("fstab in the image not fixed:\n%s", fstab)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "big"))
	if err != nil || len(ents) != 1000 {
		t.Errorf("kernel reads %d entries of big/ (%v)", len(ents), err)
	}
}

func TestBuildRootFromDir(t *testing.T) {
	needRoot(t)
	tree := richTree(t)
	img := filepath.Join(t.TempDir(), "root.sqfs")
	res, err := BuildRoot(context.Background(), img, RootOptions{Source: tree})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Fixups) == 0 {
		t.Errorf("no fix-ups reported")
	}
	checkImage(t, img)
	src, err := os.ReadFile(filepath.Join(tree, "etc", "fstab"))
	if err != nil || string(src) != fstabIn {
		t.Errorf("the source fstab changed: %q %v", src, err)
	}
}

func TestBuildRootFromTar(t *testing.T) {
	needRoot(t)
	tree := richTree(t)
	tarball := filepath.Join(t.TempDir(), "root.tar")
	// GNU tar writes the xattrs, devices and hardlinks as a real user's
	// archive would have them.
	if out, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", tree, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	checkTarHasXattr(t, tarball)
	img := filepath.Join(t.TempDir(), "root.sqfs")
	if _, err := BuildRoot(context.Background(), img, RootOptions{Source: tarball}); err != nil {
		t.Fatal(err)
	}
	checkImage(t, img)
}

func checkTarHasXattr(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatal("the test tar has no xattr: the test would prove nothing")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.PAXRecords["SCHILY.xattr.user.test"] != "" {
			return
		}
	}
}
