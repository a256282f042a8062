package initagent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWithoutHardware(t *testing.T) {
	a, err := ParseAliases(strings.NewReader(`# comment
alias fs-squashfs squashfs
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias virtio:d00000001v* virtio_net
alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169
`))
	if err != nil {
		t.Fatal(err)
	}
	qemu := []string{"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"}
	mods := []string{"squashfs", "overlay", "virtio_pci", "virtio_net", "e1000", "e1000e", "r8169"}
	if d := cmp.Diff([]string{"e1000", "e1000e", "r8169"}, a.WithoutHardware(mods, qemu)); d != "" {
		t.Errorf("QEMU with virtio (-want +got):\n%s", d)
	}
	withE1000 := append(qemu, "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00")
	if d := cmp.Diff([]string{"e1000e", "r8169"}, a.WithoutHardware(mods, withE1000)); d != "" {
		t.Errorf("QEMU with e1000 (-want +got):\n%s", d)
	}
	if got := a.WithoutHardware([]string{"virtio-pci"}, nil); len(got) != 1 {
		t.Errorf("dash spelling: %v", got)
	}
}

func TestDeviceDrivers(t *testing.T) {
	a, err := ParseAliases(strings.NewReader(`alias fs-squashfs squashfs
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias block-major-43-* nbd
alias devname:nbd-control nbd
alias usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in* r8152
alias dm-verity dm_verity
`))
	if err != nil {
		t.Fatal(err)
	}
	drivers, others := a.DeviceDrivers([]string{"squashfs", "virtio-net", "nbd", "overlay", "r8152", "virtio_pci", "dm_verity"})
	if d := cmp.Diff([]string{"virtio-net", "r8152", "virtio_pci"}, drivers); d != "" {
		t.Errorf("drivers (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"squashfs", "nbd", "overlay", "dm_verity"}, others); d != "" {
		t.Errorf("others (-want +got):\n%s", d)
	}
}
