package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloudKernelPackage is a Debian kernel that is not the one the other
// tests boot (linux-image-amd64): the image carries it.
const cloudKernelPackage = "linux-image-cloud-amd64"

// cloudKernelDeb returns the .deb of the kernel cloudKernelPackage depends
// on, downloaded with apt-get download into the vmtest cache once (it is
// never installed on this machine).
func cloudKernelDeb(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(vmtestCache(), "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	download := func(pkg string) string {
		t.Helper()
		if m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb")); len(m) > 0 {
			return m[len(m)-1]
		}
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get download %s (Debian's mirror): %v\n%s", pkg, err, out)
		}
		m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(m) == 0 {
			t.Fatalf("apt-get download %s: no .deb in %s", pkg, dir)
		}
		return m[len(m)-1]
	}
	deps, err := DebDepends(download(cloudKernelPackage))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "linux-image-") {
			return download(d)
		}
	}
	t.Fatalf("%s depends on no linux-image-*: %v", cloudKernelPackage, deps)
	return ""
}

// TestImageOwnKernel: a root image that carries Debian's cloud kernel
// (not the kernel of the other tests) is built with the CLI into a data
// directory, which takes that kernel, builds its initramfs from the
// image's own modules and publishes both with the image; a profile with
// kernel = image PXE-boots it through the server: the console shows the
// cloud kernel's banner, and the root's init runs after switch_root.
func TestImageOwnKernel(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	deb := cloudKernelDeb(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := BuildTestRoot(tree, TestRootOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	vms, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if len(vms) != 1 {
		t.Fatalf("%s: %d kernels in the tree, want 1", deb, len(vms))
	}
	release := strings.TrimPrefix(filepath.Base(vms[0]), "vmlinuz-")
	if release == a.Release {
		t.Fatalf("the image's kernel %s is the one the tests boot anyway", release)
	}
	// What the package's postinst does when it is installed.
	if out, err := exec.Command("depmod", "-b", tree, release).CombinedOutput(); err != nil {
		t.Fatalf("depmod -b %s %s: %v\n%s", tree, release, err, out)
	}

	data := filepath.Join(dir, "data")
	cmd := exec.Command(a.Overboot, "mkimage", "root", tree, "--store", data, "--name", "cloud", "--agent", a.Agent, "-q")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("overboot mkimage root: %v\n%s", err, out)
	}
	t.Logf("overboot mkimage root:\n%s", out)
	if !strings.Contains(string(out), "its own kernel "+release) {
		t.Fatalf("the image's kernel was not taken:\n%s", out)
	}

	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://%s\n\n[profile default]\nkernel = image\nroot = cloud\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		data, GuestServer)
	_, httpAddr, _ := startServer(t, conf, data)
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:20:01",
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}},
	})
	l, err := vm.Expect("Linux version ", bootTimeout)
	if err != nil {
		t.Fatalf("no kernel banner: %v", err)
	}
	if !strings.Contains(l.Text, "Linux version "+release+" ") {
		t.Fatalf("the machine booted another kernel: %s (want %s)", l.Text, release)
	}
	t.Logf("console %s", l)
	expectPass(t, vm)
}
