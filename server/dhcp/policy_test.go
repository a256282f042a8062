package dhcp

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPolicy(t *testing.T) {
	tftp := netip.MustParseAddr("192.0.2.9")
	full := Policy{
		TFTPServer:  tftp,
		HTTPBootURL: "http://192.0.2.1/ipxe.efi",
		ScriptURL:   "http://192.0.2.1/boot.ipxe",
	}
	snp := full
	snp.EFIFile, snp.BIOSFile = "snponly.efi", "ipxe.pxe"
	bare := Policy{}
	// The Secure Boot machine is 52:54:00:00:00:5b.
	sbMAC := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x5b}
	isSB := func(r Request) bool { return bytes.Equal(r.MAC, sbMAC) }
	sb := full
	sb.SecureBoot, sb.ShimURL = isSB, "http://192.0.2.1/boot/shimx64.efi"
	sbNoURL := sb
	sbNoURL.ShimURL = ""
	for _, tc := range []struct {
		name string
		p    Policy
		r    Request
		want Answer
	}{
		{"BIOS", full, Request{Arch: ArchBIOS, VendorClass: vcBIOS}, Answer{File: "undionly.kpxe", TFTPServer: tftp}},
		{"x86-64 UEFI", full, Request{Arch: ArchEFI64, VendorClass: vcEFI}, Answer{File: "ipxe.efi", TFTPServer: tftp}},
		{"x86-64 UEFI sending 9", full, Request{Arch: ArchEFIBC, VendorClass: vcEFI}, Answer{File: "ipxe.efi", TFTPServer: tftp}},
		{"snponly.efi when configured", snp, Request{Arch: ArchEFI64, VendorClass: vcEFI}, Answer{File: "snponly.efi", TFTPServer: tftp}},
		{"another BIOS file when configured", snp, Request{Arch: ArchBIOS, VendorClass: vcBIOS}, Answer{File: "ipxe.pxe", TFTPServer: tftp}},
		{"no TFTP server: this server's (zero Addr)", bare, Request{Arch: ArchBIOS, VendorClass: vcBIOS}, Answer{File: "undionly.kpxe"}},
		{"UEFI HTTP Boot", full, Request{Arch: ArchEFI64HTTP, VendorClass: vcHTTP}, Answer{URL: "http://192.0.2.1/ipxe.efi"}},
		{"UEFI HTTP Boot without an HTTPBootURL: no answer", bare, Request{Arch: ArchEFI64HTTP, VendorClass: vcHTTP}, Answer{}},
		{"HTTPClient of another arch: no answer", full, Request{Arch: 19, VendorClass: "HTTPClient:Arch:00019:UNDI:003001"}, Answer{}},
		{"iPXE on BIOS gets the script", full, Request{Arch: ArchBIOS, VendorClass: vcBIOS, UserClass: "iPXE"}, Answer{URL: "http://192.0.2.1/boot.ipxe"}},
		{"iPXE on UEFI gets the script", full, Request{Arch: ArchEFI64, VendorClass: vcEFI, UserClass: "iPXE"}, Answer{URL: "http://192.0.2.1/boot.ipxe"}},
		{"iPXE without a script: no answer, not iPXE again", bare, Request{Arch: ArchBIOS, VendorClass: vcBIOS, UserClass: "iPXE"}, Answer{}},
		{"32-bit UEFI: no binary", full, Request{Arch: ArchEFI32, VendorClass: "PXEClient:Arch:00006:UNDI:003016"}, Answer{}},
		{"Secure Boot: UEFI gets the shim", sb, Request{MAC: sbMAC, Arch: ArchEFI64, VendorClass: vcEFI}, Answer{File: "shimx64.efi", TFTPServer: tftp}},
		{"Secure Boot: UEFI sending 9 gets the shim", sb, Request{MAC: sbMAC, Arch: ArchEFIBC, VendorClass: vcEFI}, Answer{File: "shimx64.efi", TFTPServer: tftp}},
		{"Secure Boot: UEFI HTTP Boot gets the shim's URL", sb, Request{MAC: sbMAC, Arch: ArchEFI64HTTP, VendorClass: vcHTTP}, Answer{URL: "http://192.0.2.1/boot/shimx64.efi"}},
		{"Secure Boot: HTTP Boot without a ShimURL: no answer, not iPXE", sbNoURL, Request{MAC: sbMAC, Arch: ArchEFI64HTTP, VendorClass: vcHTTP}, Answer{}},
		{"Secure Boot policy, another machine: iPXE", sb, Request{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}, Arch: ArchEFI64, VendorClass: vcEFI}, Answer{File: "ipxe.efi", TFTPServer: tftp}},
		{"Secure Boot machine on BIOS: iPXE (no Secure Boot there)", sb, Request{MAC: sbMAC, Arch: ArchBIOS, VendorClass: vcBIOS}, Answer{File: "undionly.kpxe", TFTPServer: tftp}},
		{"Secure Boot machine already in iPXE: the script", sb, Request{MAC: sbMAC, Arch: ArchEFI64, VendorClass: vcEFI, UserClass: "iPXE"}, Answer{URL: "http://192.0.2.1/boot.ipxe"}},
		{"ARM64 UEFI: no binary", full, Request{Arch: 11, VendorClass: "PXEClient:Arch:00011:UNDI:003016"}, Answer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Boot(context.Background(), tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("Boot (-want +got):\n%s", diff)
			}
			if got.IsZero() != (tc.want == Answer{}) {
				t.Errorf("IsZero = %v", got.IsZero())
			}
		})
	}
}

// TestPolicyAnswersFit checks that whatever Policy answers, the reply
// builder accepts for that client.
func TestPolicyAnswersFit(t *testing.T) {
	p := Policy{HTTPBootURL: "http://192.0.2.1/ipxe.efi", ScriptURL: "http://192.0.2.1/boot.ipxe"}
	sb := p
	sb.SecureBoot, sb.ShimURL = func(Request) bool { return true }, "http://192.0.2.1/boot/shimx64.efi"
	for _, p := range []Policy{p, sb} {
		for _, r := range []Request{
			{Arch: ArchBIOS, VendorClass: vcBIOS},
			{Arch: ArchEFI64, VendorClass: vcEFI},
			{Arch: ArchEFIBC, VendorClass: vcEFI},
			{Arch: ArchEFI64HTTP, VendorClass: vcHTTP},
			{Arch: ArchBIOS, VendorClass: vcBIOS, UserClass: "iPXE"},
			{Arch: ArchEFI64, VendorClass: vcEFI, UserClass: "iPXE"},
		} {
			a, err := p.Boot(context.Background(), r)
			if err != nil || a.IsZero() {
				t.Fatalf("Boot(%+v) = %+v, %v", r, a, err)
			}
			if err := a.check(r); err != nil {
				t.Errorf("Boot(%+v) = %+v, which the builder refuses: %v", r, a, err)
			}
		}
	}
}
