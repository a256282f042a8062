package dhcp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Arch is a client system architecture type: DHCP option 93 (RFC 4578
// section 2.1) and the "Arch:xxxxx" field of option 60. The numbers are
// IANA's "Processor Architecture Types" registry.
type Arch uint16

// The architectures the default Policy knows. RFC 4578's own table has 7
// and 9 the other way round (an erratum); the IANA registry and firmware
// in the field use 7 for x86-64 UEFI, and some firmware sends 9 for it.
const (
	ArchBIOS        Arch = 0  // x86 BIOS (PC-AT) PXE
	ArchEFI32       Arch = 6  // x86 (32-bit) UEFI PXE
	ArchEFI64       Arch = 7  // x86-64 UEFI PXE
	ArchEFIBC       Arch = 9  // EFI byte code; x86-64 UEFI on some firmware
	ArchEFI64HTTP   Arch = 16 // x86-64 UEFI HTTP Boot
	archUnspecified Arch = 0xffff
)

// Vendor classes (option 60) of network boot clients. A PXE client sends
// "PXEClient:Arch:xxxxx:UNDI:yyyzzz" (PXE 2.1 section 2.2.1, RFC 4578
// section 2); a UEFI HTTP Boot client "HTTPClient:Arch:xxxxx:UNDI:yyyzzz"
// (UEFI 2.5 and later, "HTTP Boot"). A server echoes the bare class.
const (
	ClassPXE  = "PXEClient"
	ClassHTTP = "HTTPClient"
)

// parseVendorClass reads option 60: which netboot class it names ("" for
// none) and the architecture in its "Arch:xxxxx" field, if it has one.
func parseVendorClass(s string) (class string, arch Arch, hasArch bool) {
	switch {
	case strings.HasPrefix(s, ClassPXE):
		class = ClassPXE
	case strings.HasPrefix(s, ClassHTTP):
		class = ClassHTTP
	default:
		return "", 0, false
	}
	rest := s[len(class):]
	if !strings.HasPrefix(rest, ":Arch:") {
		return class, 0, false
	}
	digits := rest[len(":Arch:"):]
	if i := strings.IndexByte(digits, ':'); i >= 0 {
		digits = digits[:i]
	}
	// Five decimal digits in the spec; be lenient about the count, not
	// about what they are.
	if len(digits) == 0 || len(digits) > 5 || strings.Trim(digits, "0123456789") != "" {
		return class, 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 16)
	if err != nil {
		return class, 0, false
	}
	return class, Arch(n), true
}

var errMalformedOption = errors.New("malformed option")

// parseArch reads option 93 (RFC 4578 section 2.1): a list of 16-bit
// architecture types, most preferred first. It returns the first.
func parseArch(b []byte) (Arch, error) {
	if len(b) == 0 || len(b)%2 != 0 {
		return 0, fmt.Errorf("option 93 (client system architecture) of %d bytes, want a non-empty multiple of 2: %w", len(b), errMalformedOption)
	}
	return Arch(binary.BigEndian.Uint16(b)), nil
}

// parseMachineID reads option 97, the client machine identifier (RFC 4578
// section 2.3): type 0 then a 16-byte GUID. It returns the GUID as
// 8-4-4-4-12 hex digits in the order the bytes arrive. Firmware is known
// to differ in the byte order of the first three fields (an EFI_GUID is
// little-endian there), so the same machine can show two spellings: match
// machines on the MAC first.
func parseMachineID(b []byte) (string, error) {
	if len(b) != 17 {
		return "", fmt.Errorf("option 97 (client machine identifier) of %d bytes, want 17: %w", len(b), errMalformedOption)
	}
	if b[0] != 0 {
		return "", fmt.Errorf("option 97 (client machine identifier) of type %d, want 0 (a GUID): %w", b[0], errMalformedOption)
	}
	h := hex.EncodeToString(b[1:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// parseUserClass reads option 77. RFC 3004 defines it as a list of
// length-prefixed classes; iPXE (and most firmware) send one bare string
// ("iPXE") instead. Bytes that parse exactly as an RFC 3004 list are taken
// as one; anything else is one bare class.
func parseUserClass(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	var classes []string
	for rest := b; len(rest) > 0; {
		n := int(rest[0])
		if n == 0 || n+1 > len(rest) {
			return []string{string(b)}
		}
		classes = append(classes, string(rest[1:n+1]))
		rest = rest[n+1:]
	}
	return classes
}

// pxeVendorOptions is option 43 of a PXE reply (PXE 2.1 section 2.4,
// table 2-1): PXE_DISCOVERY_CONTROL (tag 6, length 1) with bit 3 set,
// "download the boot file named in the reply, skip boot server discovery
// and menus", then PXE's end tag. pixiecore and smee send the same.
var pxeVendorOptions = []byte{6, 1, 1 << 3, 255}
