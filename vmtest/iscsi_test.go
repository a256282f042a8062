package vmtest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/target"
)

// TestISCSILower boots with the lower image as a read-only iSCSI LUN of
// the embedded target (CHAP), a tmpfs upper, and the boot document (with
// the credentials) served over HTTP: nothing secret on the command line.
func TestISCSILower(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	vm, chap := bootISCSI(t, a, func(*boot.ISCSISource) {})
	expectPass(t, vm)
	if vm.Contains(string(chap.Secret)) {
		t.Errorf("the CHAP secret appeared on the console")
	}
	if vm.Contains("Response length") {
		t.Errorf("library log lines on the console")
	}
}

// TestISCSIRefused: a wrong CHAP secret, no CHAP, and another machine's
// target are each refused with a clear error, and nothing boots.
func TestISCSIRefused(t *testing.T) {
	a := needVM(t)
	for _, tc := range []struct {
		name   string
		change func(*boot.ISCSISource)
		want   string
	}{
		{"wrong secret", func(s *boot.ISCSISource) { s.CHAP.Secret = "not-the-secret-99" }, "authentication failed"},
		{"no chap", func(s *boot.ISCSISource) { s.CHAP = nil }, "no CHAP credentials"},
		// The target does not say which targets exist: another
		// machine's name gets the same CHAP exchange and the same
		// failure as a wrong secret.
		{"another machine's target", func(s *boot.ISCSISource) { s.Target = otherIQN }, "authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vm, _ := bootISCSI(t, a, tc.change)
			if _, err := vm.Expect("overboot: BOOT FAILED in phase lower", bootTimeout); err != nil {
				t.Fatalf("no failure reported: %v", err)
			}
			if l, err := vm.Expect(tc.want, 30*time.Second); err != nil {
				t.Errorf("the failure does not say %q: %v", tc.want, err)
			} else {
				t.Logf("console: %s", l.Text)
			}
			if _, err := vm.Wait(time.Minute); err != nil {
				t.Errorf("the machine did not power off: %v", err)
			}
			if vm.Contains(MarkerInit) || vm.Contains("/dev/sd") {
				t.Errorf("something was attached or booted")
			}
		})
	}
}

const (
	vmIQN       = "iqn.2026-11.org.overboot:m-vmtest"
	vmInitiator = "iqn.2026-11.org.overboot:i-vmtest"
	otherIQN    = "iqn.2026-11.org.overboot:m-other"
)

// bootISCSI starts a target holding the test root (for this machine, and
// another machine's target with its own initiator and secret), serves the
// boot document, changed by change, and boots.
func bootISCSI(t *testing.T, a *Artifacts, change func(*boot.ISCSISource)) (*VM, target.CHAP) {
	t.Helper()
	const (
		iqn       = vmIQN
		initiator = vmInitiator
	)
	chap := target.CHAP{User: "vmtest", Secret: "vmtest-secret-0123"}
	lun, err := target.OpenFile(a.Root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lun.Close() })
	srv := target.New(nil)
	if err := srv.AddTarget(target.TargetConfig{IQN: iqn, LUNs: []target.Backing{lun}, CHAP: chap, Initiators: []string{initiator}}); err != nil {
		t.Fatal(err)
	}
	other := target.CHAP{User: "other", Secret: "other-secret-0123"}
	if err := srv.AddTarget(target.TargetConfig{IQN: otherIQN, LUNs: []target.Backing{lun}, CHAP: other, Initiators: []string{"iqn.2026-11.org.overboot:i-other"}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	doc := boot.Document{Version: 1,
		Lower: boot.Source{ISCSI: &boot.ISCSISource{
			Portal: GuestServer + ":3260", Target: iqn, Initiator: initiator,
			CHAP:   &boot.CHAP{User: chap.User, Secret: string(chap.Secret)},
			Digest: a.RootSum, Size: a.RootSize,
		}},
		Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}},
	}
	change(doc.Lower.ISCSI)
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MemoryMB: 512,
		Append:   directCmdline("overboot.doc=http://"+GuestServer+"/doc", "overboot.onfail=poweroff", "overboot.onfail.delay=1s"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: ln.Addr().String()}},
	})
	return vm, chap
}
