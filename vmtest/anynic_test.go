package vmtest

import (
	"slices"
	"strings"
	"testing"

	"github.com/overboot/overboot/mkimage/initramfs"
)

// TestAnyNIC PXE-boots a machine whose NIC is QEMU's rtl8139, whose
// drivers (8139cp, 8139too) the base initramfs lacks: the bootstrap query
// reports the NIC's PCI ID (10ec:8139), the server adds a driver segment
// as a second initrd, the agent loads its modules before the network, and
// the machine reaches its root.
func TestAnyNIC(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	for _, m := range []string{"8139cp", "8139too"} {
		if slices.Contains(initramfs.DefaultModules, m) {
			t.Fatalf("%s is in the base initramfs (DefaultModules): this test would prove nothing; choose another NIC", m)
		}
	}
	s := newServer(t, a)
	addr := serveHTTP(t, s.Handler())
	vm := startVM(t, Options{
		PXE: true, NIC: "rtl8139", TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:00:21",
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	// The agent loaded the segment's list, dependencies first...
	const loaded = "driver segment 8139cp+8139too: mii 8139cp 8139too"
	if !vm.Contains(loaded) {
		t.Errorf("the console does not show %q", loaded)
	}
	// ...and the kernel's 8139cp took QEMU's RTL-8139C+ (8139too declines it).
	if !vm.Contains("RTL-8139C+") {
		t.Errorf("the console does not show 8139cp driving the NIC")
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "driver segment") || strings.Contains(l.Text, "8139") {
			t.Logf("console %s", l)
		}
	}
}
