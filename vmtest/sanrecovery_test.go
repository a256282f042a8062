package vmtest

import (
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
	_, conf := sanServer(t, a, dir, fmt.Sprintf("OVERBOOT_TEST=sanwriteloop OVERBOOT_TEST_ROUNDS=%d", rounds))
	s := configServer(t, conf, filepath.Join(dir, "data"))
	httpAddr := serveHTTP(t, s.Handler())
	svc := newStoppable(t, s.ServeISCSI)
	tftp := bootstrapTFTP(t)

	for n := 1; n <= 2; n++ {
		vm := startVM(t, Options{
			PXE: true, TFTPDir: tftp, BootFile: "boot.ipxe", MAC: mac, MemoryMB: 512,
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: svc.addr}},
		})
		if n == 1 {
			svc.outage(t, vm, MarkerCounter+" n=3", 10*time.Second)
		}
		expectWriteLoop(t, vm, n, rounds)
		if vm.Contains(machineSecret(t, s, mac)) {
			t.Errorf("boot %d: the machine's CHAP secret appeared on the console", n)
		}
	}
}
