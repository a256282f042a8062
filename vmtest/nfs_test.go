package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nfsInit is the /sbin/init of the NFS export (in place of the test
// root's, which expects a squashfs lower): it proves the root is the
// overlay of a read-only NFS mount of the export (type FSTYPE, nfs4 or
// nfs, with the option VERS, vers=4 or vers=3) and a RAM upper, that
// the export's marker (MARKER, written by the test) is seen, that owners
// are numeric root (no idmapper in the agent), and that writes go to the
// upper, not to the export.
const nfsInit = `#!/bin/sh
export PATH=/bin
fail() { echo "` + MarkerFail + `: $*"; cat /proc/mounts; poweroff -f; sleep 10; }
root=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
[ "$root" = overlay ] || fail "/ is $root, not overlay"
lower=$(awk '$2 == "/run/overboot/lower" { print $1 " " $3 " " $4 }' /proc/mounts)
echo "NFS-LOWER $lower"
case "$lower" in
"SOURCE FSTYPE ro,"*VERS*) ;;
*) fail "lower /run/overboot/lower is '$lower', not SOURCE read-only, FSTYPE with VERS" ;;
esac
upper=$(awk '$2 == "/run/overboot/rw" { print $3 }' /proc/mounts)
[ "$upper" = tmpfs ] || fail "upper is '$upper', not tmpfs"
[ "$(cat /etc/nfs-marker)" = MARKER ] || fail "/etc/nfs-marker is '$(cat /etc/nfs-marker)', not the export's"
[ "$(stat -c %u:%g /sbin/init)" = 0:0 ] || fail "/sbin/init is owned by $(stat -c %u:%g /sbin/init), not root: NFSv4 owners not numeric?"
touch /run/overboot/lower/probe 2>/dev/null && fail "the NFS lower accepted a write"
echo changed > /etc/nfs-marker || fail "cannot write /etc/nfs-marker"
echo new > /new-file || fail "cannot create /new-file"
[ "$(cat /etc/nfs-marker)" = changed ] || fail "write to /etc/nfs-marker did not stick"
[ "$(cat /run/overboot/rw/upper/etc/nfs-marker)" = changed ] || fail "the write is not in the upper layer"
[ "$(cat /run/overboot/lower/etc/nfs-marker)" = MARKER ] || fail "the lower changed"
[ $$ = 1 ] || fail "init is pid $$, not 1"
sync
echo "` + MarkerPass + ` root=$root lower=FSTYPE upper=$upper"
poweroff -f
sleep 10
`

// TestLANNFSRoot boots a machine over a LAN of the test's own (dnsmasq's
// DHCP, overboot's script, kernel, initramfs and document) with a profile
// whose root is an NFS export: nfs-ganesha in the namespace serves an
// unpacked copy of the test root, NFSv4 (the default). The booted system
// sees the export's marker through the overlay, writes land in the RAM
// upper, and the exported directory is unchanged afterwards.
func TestLANNFSRoot(t *testing.T) {
	t.Parallel()
	bootNFSRoot(t, nfsBoot{mac: "52:54:00:0c:00:20", fstype: "nfs4", vers: "vers=4"})
}

// TestLANNFSRootV3 is TestLANNFSRoot over NFSv3 (lower-nfs = vers=3),
// ganesha serving v3 with an rpcbind of its own in the namespace: once
// with the client asking that rpcbind for the NFS and MOUNT ports, once
// with both ports given (port=2049,mountport=20048) and the rpcbind
// killed before the machine boots. One machine at a time.
func TestLANNFSRootV3(t *testing.T) {
	t.Parallel()
	t.Run("rpcbind", func(t *testing.T) {
		bootNFSRoot(t, nfsBoot{mac: "52:54:00:0c:00:21", fstype: "nfs", vers: "vers=3", v3: true, opts: "vers=3"})
	})
	t.Run("ports", func(t *testing.T) {
		bootNFSRoot(t, nfsBoot{mac: "52:54:00:0c:00:22", fstype: "nfs", vers: "vers=3", v3: true, noRpcbind: true,
			opts: fmt.Sprintf("vers=3,port=2049,mountport=%d", GaneshaMountPort), shows: fmt.Sprintf(",mountport=%d,", GaneshaMountPort)})
	})
}

// An nfsBoot is one NFS root boot: the machine's MAC, the lower-nfs
// options (none: the default), what /proc/mounts must show for the lower
// (file system type, version option, and shows when not empty), whether ganesha serves NFSv3, and
// whether its rpcbind is killed before the boot.
type nfsBoot struct {
	mac          string
	opts         string
	fstype, vers string
	shows        string
	v3           bool
	noRpcbind    bool
}

func bootNFSRoot(t *testing.T, b nfsBoot) {
	a := needVM(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Fatalf("unsquashfs (package squashfs-tools) is needed: %v", err)
	}
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if out, err := exec.Command("unsquashfs", "-no-progress", "-d", export, a.Root).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs %s: %v\n%s", a.Root, err, out)
	}
	marker := fmt.Sprintf("nfs-export-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(export, "etc", "nfs-marker"), []byte(marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const source = "192.0.2.1:/root"
	init := strings.NewReplacer("SOURCE", source, "MARKER", marker, "FSTYPE", b.fstype, "VERS", b.vers).Replace(nfsInit)
	initPath := filepath.Join(export, "sbin", "init")
	if err := os.Remove(initPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initPath, []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}

	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = nfs://192.0.2.1/root\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		filepath.Join(dir, "data"), a.Kernel, a.Initramfs)
	if b.opts != "" {
		conf += "lower-nfs = " + b.opts + "\n"
	}
	l := newLAN(t, conf, filepath.Join(dir, "data"))
	if b.v3 {
		g := StartGaneshaV3(t, l.ns, export, "/root")
		if b.noRpcbind {
			g.StopRpcbind(t)
		}
	} else {
		StartGanesha(t, l.ns, export, "/root")
	}
	l.dnsmasq(t, "--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:ipxe,http://192.0.2.1/boot.ipxe")
	t.Cleanup(func() {
		if t.Failed() {
			bs, err := l.srv.DB().Boots(context.Background(), b.mac, 1)
			t.Logf("boot record: %+v %v", bs, err)
		}
	})
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: b.mac})
	expectPass(t, vm)
	want := "NFS-LOWER " + source + " " + b.fstype + " ro,"
	found := false
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "NFS-LOWER") || strings.Contains(l.Text, "lower:") {
			t.Logf("console %s", l)
		}
		found = found || strings.Contains(l.Text, want) && strings.Contains(l.Text, b.vers) && strings.Contains(l.Text, b.shows)
	}
	if !found {
		t.Errorf("the console does not show the NFS lower %s (%s, %s%s)", source, b.fstype, b.vers, b.shows)
	}
	bs, err := l.srv.DB().Boots(context.Background(), b.mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Errorf("boots: %+v %v", bs, err)
	} else if bs[0].Image != "nfs://192.0.2.1/root" {
		t.Errorf("boot's image %q, want the NFS URL", bs[0].Image)
	}
	// Nothing the machine wrote reached the export.
	if b, err := os.ReadFile(filepath.Join(export, "etc", "nfs-marker")); err != nil || string(b) != marker+"\n" {
		t.Errorf("export's marker now %q, %v", b, err)
	}
	for _, f := range []string{"new-file", "probe"} {
		if _, err := os.Stat(filepath.Join(export, f)); err == nil {
			t.Errorf("%s reached the export", f)
		}
	}
}
