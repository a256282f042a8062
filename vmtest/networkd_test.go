package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/overboot/overboot/mkimage"
)

// MarkerNetworkd is printed by the networkd test's report: the machine-id
// and the lease systemd-networkd got in the booted system.
const MarkerNetworkd = "OVERBOOT-TEST-NETWORKD"

// networkdReport replaces the systemd test root's report (through the
// profile's templates): it waits for systemd-networkd's own DHCP lease on
// eth0 and prints it.
const networkdReport = `#!/bin/sh
i=0
while [ $i -lt 60 ] && ! ls /run/systemd/netif/leases/* >/dev/null 2>&1; do sleep 1; i=$((i + 1)); done
lease=$(cat /run/systemd/netif/leases/* 2>/dev/null | grep -E '^(ADDRESS|CLIENTID)=' | tr '\n' ' ')
[ -n "$lease" ] || lease="no-lease links=$(ls /sys/class/net | tr '\n' ,) files=$(ls -l /etc/systemd/network | tr '\n' ,) links=$(cat /run/systemd/netif/links/* | tr '\n' ,) $(systemctl is-active systemd-networkd) log: $(journalctl -b -u systemd-networkd --no-pager -o cat 2>&1 | tail -12 | tr '\n' ';')"
echo "` + MarkerNetworkd + ` machine-id=$(cat /etc/machine-id) $lease" > /dev/ttyS0
systemctl poweroff
`

// networkdImage builds the systemd test root with networkd configured for
// DHCP on the boot interface and the report above in place of the usual
// one: the image, its own machine-id and the profile's files directory.
func networkdImage(t *testing.T) (img, imageID, files string) {
	t.Helper()
	ctx := context.Background()
	tree, err := SystemdRoot(ctx, vmtestCache(), testLogWriter{})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := os.ReadFile(filepath.Join(tree, "etc/machine-id"))
	dir := t.TempDir()
	img = filepath.Join(dir, "systemd.squashfs")
	if _, err := mkimage.BuildRoot(ctx, img, mkimage.RootOptions{Source: tree}); err != nil {
		t.Fatal(err)
	}
	files = filepath.Join(dir, "files")
	for path, f := range map[string]struct {
		data string
		mode os.FileMode
	}{
		// The image's own configuration, as an administrator would write
		// it: whatever the predictable name would be, and eth0.
		"etc/systemd/network/50-wired.network": {"[Match]\nName=eth0 en*\n\n[Network]\nDHCP=ipv4\n", 0o644},
		"usr/local/sbin/overboot-test":         {networkdReport, 0o755},
	} {
		p := filepath.Join(files, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, f.mode)
	}
	return img, strings.TrimSpace(string(id)), files
}

func networkdProfile(a *Artifacts, img, files string) string {
	return fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nfiles = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1 systemd.wants=systemd-networkd.service\n",
		a.Kernel, a.Initramfs, img, files)
}

// networkdLease is what one machine's booted system reported.
type networkdLease struct{ machineID, addr, clientID string }

// bootNetworkd PXE-boots one machine per MAC at once on the LAN ns and
// returns each one's report.
func bootNetworkd(t *testing.T, ns *NetNS, macs []string) map[string]networkdLease {
	re := regexp.MustCompile(MarkerNetworkd + ` machine-id=(\S+) ADDRESS=(\S+) CLIENTID=(\S+)`)
	got := map[string]networkdLease{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, mac := range macs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, MemoryMB: 1024})
			line, err := vm.Expect(MarkerNetworkd, 3*bootTimeout)
			if err != nil {
				t.Errorf("%s: no report from the booted system: %v", mac, err)
				return
			}
			t.Logf("%s: %s", mac, line.Text)
			m := re.FindStringSubmatch(line.Text)
			if m == nil {
				t.Errorf("%s: no networkd lease in %q", mac, line.Text)
				return
			}
			vm.Wait(2 * bootTimeout)
			mu.Lock()
			got[mac] = networkdLease{m[1], m[2], m[3]}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

// TestLANNetworkdLeases: two machines boot one Debian image with systemd
// and udev, whose /etc/machine-id is one fixed id for every copy;
// systemd-networkd in the booted systems asks the site's DHCP server
// (dnsmasq, which keys leases by client identifier) for addresses with a
// client identifier derived from the machine-id. With overboot's identity
// each machine has a machine-id of its own, so each gets a lease of its
// own. It also shows the hand-over: without the agent's .link file, udev
// tries to rename the interface that is up and networkd never configures it.
func TestLANNetworkdLeases(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	img, imageID, files := networkdImage(t)
	l := proxyLANConf(t, networkdProfile(a, img, files))
	macs := []string{"52:54:00:0c:00:05", "52:54:00:0c:00:06"}
	got := bootNetworkd(t, l.ns, macs)
	if t.Failed() {
		return
	}
	a1, b1 := got[macs[0]], got[macs[1]]
	if a1.machineID == b1.machineID || a1.machineID == imageID || b1.machineID == imageID {
		t.Errorf("machine-ids %s and %s (the image's is %s)", a1.machineID, b1.machineID, imageID)
	}
	if a1.addr == b1.addr || a1.clientID == b1.clientID {
		t.Errorf("networkd's leases look like one machine: %+v and %+v", a1, b1)
	}
}

// TestLANNetworkdFullDHCP: the same image on a network where overboot is
// the only DHCP server (full mode): networkd in each booted system gets
// the lease overboot keeps for that machine, the one the agent booted with.
func TestLANNetworkdFullDHCP(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	if os.Getuid() != 0 {
		t.Fatal("LAN tests need root for network namespaces (CI runs as root)")
	}
	img, _, files := networkdImage(t)
	ns := NewNetNS(t)
	conf := "[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.60-192.0.2.69\ndhcp-router = 192.0.2.1\n\n" + networkdProfile(a, img, files)
	s, _, _ := fullDHCPServer(t, ns, conf, filepath.Join(t.TempDir(), "data"))
	macs := []string{"52:54:00:0c:00:07", "52:54:00:0c:00:08"}
	got := bootNetworkd(t, ns, macs)
	if t.Failed() {
		return
	}
	if got[macs[0]].addr == got[macs[1]].addr {
		t.Errorf("both machines got %s", got[macs[0]].addr)
	}
	for _, mac := range macs {
		l, ok, err := s.DB().Lease(context.Background(), mac)
		if err != nil || !ok {
			t.Fatalf("%s: no lease in the store: %v", mac, err)
		}
		if l.IP != got[mac].addr {
			t.Errorf("%s: networkd got %s, the store's lease is %s", mac, got[mac].addr, l.IP)
		}
		bs, err := s.DB().Boots(context.Background(), mac, 1)
		if err != nil || len(bs) != 1 || bs[0].Address != got[mac].addr {
			t.Errorf("%s: the agent booted from %+v, networkd got %s", mac, bs, got[mac].addr)
		}
	}
}
