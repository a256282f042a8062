package vmtest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestISCSIRecoverSanboot: a machine sanboots a whole disk (its root is
// the iSCSI LUN's ext4 partition, the session iPXE left in the iBFT) and
// its root writes a counter in a loop while the server's iSCSI service
// stops (every session closed) for 10 s and serves again on the same
// address: the keeper logs the session in again, every write lands and
// reads back, and the next boot of the machine finds the last count.
func TestISCSIRecoverSanboot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		mac    = "52:54:00:0e:00:21"
		rounds = 20
	)
	dir := t.TempDir()
	tree := filepath.Join(dir, "root")
	if err := BuildTestRoot(tree, TestRootOptions{}); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "base.raw")
	err := BuildSanDisk(context.Background(), disk, SanDiskOptions{
		Kernel: a.Kernel, Initramfs: a.Initramfs, RootDir: tree,
		Append: fmt.Sprintf("console=ttyS0 panic=-1 overboot.root=ibft:%d overboot.onfail=poweroff overboot.onfail.delay=1s OVERBOOT_TEST=sanwriteloop OVERBOOT_TEST_ROUNDS=%d", SanRootPartition, rounds),
	})
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[server]\ndata = %s\niscsi-portal = %s:3260\n\n[profile default]\nsanboot = %s\nenroll = open-insecure\n", filepath.Join(dir, "data"), GuestServer, disk)
	s := configServer(t, conf, filepath.Join(dir, "data"))
	httpAddr := serveHTTP(t, s.Handler())
	svc := newStoppable(t, s.ServeISCSI)
	tftp := bootstrapTFTP(t)

	for n := 1; n <= 2; n++ {
		vm := startVM(t, Options{
			PXE: true, TFTPDir: tftp, BootFile: "boot.ipxe", MAC: mac, MemoryMB: 512,
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: svc.addr}},
		})
		found := (n - 1) * rounds
		if n == 1 {
			svc.outage(t, vm, MarkerCounter+" n=3", 10*time.Second)
		}
		expectPass(t, vm)
		if !vm.Contains(fmt.Sprintf("%s n=%d recovery=[120 ]", MarkerCounterFound, found)) {
			t.Errorf("boot %d: the root did not find the count %d of the boot before, or the session's recovery timeout is not the default 120 s", n, found)
		}
		ns := counters(vm)
		for i, got := range ns {
			if got != found+i+1 {
				t.Errorf("boot %d: round %d wrote %d, want %d", n, i+1, got, found+i+1)
			}
		}
		if len(ns) != rounds {
			t.Errorf("boot %d: %d rounds, want %d", n, len(ns), rounds)
		}
		if n == 1 {
			t.Logf("the longest pause between two writes: %v", longestPause(vm, MarkerCounter+" "))
			checkRecovered(t, vm)
			if !consoleHas(vm, "overboot-keeper", "session reinstated") {
				t.Errorf("the session was not reinstated after the restart")
			}
		}
		if vm.Contains(machineSecret(t, s, mac)) {
			t.Errorf("boot %d: the machine's CHAP secret appeared on the console", n)
		}
	}
}
