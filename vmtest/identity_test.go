package vmtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/overboot/overboot/server/state"
)

// TestMachineIdentity: two machines boot one image and each is itself:
// a host name, a machine-id and an SSH host key of its own (written 0600
// into its root before switch_root), the same at its next boot.
func TestMachineIdentity(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://%s\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nenroll = approve\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n\n[machine 52:54:00:0b:00:0a]\nhostname = lab-a\n",
		filepath.Join(dir, "data"), GuestServer, a.Kernel, a.Initramfs, a.Root)
	srv, httpAddr, _ := startServer(t, conf, filepath.Join(dir, "data"))
	ctx := context.Background()
	macs := []string{"52:54:00:0b:00:0a", "52:54:00:0b:00:0b"}
	for _, mac := range macs {
		// The address the guest's requests come from (QEMU's relay) is
		// the one the approval pins.
		if err := srv.DB().Ask(ctx, state.Request{MAC: mac, Profile: "default", Address: "127.0.0.1"}, state.Quota{}); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.DB().Approve(ctx, mac, "default", "127.0.0.1", state.Quota{}); err != nil {
			t.Fatal(err)
		}
	}
	argsRE := regexp.MustCompile(`initrd=overboot-initrd0 (.*) \|\| goto`)
	idRE := regexp.MustCompile(MarkerID + ` host=(\S+) machine-id=(\S+) key=(\S+) mode=(\S+)`)
	boot := func(mac string) []string {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + "/ipxe?mac=" + strings.ReplaceAll(mac, ":", "-"))
		if err != nil {
			t.Fatal(err)
		}
		script, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := argsRE.FindSubmatch(script)
		if m == nil {
			t.Fatalf("%s: no kernel arguments in the script:\n%s", mac, script)
		}
		vm := startVM(t, Options{Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, Append: directCmdline(string(m[1])),
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}}})
		l, err := vm.Expect(MarkerID, bootTimeout)
		if err != nil {
			t.Fatalf("%s: no identity reported: %v", mac, err)
		}
		expectPass(t, vm)
		f := idRE.FindStringSubmatch(l.Text)
		if f == nil {
			t.Fatalf("%s: unreadable %q", mac, l.Text)
		}
		t.Logf("%s: %s", mac, l.Text)
		for _, ln := range vm.Lines() {
			if strings.Contains(ln.Text, "PRIVATE KEY") {
				t.Errorf("%s: a private key on the console", mac)
			}
		}
		return f[1:]
	}
	a1 := boot(macs[0])
	b1 := boot(macs[1])
	a2 := boot(macs[0])
	if a1[0] != "lab-a" || b1[0] != "ob-5254000b000b" {
		t.Errorf("host names %q and %q", a1[0], b1[0])
	}
	if a1[1] == b1[1] || a1[2] == b1[2] {
		t.Errorf("two machines share a machine-id or a host key: %v %v", a1, b1)
	}
	if strings.Join(a1, " ") != strings.Join(a2, " ") {
		t.Errorf("a machine's identity changed between its boots: %v then %v", a1, a2)
	}
	if a1[3] != "600" || b1[3] != "600" {
		t.Errorf("host key modes %s %s, want 600", a1[3], b1[3])
	}
}
