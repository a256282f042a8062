package dhcp

import (
	"cmp"
	"context"
	"net/netip"
)

// Policy is the default Booter, the boot flow of DESIGN.md in a table:
//
//	user class "iPXE"            -> ScriptURL (iPXE fetches the script)
//	vendor class HTTPClient, 16  -> HTTPBootURL (an EFI iPXE over HTTP)
//	arch 0 (BIOS)                -> BIOSFile by TFTP
//	arch 7, 9 (x86-64 UEFI)      -> EFIFile by TFTP
//	anything else                -> no answer
//
// An x86-64 UEFI client that SecureBoot names (its profile says
// secure-boot) gets Debian's signed shim instead of iPXE, which is
// unsigned: ShimFile by TFTP, or ShimURL for UEFI HTTP Boot. Shim loads
// grubx64.efi from the same place (the server serves the signed GRUB
// netboot image under that name), and GRUB asks the server for its
// config: iPXE never runs on that path.
//
// iPXE is matched first, so a client that the firmware chainloaded into
// iPXE gets the script next, never iPXE again: no chainload loop. When
// ScriptURL is empty iPXE gets no answer rather than another iPXE.
type Policy struct {
	// TFTPServer serves BIOSFile and EFIFile; the zero Addr means the DHCP
	// server itself.
	TFTPServer netip.Addr
	// BIOSFile is iPXE for BIOS PXE ROMs; "" means "undionly.kpxe"
	// (Debian's ipxe package), which drives the NIC through the ROM's
	// UNDI stack.
	BIOSFile string
	// EFIFile is iPXE for x86-64 UEFI; "" means "ipxe.efi" (iPXE's own
	// drivers). "snponly.efi" uses the firmware's network driver instead,
	// for NICs iPXE has no driver for.
	EFIFile string
	// HTTPBootURL is an x86-64 EFI iPXE over http(s), for UEFI HTTP Boot
	// clients (arch 16, vendor class HTTPClient), which run an EFI
	// binary, not a script. "" means such clients get no answer.
	HTTPBootURL string
	// ScriptURL is iPXE's script, e.g. "http://192.0.2.1/boot.ipxe".
	ScriptURL string
	// SecureBoot reports whether an x86-64 UEFI client boots the signed
	// chain; nil means none does.
	SecureBoot func(Request) bool
	// ShimFile is the signed shim by TFTP; "" means "shimx64.efi".
	ShimFile string
	// ShimURL is the signed shim over http(s) for UEFI HTTP Boot; ""
	// means such Secure Boot clients get no answer.
	ShimURL string
}

// secure reports whether r boots the signed chain.
func (p Policy) secure(r Request) bool { return p.SecureBoot != nil && p.SecureBoot(r) }

// Boot implements Booter. It never fails: what it cannot boot gets the
// zero Answer.
func (p Policy) Boot(_ context.Context, r Request) (Answer, error) {
	if r.IsIPXE() {
		return Answer{URL: p.ScriptURL}, nil
	}
	if r.IsHTTPClient() {
		if r.Arch == ArchEFI64HTTP && p.secure(r) {
			return Answer{URL: p.ShimURL}, nil
		}
		if r.Arch == ArchEFI64HTTP {
			return Answer{URL: p.HTTPBootURL}, nil
		}
		return Answer{}, nil
	}
	switch r.Arch {
	case ArchBIOS:
		return Answer{File: cmp.Or(p.BIOSFile, "undionly.kpxe"), TFTPServer: p.TFTPServer}, nil
	case ArchEFI64, ArchEFIBC:
		if p.secure(r) {
			return Answer{File: cmp.Or(p.ShimFile, "shimx64.efi"), TFTPServer: p.TFTPServer}, nil
		}
		return Answer{File: cmp.Or(p.EFIFile, "ipxe.efi"), TFTPServer: p.TFTPServer}, nil
	}
	return Answer{}, nil
}
