package vmtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server/config"
)

// needSecureBoot needs what the Secure Boot path serves and runs:
// Debian's signed shim and GRUB, OVMF's Secure Boot build and its
// variable store with Microsoft's keys. It returns a copy of the store
// for one machine.
func needSecureBoot(t *testing.T) string {
	t.Helper()
	testneed.File(t, config.DefaultShim, "shim-signed")
	testneed.File(t, config.DefaultGRUBNet, "grub-efi-amd64-signed")
	testneed.File(t, OVMFCodeSecure, "ovmf")
	testneed.File(t, OVMFVarsMS, "ovmf")
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(OVMFVarsMS, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	return vars
}

// TestLANSecureBoot: a machine with Secure Boot on (OVMF's secboot
// build, Microsoft's keys, q35 with SMM) PXE-boots a secure-boot
// profile on a network where overboot is the DHCP server: its answer
// names Debian's signed shim on overboot's TFTP, shim loads Debian's
// signed GRUB (served as grubx64.efi), GRUB reads grub/grub.cfg from the
// same TFTP server (its DHCP answer's next server) and then its own
// config from /grub, and loads Debian's signed kernel and the overboot
// initramfs over HTTP: the kernel says Secure Boot is on and locks
// itself down, and the root is reached.
//
// Not with ProxyDHCP beside a site DHCP server: Debian's GRUB 2.06
// takes its TFTP server from the firmware's DHCP acknowledgement (the
// site server's next-server), not from the proxy's offer, and stops at
// its prompt (docs/network.md, Secure Boot).
func TestLANSecureBoot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	vars := needSecureBoot(t)
	ns := NewNetNS(t)
	conf := fmt.Sprintf("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = 192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\nsecure-boot = yes\n",
		a.Kernel, a.Initramfs, a.Root)
	s, logs, _ := fullDHCPServer(t, ns, conf, filepath.Join(t.TempDir(), "data"))
	const mac = "52:54:00:5b:00:01"
	vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true})
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()
	expectPass(t, vm)
	for _, want := range []string{"Secure boot enabled", "Kernel is locked down from EFI Secure Boot"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	log := logs.String()
	for _, want := range []string{
		`file=shimx64.efi`,
		`msg="tftp transfer" file=shimx64.efi`,
		`msg="tftp transfer" file=grubx64.efi`,
		`msg="tftp transfer" file=/grub/grub.cfg`,
		`msg="tftp transfer" file="/grub?mac=` + mac + `&buildarch=x86_64&platform=efi"`,
		`msg="tftp transfer" file=/blobs/sha256/`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "file=ipxe.efi") || strings.Contains(log, "userclass=iPXE") {
		t.Errorf("iPXE ran on the Secure Boot path:\n%s", log)
	}
	bs, err := s.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
}

// TestLANSecureBootRefusesIPXE: the same firmware, a profile without
// secure-boot: ProxyDHCP hands it Debian's iPXE, which is unsigned, and
// the firmware refuses to start it, saying so on its console; no script
// is ever asked for.
func TestLANSecureBootRefusesIPXE(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	vars := needSecureBoot(t)
	l := proxyLAN(t, a)
	const mac = "52:54:00:5b:00:02"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true})
	line, i, err := vm.ExpectAny(3*time.Minute, "Access Denied", "Security Violation", MarkerPass, "Linux version")
	if err != nil {
		t.Fatalf("the firmware said nothing of iPXE: %v", err)
	}
	if i > 1 {
		t.Fatalf("Secure Boot let unsigned iPXE run: %s", line.Text)
	}
	t.Logf("firmware: %s", line.Text)
	vm.Kill()
	logs := l.logs.String()
	if !strings.Contains(logs, `msg="tftp transfer" file=ipxe.efi`) {
		t.Errorf("the firmware did not fetch ipxe.efi:\n%s", logs)
	}
	if strings.Contains(logs, "userclass=iPXE") || strings.Contains(logs, "/boot.ipxe") && strings.Contains(logs, "GET") {
		t.Errorf("iPXE ran under Secure Boot:\n%s", logs)
	}
}

// TestLANSecureBootHTTP: the same chain by UEFI HTTP Boot, no TFTP:
// ProxyDHCP gives the HTTPClient firmware the shim's URL
// (/boot/shimx64.efi), shim fetches grubx64.efi beside it over HTTP
// (asking /boot//grubx64.efi), and GRUB starts. There it stops today:
// Debian's grubnetx64.efi.signed has no http module (it asks
// x86_64-efi/http.mod, and under Secure Boot could load none), so GRUB
// reads no config over HTTP and waits at its prompt. The test checks
// the chain that far and that it stops there as docs/network.md says
// (no config asked over HTTP, GRUB's prompt); with a GRUB that speaks
// HTTP it checks the whole boot.
func TestLANSecureBootHTTP(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	vars := needSecureBoot(t)
	l := proxyLANConf(t, fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\nsecure-boot = yes\n",
		a.Kernel, a.Initramfs, a.Root))
	const mac = "52:54:00:5b:00:03"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true, FwCfg: ovmfNoPXE})
	// GRUB without a config says this above its prompt (the prompt
	// itself ends no line).
	line, i, err := vm.ExpectAny(bootTimeout, MarkerPass, "Minimal BASH-like line editing is supported", MarkerFail, "overboot: BOOT FAILED")
	if err != nil {
		t.Fatalf("neither the root nor GRUB's prompt: %v", err)
	}
	logs := l.logs.String()
	for _, want := range []string{
		`msg="proxydhcp answer" type=OFFER mac=` + mac + ` arch=16 userclass="" iface=br0 file="" url=http://192.0.2.1/boot/shimx64.efi`,
		`msg=http method=GET path=/boot/shimx64.efi code=200`,
		`msg=http method=GET path=/boot//grubx64.efi code=200`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("server log lacks %s:\n%s", want, logs)
		}
	}
	if !vm.Contains("URI: http://192.0.2.1/boot/shimx64.efi") || !vm.Contains("Welcome to GRUB!") {
		t.Errorf("the console shows no HTTP Boot of the shim, or no GRUB")
	}
	if strings.Contains(logs, `msg="tftp transfer`) || strings.Contains(logs, "userclass=iPXE") {
		t.Errorf("TFTP or iPXE during a Secure Boot HTTP Boot:\n%s", logs)
	}
	switch i {
	case 1:
		if strings.Contains(logs, "path=/grub") {
			t.Errorf("GRUB asked for its config over HTTP and still stopped:\n%s", logs)
		}
		// Debian's limit, documented: the rest of the chain is PXE's
		// (TestLANSecureBoot).
		t.Logf("the Secure Boot HTTP Boot chain stops in GRUB, as documented: shim and Debian's signed GRUB came over HTTP, but grubnetx64.efi.signed has no http module, so GRUB read no config (its command line: %q)", strings.TrimSpace(line.Text))
		return
	case 2, 3:
		t.Fatalf("boot did not pass: %s", line.Text)
	}
	for _, want := range []string{"Secure boot enabled", "Kernel is locked down from EFI Secure Boot"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
}
