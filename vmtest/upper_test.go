package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

// iscsiServer is the embedded target serving one machine's upper disk,
// stoppable and restartable on the same address.
type iscsiServer struct {
	t      *testing.T
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	lun    target.Backing
}

func (s *iscsiServer) start(iqn, initiator, disk string, chap target.CHAP) {
	s.t.Helper()
	lun, err := target.OpenFile(disk, false)
	if err != nil {
		s.t.Fatal(err)
	}
	srv := target.New(nil)
	if err := srv.AddTarget(target.TargetConfig{IQN: iqn, LUNs: []target.Backing{lun}, CHAP: chap, Initiators: []string{initiator}}); err != nil {
		s.t.Fatal(err)
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done, s.lun = cancel, make(chan struct{}), lun
	go func() { srv.Serve(ctx, ln); close(s.done) }()
}

func (s *iscsiServer) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.lun.Close()
		s.cancel = nil
	}
}

// TestISCSIUpperPersists: lower over HTTP, upper on the machine's private
// iSCSI disk. A file written in one boot is there in the next, still
// there after the server restarts, and gone after the disk is reset.
func TestISCSIUpperPersists(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	mac, _ := net.ParseMAC("52:54:00:0b:00:02")
	const initiator = "iqn.2026-11.org.overboot:i-5254000b0002"
	const targetIQN = disks.IQNPrefix + "m-5254000b0002-d1"
	secret, err := disks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	chap := target.CHAP{User: "52-54-00-0b-00-02", Secret: secret}
	// The first disk is blank (not the server's pre-formatted kind): the
	// agent formats it.
	disk := filepath.Join(t.TempDir(), "upper.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		t.Fatal(err)
	}
	iq := &iscsiServer{t: t}
	iq.start(targetIQN, initiator, disk, chap)
	t.Cleanup(iq.stop)

	doc := boot.Document{Version: 1,
		Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://" + GuestServer + "/" + filepath.Base(a.Root), Digest: a.RootSum, Size: a.RootSize}},
		Upper: boot.Upper{ISCSI: &boot.ISCSISource{Portal: GuestServer + ":3260", Target: targetIQN, Initiator: initiator,
			CHAP: &boot.CHAP{User: chap.User, Secret: string(chap.Secret)}}},
	}
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(filepath.Dir(a.Root)))
	httpAddr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/doc" {
			w.Write(body)
			return
		}
		files.ServeHTTP(w, r)
	}))
	formatted := 0
	boot := func(want string) {
		t.Helper()
		vm := startVM(t, Options{
			Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac.String(),
			Append:   directCmdline("overboot.doc=http://"+GuestServer+"/doc", "overboot.onfail=poweroff", "overboot.onfail.delay=1s", "OVERBOOT_TEST_UPPER=iscsi"),
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iq.addr}},
		})
		if l, err := vm.Expect(want, bootTimeout); err != nil {
			t.Fatalf("no %s: %v", want, err)
		} else {
			t.Logf("console: %s", l.Text)
		}
		expectPass(t, vm)
		if vm.Contains("blank: formatted") {
			formatted++
		}
	}
	boot(MarkerPersistNew)
	if formatted != 1 {
		t.Fatalf("the agent did not format the blank disk")
	}
	boot(MarkerPersistFound)
	iq.stop()
	iq.start(targetIQN, initiator, disk, chap)
	boot(MarkerPersistFound)
	iq.stop()
	// Reset: the server makes a new disk (formatted by mkfs.ext4) in
	// place of the old one.
	disk = serverMadeDisk(t, mac.String(), 256<<20)
	iq.start(targetIQN, initiator, disk, chap)
	boot(MarkerPersistNew)
	if formatted != 1 {
		t.Errorf("the agent formatted a disk that was not blank (%d formats)", formatted)
	}
}

// TestPXEISCSIUpper is the whole path through `overboot serve`'s pieces:
// PXE, the machine's script with a single-use document URL, the document
// with its CHAP, its private disk created on first boot and exported by
// the server's iSCSI target, and the root on top.
func TestPXEISCSIUpper(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`[server]
data = %s
iscsi-portal = %s:3260

[profile default]
kernel = %s
initramfs = %s
root = %s
upper = iscsi
enroll = open-insecure
upper-disk-size = 128M
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1 OVERBOOT_TEST_UPPER=iscsi
`, dir, GuestServer, a.Kernel, a.Initramfs, a.Root)
	srv, httpAddr, iscsiAddr := startServer(t, conf, dir)
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:00:03",
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
	})
	if _, err := vm.Expect(MarkerPersistNew, bootTimeout); err != nil {
		t.Fatalf("first boot on a new disk: %v", err)
	}
	expectPass(t, vm)
	if vm.Contains(machineSecret(t, srv, "52:54:00:0b:00:03")) {
		t.Errorf("the machine's CHAP secret appeared on the console")
	}
}

// serverMadeDisk is an upper disk as the server makes it for a machine
// (sparse, mkfs.ext4), through package disks.
func serverMadeDisk(t *testing.T, mac string, size int64) string {
	t.Helper()
	data := t.TempDir()
	db, err := state.Open(filepath.Join(data, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := disks.New(db, target.New(nil), filepath.Join(data, "disks"), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	creds := disks.Credentials{Initiator: target.CHAP{User: "u", Secret: "0123456789abcdef"}, Target: target.CHAP{User: "t", Secret: "fedcba9876543210"}}
	ex, err := m.Ensure(context.Background(), disks.Spec{Owner: disks.Owner{Kind: state.OwnerMachine, Name: mac}, Profile: "default", Kind: state.DiskUpper, Size: size}, creds, disks.InitiatorIQN(mac))
	if err != nil {
		t.Fatal(err)
	}
	return ex.Disk.Path
}
