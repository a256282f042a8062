package vmtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/overboot/overboot/server/state"
)

// sanServer builds, in dir, a bootable test disk whose kernel command line
// ends in testArgs (the test root's mode), and the configuration of a
// server that sanboots it (data in dir/data). It returns the disk and the
// configuration.
func sanServer(t *testing.T, a *Artifacts, dir, testArgs string) (disk, conf string) {
	t.Helper()
	tree := filepath.Join(dir, "root")
	if err := BuildTestRoot(tree, TestRootOptions{}); err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(dir, "base.raw")
	err := BuildSanDisk(context.Background(), disk, SanDiskOptions{
		Kernel: a.Kernel, Initramfs: a.Initramfs, RootDir: tree,
		Append: fmt.Sprintf("console=ttyS0 panic=-1 overboot.root=ibft:%d overboot.onfail=poweroff overboot.onfail.delay=1s %s", SanRootPartition, testArgs),
	})
	if err != nil {
		t.Fatal(err)
	}
	conf = fmt.Sprintf("[server]\ndata = %s\niscsi-portal = %s:3260\n\n[profile default]\nsanboot = %s\nenroll = open-insecure\n", filepath.Join(dir, "data"), GuestServer, disk)
	return disk, conf
}

// TestSanboot: two machines sanboot the same bootable disk (MBR, SYSLINUX,
// the kernel and the agent's initramfs, an ext4 root; built in the test)
// through the server's iPXE script, each on its own copy-on-write layer.
// The agent finds the disk in the iBFT iPXE left and mounts its root
// partition. Each machine writes a file; on its second boot each finds its
// own file and not the other's; the base disk is unchanged.
func TestSanboot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	disk, conf := sanServer(t, a, dir, "OVERBOOT_TEST=san")
	before := fileSum(t, disk)
	srv, httpAddr, iscsiAddr := startServer(t, conf, filepath.Join(dir, "data"))
	tftp := bootstrapTFTP(t)

	macs := []string{"52:54:00:0b:00:05", "52:54:00:0b:00:06"}
	id := func(mac string) string { return strings.ReplaceAll(mac, ":", "") }
	sanLine := regexp.MustCompile(MarkerSan + ` me=([0-9a-f]{12}) saw=\[([0-9a-f ]*)\]`)
	// round boots both machines at once and returns what each saw.
	round := func(n int) map[string]string {
		saw := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, mac := range macs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm := startVM(t, Options{
					PXE: true, TFTPDir: tftp, BootFile: "boot.ipxe", MAC: mac, MemoryMB: 512,
					Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
				})
				l, i, err := vm.ExpectAny(bootTimeout, MarkerSan, MarkerFail, "overboot: BOOT FAILED")
				if err != nil || i != 0 {
					t.Errorf("boot %d of %s: %v %s", n, mac, err, l.Text)
					return
				}
				m := sanLine.FindStringSubmatch(l.Text)
				if m == nil || m[1] != id(mac) {
					t.Errorf("boot %d of %s: %q", n, mac, l.Text)
					return
				}
				if _, i, err := vm.ExpectAny(bootTimeout, MarkerPass, MarkerFail); err != nil || i != 0 {
					t.Errorf("boot %d of %s: no pass: %v", n, mac, err)
				}
				if _, err := vm.Wait(bootTimeout); err != nil {
					t.Errorf("boot %d of %s: %v", n, mac, err)
				}
				for _, l := range vm.Lines() {
					if strings.Contains(l.Text, "overboot: sanboot") || strings.Contains(l.Text, "SYSLINUX") || strings.Contains(l.Text, "Loading /") ||
						strings.Contains(l.Text, "overboot: [") && strings.Contains(l.Text, "disk") || strings.Contains(l.Text, MarkerSan) {
						t.Logf("%s boot %d console %s", mac, n, l)
					}
				}
				if vm.Contains(machineSecret(t, srv, mac)) {
					t.Errorf("%s: the machine's CHAP secret appeared on the console", mac)
				}
				mu.Lock()
				saw[mac] = strings.TrimSpace(m[2])
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return saw
	}
	first := round(1)
	for _, mac := range macs {
		if first[mac] != "" {
			t.Errorf("first boot of %s found files: %q", mac, first[mac])
		}
	}
	second := round(2)
	for _, mac := range macs {
		if second[mac] != id(mac) {
			t.Errorf("second boot of %s found %q, want only its own file %s", mac, second[mac], id(mac))
		}
	}
	if after := fileSum(t, disk); after != before {
		t.Errorf("the base disk changed")
	}
	for _, mac := range macs {
		k, err := srv.DB().Disk(context.Background(), state.OwnerMachine, mac, "default")
		if err != nil {
			t.Fatalf("%s: no disk row: %v", mac, err)
		}
		fi, err := os.Stat(k.Path)
		if err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s copy-on-write layer: %v %v", mac, fi, err)
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
