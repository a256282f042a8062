package initagent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

// TestPlanNFS: a static command line with an NFS lower plans the NFS
// client's module, the read-only mount, the RAM upper and the overlay
// (index and xino off), keeps the network configured at the hand-over
// (the root needs it), and verifies nothing.
func TestPlanNFS(t *testing.T) {
	p, err := boot.Parse("overboot.lower=nfs://192.0.2.1/root overboot.lower.nfs=vers=3,mountport=20048")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := FormatPlan(steps)
	_, rest, ok := strings.Cut(got, "# lower\n")
	if !ok {
		t.Fatalf("no lower phase:\n%s", got)
	}
	want := `wait # for the modules loading in the background
modprobe -a nfsv3
mkdir -p /run/overboot/lower
mount -t nfs -o ro,vers=3,mountport=20048,proto=tcp,nolock,hard,addr=192.0.2.1 192.0.2.1:/root /run/overboot/lower
# upper
mkdir -p /run/overboot/rw
mount -t tmpfs -o mode=0755,size=50% tmpfs /run/overboot/rw
mkdir -p /run/overboot/rw/upper /run/overboot/rw/work
# overlay
mkdir -p /newroot
mount -t overlay -o lowerdir=/run/overboot/lower,upperdir=/run/overboot/rw/upper,workdir=/run/overboot/rw/work,index=off,xino=off overlay /newroot
hand the boot interface to the booted system: /run/systemd/network/10-overboot-IFACE.link, 10-overboot-IFACE.network (KeepConfiguration=yes), /run/NetworkManager/conf.d/10-overboot.conf (unmanaged)
test -x /newroot/sbin/init
# switch_root
switch_root /newroot /sbin/init
`
	if d := cmp.Diff(want, rest); d != "" {
		t.Errorf("plan from the lower phase on (-want +got):\n%s", d)
	}
	for _, s := range steps {
		switch s.(type) {
		case Download, VerifyDevice, LoopMount, LazyAttach:
			t.Errorf("an NFS lower plans %T: %s", s, s)
		}
	}
}

func TestNFSOptions(t *testing.T) {
	srv, cli := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.100")
	for _, tt := range []struct {
		name string
		src  boot.NFSSource
		want string
	}{
		{"v4 default", boot.NFSSource{Server: "files.example.org", Export: "/root"}, "ro,vers=4,proto=tcp,hard,addr=192.0.2.1,clientaddr=192.0.2.100"},
		{"v4.2", boot.NFSSource{Server: "192.0.2.1", Export: "/", Version: "4.2", Options: []string{"port=2050"}}, "ro,vers=4.2,port=2050,proto=tcp,hard,addr=192.0.2.1"},
		{"v3 own proto", boot.NFSSource{Server: "192.0.2.1", Export: "/srv", Version: "3", Options: []string{"proto=tcp6", "timeo=600"}}, "ro,vers=3,proto=tcp6,timeo=600,nolock,hard,addr=192.0.2.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(NFSOptions(tt.src, srv, cli), ","); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	if d := NFSDevice(boot.NFSSource{Server: "2001:db8::1", Export: "/r"}); d != "[2001:db8::1]:/r" {
		t.Errorf("IPv6 device %s", d)
	}
	if m := NFSModules("3"); !cmp.Equal(m, []string{"nfsv3"}) {
		t.Errorf("v3 modules %v", m)
	}
	if m := NFSModules("4.1"); !cmp.Equal(m, []string{"nfsv4"}) {
		t.Errorf("v4.1 modules %v", m)
	}
}
