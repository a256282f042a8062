package ra

import (
	"bytes"
	"net"
	"testing"
)

func TestQuiet(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}
	got := Quiet(mac)
	want := append([]byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, mac...)
	if !bytes.Equal(got, want) {
		t.Errorf("Quiet: % x, want % x", got, want)
	}
	// Router lifetime (bytes 6-7) 0: not a default router; flags (byte 5)
	// 0: neither M nor O.
	if got[5] != 0 || got[6] != 0 || got[7] != 0 {
		t.Error("the advertisement configures something")
	}
	if len(Quiet(nil)) != 16 {
		t.Error("without a MAC: not the bare 16 bytes")
	}
}

func TestIsSolicitation(t *testing.T) {
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	withSLL := append(append([]byte{}, rs...), 1, 1, 0x52, 0x54, 0, 1, 2, 3)
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"bare", rs, true},
		{"with its link-layer address", withSLL, true},
		{"short", rs[:7], false},
		{"an advertisement", []byte{134, 0, 0, 0, 0, 0, 0, 0}, false},
		{"code 1", []byte{133, 1, 0, 0, 0, 0, 0, 0}, false},
		{"an option of length 0", append(append([]byte{}, rs...), 1, 0, 0, 0, 0, 0, 0, 0), false},
		{"an option cut short", withSLL[:12], false},
	} {
		if got := IsSolicitation(c.b); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
