package initiator

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

// ipxeIBFT is what iscsi_ibft shows after iPXE's sanboot with CHAP.
func ipxeIBFT() fstest.MapFS {
	f := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s + "\n")} }
	return fstest.MapFS{
		"initiator/initiator-name": f("iqn.2026-11.org.overboot:i-525400"),
		"initiator/flags":          f("3"),
		"ethernet0/ip-addr":        f("10.0.2.15"),
		"ethernet0/mac":            f("52:54:00:0b:00:05"),
		"target0/flags":            f("3"),
		"target0/ip-addr":          f("10.0.2.100"),
		"target0/port":             f("3260"),
		"target0/lun":              f("00000000"),
		"target0/target-name":      f("iqn.2026-11.org.overboot:m-525400"),
		"target0/chap-type":        f("1"),
		"target0/chap-name":        f("52-54-00-0b-00-05"),
		"target0/chap-secret":      f("0123456789abcdef"),
		"target0/nic-assoc":        f("0"),
	}
}

func TestParseIBFT(t *testing.T) {
	got, err := ParseIBFT(ipxeIBFT())
	if err != nil {
		t.Fatal(err)
	}
	want := boot.ISCSISource{
		Portal: "10.0.2.100:3260", Target: "iqn.2026-11.org.overboot:m-525400",
		Initiator: "iqn.2026-11.org.overboot:i-525400",
		CHAP:      &boot.CHAP{User: "52-54-00-0b-00-05", Secret: "0123456789abcdef"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	m := ipxeIBFT()
	m["target0/chap-type"].Data = []byte("2\n")
	m["target0/rev-chap-name"] = &fstest.MapFile{Data: []byte("tgt\n")}
	m["target0/rev-chap-name-secret"] = &fstest.MapFile{Data: []byte("fedcba9876543210\n")}
	m["target0/lun"].Data = []byte("01000000\n")
	m["target0/ip-addr"].Data = []byte("fd00::5\n")
	got, err = ParseIBFT(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.CHAP.TargetUser != "tgt" || got.CHAP.TargetSecret != "fedcba9876543210" || got.LUN != 1 || got.Portal != "[fd00::5]:3260" {
		t.Errorf("mutual CHAP, LUN 1, IPv6: %+v %+v", got, got.CHAP)
	}

	// A second target the firmware did not boot from is skipped.
	m = ipxeIBFT()
	m["target0/flags"].Data = []byte("1\n")
	m["target1/flags"] = &fstest.MapFile{Data: []byte("3\n")}
	m["target1/ip-addr"] = &fstest.MapFile{Data: []byte("10.0.2.101\n")}
	m["target1/target-name"] = &fstest.MapFile{Data: []byte("iqn.x:second\n")}
	got, err = ParseIBFT(m)
	if err != nil || got.Target != "iqn.x:second" || got.CHAP != nil || got.Portal != "10.0.2.101:3260" {
		t.Errorf("boot-selected target: %+v, %v", got, err)
	}
}

func TestParseIBFTErrors(t *testing.T) {
	if _, err := ParseIBFT(fstest.MapFS{}); !errors.Is(err, ErrNoIBFT) && (err == nil || !strings.Contains(err.Error(), "initiator")) {
		t.Errorf("empty table: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(fstest.MapFS)
		want string
	}{
		{"not selected", func(m fstest.MapFS) { m["target0/flags"].Data = []byte("1") }, "none of 1 targets"},
		{"bad ip", func(m fstest.MapFS) { m["target0/ip-addr"].Data = []byte("ten") }, "ip-addr: \"ten\""},
		{"bad port", func(m fstest.MapFS) { m["target0/port"].Data = []byte("99999") }, "port: \"99999\""},
		{"no target name", func(m fstest.MapFS) { delete(m, "target0/target-name") }, "no target-name"},
		{"chap without secret", func(m fstest.MapFS) { delete(m, "target0/chap-secret") }, "no chap-secret"},
		{"mutual without reverse", func(m fstest.MapFS) { m["target0/chap-type"].Data = []byte("2") }, "no rev-chap-name"},
		{"odd chap type", func(m fstest.MapFS) { m["target0/chap-type"].Data = []byte("7") }, "chap-type: \"7\""},
		{"multi-level lun", func(m fstest.MapFS) { m["target0/lun"].Data = []byte("00000100") }, "multi-level"},
		{"long lun", func(m fstest.MapFS) { m["target0/lun"].Data = []byte("0f10000000") }, "only LUNs 0 to 15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ipxeIBFT()
			tc.edit(m)
			_, err := ParseIBFT(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
