package dhcp

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseVendorClass(t *testing.T) {
	type result struct {
		Class   string
		Arch    Arch
		HasArch bool
	}
	for _, tc := range []struct {
		name, in string
		want     result
	}{
		{"BIOS PXE ROM", "PXEClient:Arch:00000:UNDI:002001", result{ClassPXE, 0, true}},
		{"x86-64 UEFI PXE", "PXEClient:Arch:00007:UNDI:003016", result{ClassPXE, 7, true}},
		{"UEFI HTTP Boot", "HTTPClient:Arch:00016:UNDI:003001", result{ClassHTTP, 16, true}},
		{"bare PXEClient", "PXEClient", result{ClassPXE, 0, false}},
		{"no UNDI field", "PXEClient:Arch:00009", result{ClassPXE, 9, true}},
		{"arch not a number", "PXEClient:Arch:0x007:UNDI:003016", result{ClassPXE, 0, false}},
		{"arch too long", "PXEClient:Arch:000007:UNDI:003016", result{ClassPXE, 0, false}},
		{"arch over 16 bits", "PXEClient:Arch:99999:UNDI:003016", result{ClassPXE, 0, false}},
		{"empty arch", "PXEClient:Arch::UNDI:003016", result{ClassPXE, 0, false}},
		{"not a boot client", "MSFT 5.0", result{}},
		{"the agent", "overboot", result{}},
		{"lower case is another class", "pxeclient:Arch:00000", result{}},
		{"empty", "", result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got result
			got.Class, got.Arch, got.HasArch = parseVendorClass(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseVendorClass(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseArch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    Arch
		wantErr bool
	}{
		{"BIOS", []byte{0, 0}, ArchBIOS, false},
		{"x86-64 UEFI", []byte{0, 7}, ArchEFI64, false},
		{"HTTP", []byte{0, 16}, ArchEFI64HTTP, false},
		{"list: first wins", []byte{0, 7, 0, 0}, ArchEFI64, false},
		{"big endian", []byte{1, 2}, 0x0102, false},
		{"empty", []byte{}, 0, true},
		{"odd", []byte{0, 7, 0}, 0, true},
		{"one byte", []byte{7}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArch(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseArch(%v) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errMalformedOption) {
				t.Errorf("parseArch(%v) error %v is not errMalformedOption", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("parseArch(%v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseMachineID(t *testing.T) {
	guid := []byte{0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"GUID", guid, "12345678-9abc-def0-0123-456789abcdef", false},
		{"zero GUID", make([]byte, 17), "00000000-0000-0000-0000-000000000000", false},
		{"type 1", append([]byte{1}, guid[1:]...), "", true},
		{"short", guid[:16], "", true},
		{"long", append(append([]byte{}, guid...), 0), "", true},
		{"empty", nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMachineID(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseMachineID error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseMachineID = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseUserClass(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want []string
	}{
		{"iPXE sends a bare string", []byte("iPXE"), []string{"iPXE"}},
		{"RFC 3004 list of one", []byte("\x04iPXE"), []string{"iPXE"}},
		{"RFC 3004 list of two", []byte("\x04iPXE\x03lab"), []string{"iPXE", "lab"}},
		{"length past the end is a bare string", []byte("\x09iPXE"), []string{"\x09iPXE"}},
		{"zero length is a bare string", []byte("\x00iPXE"), []string{"\x00iPXE"}},
		{"trailing bytes make it bare", []byte("\x04iPXE\x05ab"), []string{"\x04iPXE\x05ab"}},
		{"empty", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, parseUserClass(tc.in)); diff != "" {
				t.Errorf("parseUserClass(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
