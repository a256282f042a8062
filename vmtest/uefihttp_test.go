package vmtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// ovmfNoPXE leaves OVMF's UEFI PXEv4 and PXEv6 boot options out (its
// network stack stays): the first network boot option is then "UEFI
// HTTPv4", as on a machine set to HTTP Boot. Without it OVMF tries PXEv4,
// then PXEv6, then HTTPv4, in that order, whatever -boot or bootindex say
// (they order devices, not a NIC's boot options).
var ovmfNoPXE = []FwCfg{
	{Name: "opt/org.tianocore/IPv4PXESupport", Value: "n"},
	{Name: "opt/org.tianocore/IPv6PXESupport", Value: "n"},
}

// TestLANUEFIHTTPBoot: UEFI HTTP Boot over IPv4, no TFTP at all. OVMF's
// own HTTP Boot (HttpBootDxe; the NIC has no iPXE ROM) asks DHCP as an
// HTTPClient of arch 16; the site's DHCP server (dnsmasq, another host)
// gives the address and overboot's ProxyDHCP the URL of ipxe.efi, which
// the firmware downloads from overboot's HTTP (/boot/ipxe.efi) and runs;
// iPXE asks again and gets the script; then kernel, initramfs and root.
// The server's TFTP is up on the LAN and must see no transfer.
func TestLANUEFIHTTPBoot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := proxyLAN(t, a)
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars, 0o644); err != nil {
		t.Fatalf("OVMF (package ovmf): %v", err)
	}
	const mac = "52:54:00:0c:00:05"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac, UEFIVars: vars, NoNICROM: true, FwCfg: ovmfNoPXE})
	expectPass(t, vm)
	for _, want := range []string{">>Start HTTP Boot over IPv4", "URI: http://192.0.2.1/boot/ipxe.efi", `"UEFI HTTPv4 (MAC:5254000C0005)"`} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if vm.Contains("Start PXE over") {
		t.Errorf("the firmware tried PXE first")
	}
	logs := l.logs.String()
	for _, want := range []string{
		`msg="proxydhcp answer" type=OFFER mac=52:54:00:0c:00:05 arch=16 userclass="" iface=br0 file="" url=http://192.0.2.1/boot/ipxe.efi`,
		`msg="proxydhcp answer" type=OFFER mac=52:54:00:0c:00:05 arch=7 userclass=iPXE iface=br0 file="" url=http://192.0.2.1/boot.ipxe`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("server log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, `msg="tftp transfer`) || strings.Contains(logs, `msg="tftp request`) {
		t.Errorf("the server saw TFTP during an HTTP Boot:\n%s", logs)
	}
	bs, err := l.srv.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
}
