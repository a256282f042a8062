// Package pci holds what the server knows of a PCI function from the
// outside: its vendor and device IDs, as iPXE reports the booting NIC's,
// matched to a kernel driver by package server/drivers.
package pci

import (
	"fmt"
	"strconv"
)

// ID is a PCI function's vendor and device ID (PCI Local Bus
// Specification 3.0, section 6.2.1: configuration space offsets 0x00 and
// 0x02). The zero value means unknown: vendor 0x0000 is never assigned.
type ID struct {
	Vendor, Device uint16
}

// IsZero reports whether the ID is unknown.
func (p ID) IsZero() bool { return p == ID{} }

// String returns "vvvv:dddd" in lowercase hex, as lspci -n prints it.
func (p ID) String() string { return fmt.Sprintf("%04x:%04x", p.Vendor, p.Device) }

// ParseWord reads one 16-bit ID as iPXE's :hexraw type prints a PCI
// setting: exactly 4 hex digits, most significant first.
func ParseWord(v string) (uint16, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%q: want 4 hex digits", v)
	}
	n, err := strconv.ParseUint(v, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: want 4 hex digits", v)
	}
	return uint16(n), nil
}
