package vmtest

import (
	"strings"
	"testing"
)

func TestCmdlineFwCfg(t *testing.T) {
	o := Options{PXE: true, Tap: "tap1", NetNS: "ns1", UEFIVars: "/v.fd", NoNICROM: true, FwCfg: ovmfNoPXE}
	args, err := o.Cmdline()
	if err != nil {
		t.Fatal(err)
	}
	want := "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n -boot n"
	if got := strings.Join(args, " "); !strings.HasSuffix(got, want) {
		t.Errorf("cmdline %q does not end with %q", got, want)
	}
	for _, bad := range []FwCfg{{Name: ""}, {Name: "a,b", Value: "n"}, {Name: "opt/x", Value: "y,z"}} {
		o.FwCfg = []FwCfg{bad}
		if _, err := o.Cmdline(); err == nil {
			t.Errorf("fw_cfg %+v accepted", bad)
		}
	}
}
