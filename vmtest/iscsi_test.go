package vmtest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/overboot/overboot/boot"
	target "github.com/overboot/overboot/server/iscsi"
)

// TestISCSILower boots with the lower image as a read-only iSCSI LUN of
// the embedded target (CHAP), a tmpfs upper, and the boot document (with
// the credentials) served over HTTP: nothing secret on the command line.
func TestISCSILower(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		iqn       = "iqn.2026-11.org.overboot:m-vmtest"
		initiator = "iqn.2026-11.org.overboot:i-vmtest"
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
	expectPass(t, vm)
	if vm.Contains(string(chap.Secret)) {
		t.Errorf("the CHAP secret appeared on the console")
	}
}
