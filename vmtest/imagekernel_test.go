package vmtest

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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

// TestImageOwnKernel: a container image that carries Debian's cloud
// kernel (not the kernel of the other tests) is written by the test as a
// two-layer OCI image layout (the test root, then the kernel's /boot and
// /lib/modules) and imported with the CLI (image import oci:DIR) into a
// data directory: the import takes the kernel from the flattened layers,
// builds its initramfs from the image's own modules and publishes both
// with the image; a profile with kernel = image PXE-boots it through the
// server: the console shows the cloud kernel's banner, and the root's init
// runs after switch_root.
func TestImageOwnKernel(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	deb := cloudKernelDeb(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := BuildTestRoot(root, TestRootOptions{}); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "kernel")
	if out, err := exec.Command("dpkg-deb", "-x", deb, kernel).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	vms, _ := filepath.Glob(filepath.Join(kernel, "boot", "vmlinuz-*"))
	if len(vms) != 1 {
		t.Fatalf("%s: %d kernels in the package, want 1", deb, len(vms))
	}
	release := strings.TrimPrefix(filepath.Base(vms[0]), "vmlinuz-")
	if release == a.Release {
		t.Fatalf("the image's kernel %s is the one the tests boot anyway", release)
	}
	// What the package's postinst does when it is installed.
	if out, err := exec.Command("depmod", "-b", kernel, release).CombinedOutput(); err != nil {
		t.Fatalf("depmod -b %s %s: %v\n%s", kernel, release, err, out)
	}
	lay := filepath.Join(dir, "layout")
	writeLayout(t, lay, dirLayer(t, root, "."), dirLayer(t, kernel, "boot", "lib"))

	data := filepath.Join(dir, "data")
	cmd := exec.Command(a.Overboot, "image", "import", "oci:"+lay, "--name", "cloud", "--store", data, "--agent", a.Agent)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("overboot image import: %v\n%s", err, out)
	}
	t.Logf("overboot image import:\n%s", out)
	if !strings.Contains(string(out), "oci:"+lay+": image sha256:") || !strings.Contains(string(out), "2 layers") {
		t.Fatalf("the import did not read the two-layer layout:\n%s", out)
	}
	if !strings.Contains(string(out), "its own kernel "+release) {
		t.Fatalf("the image's kernel %s was not taken:\n%s", release, out)
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

// dirLayer is an uncompressed layer of the entries under each of rels (a
// directory inside tree, "." for all of it) as they are on disk: type,
// mode, owner, content, link target; written to a file once, read from it.
func dirLayer(t *testing.T, tree string, rels ...string) v1.Layer {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "layer-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, rel := range rels {
		err := filepath.WalkDir(filepath.Join(tree, rel), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			r, err := filepath.Rel(tree, p)
			if err != nil || r == "." {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			var target string
			if fi.Mode()&fs.ModeSymlink != 0 {
				if target, err = os.Readlink(p); err != nil {
					return err
				}
			}
			h, err := tar.FileInfoHeader(fi, target)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			h.Name, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(r), int(st.Uid), int(st.Gid), "", ""
			if fi.IsDir() {
				h.Name += "/"
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(tw, in)
			return err
		})
		if err != nil {
			t.Fatalf("layer of %s: %v", filepath.Join(tree, rel), err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	name := f.Name()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(name) })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeLayout writes a linux/amd64 image of layers (lowest first) as the
// only image of an OCI image layout in dir.
func writeLayout(t *testing.T, dir string, layers ...v1.Layer) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatalf("write the OCI layout %s: %v", dir, err)
	}
}
