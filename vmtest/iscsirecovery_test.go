package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/target"
)

// The keeper's and the kernel's lines a recovery leaves on the console.
const (
	keeperRecovered = "logged in again after"
	kernelConnError = "detected conn error"
)

// stoppable serves iSCSI on one 127.0.0.1 address through serve (a
// server's ServeISCSI, or a target's Serve) and can stop (every session
// closed) and serve again on the same address.
type stoppable struct {
	t     *testing.T
	serve func(context.Context, net.Listener) error
	addr  string

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

func newStoppable(t *testing.T, serve func(context.Context, net.Listener) error) *stoppable {
	t.Helper()
	s := &stoppable{t: t, serve: serve, addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *stoppable) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.serve(ctx, ln); close(done) }()
	s.mu.Lock()
	s.addr, s.cancel, s.done = ln.Addr().String(), cancel, done
	s.mu.Unlock()
}

func (s *stoppable) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// outage stops the service for d once the console shows after, then
// serves again; it returns when the service is back.
func (s *stoppable) outage(t *testing.T, vm *VM, after string, d time.Duration) {
	t.Helper()
	if _, err := vm.Expect(after, bootTimeout); err != nil {
		t.Fatalf("no %q before the outage: %v", after, err)
	}
	s.stop()
	t.Logf("iSCSI service stopped for %v", d)
	time.Sleep(d)
	s.start()
	t.Logf("iSCSI service back on %s", s.addr)
}

// serverScriptArgs are the kernel arguments of the server's script for
// mac, as iPXE would get them (with a fresh single-use document URL).
func serverScriptArgs(t *testing.T, httpAddr, mac string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/ipxe?mac=" + strings.ReplaceAll(mac, ":", "-"))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`initrd=overboot-initrd0 (.*) \|\| goto`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no kernel arguments in the script:\n%s", script)
	}
	return string(m[1])
}

// counters returns the values the root printed with MarkerCounter, in
// order.
func counters(vm *VM) []int {
	re := regexp.MustCompile(MarkerCounter + ` n=(\d+)`)
	var ns []int
	for _, l := range vm.Lines() {
		if m := re.FindStringSubmatch(l.Text); m != nil {
			n, _ := strconv.Atoi(m[1])
			ns = append(ns, n)
		}
	}
	return ns
}

// longestPause is the longest time between two console lines with marker
// (rounds of the root's loop): an outage the root's I/O waited through
// shows here.
func longestPause(vm *VM, marker string) time.Duration {
	var longest, last time.Duration
	seen := false
	for _, l := range vm.Lines() {
		if !strings.Contains(l.Text, marker) {
			continue
		}
		if seen {
			longest = max(longest, l.At-last)
		}
		last, seen = l.At, true
	}
	return longest
}

// checkRecovered: the kernel saw the connection fail, the keeper logged
// it in again, and no I/O failed.
func checkRecovered(t *testing.T, vm *VM) {
	t.Helper()
	if !vm.Contains(kernelConnError) {
		t.Errorf("the kernel never saw the connection fail: the outage proved nothing")
	}
	if !consoleHas(vm, "overboot-keeper", keeperRecovered) {
		t.Errorf("the keeper never logged the session in again")
	}
	for _, bad := range []string{"I/O error", "EXT4-fs error", "SQUASHFS error", "recovery timed out", "Remounting filesystem read-only"} {
		if vm.Contains(bad) {
			t.Errorf("the console shows %q: an I/O failed", bad)
		}
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "overboot-keeper") || strings.Contains(l.Text, "connection1:0") || strings.Contains(l.Text, "session1") {
			t.Logf("%s", l)
		}
	}
}

// writeLoopConf is the configuration of a server whose default profile
// boots the test root on an iSCSI upper (open-insecure), writing its
// counter rounds times (OVERBOOT_TEST=writeloop); extra adds profile keys.
func writeLoopConf(a *Artifacts, dir string, rounds int, extra string) string {
	return fmt.Sprintf("[server]\ndata = %s\nurl = http://%[2]s\niscsi-portal = %[2]s:3260\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nupper = iscsi\nenroll = open-insecure\nupper-disk-size = 128M\nonfail = poweroff\nonfail-delay = 1s\n%scmdline = console=ttyS0 panic=-1 OVERBOOT_TEST=writeloop OVERBOOT_TEST_ROUNDS=%d OVERBOOT_TEST_UPPER=iscsi\n",
		filepath.Join(dir, "data"), GuestServer, a.Kernel, a.Initramfs, a.Root, extra, rounds)
}

// TestISCSIRecoverUpper: the machine's root writes a counter in a loop
// on its iSCSI upper (write, fsync, drop the page cache, read back) while
// the server restarts: it closes (every session ends), 10 s later a new
// server opens the same data directory and serves on the same address,
// exporting again the disks it had exported: the keeper logs the session
// in again (the target no longer knows it: reinstatement), every write
// lands and reads back, and the next boot of the machine finds the last
// count.
func TestISCSIRecoverUpper(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		mac    = "52:54:00:0e:00:01"
		rounds = 20
	)
	dir := t.TempDir()
	conf := writeLoopConf(a, dir, rounds, "")
	cfg, err := config.Parse("vmtest.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	open := func() *server.Server {
		s, err := server.Open(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var cur atomic.Pointer[server.Server]
	cur.Store(open())
	t.Cleanup(func() { cur.Load().Close() })
	httpAddr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cur.Load().Handler().ServeHTTP(w, r) }))
	svc := newStoppable(t, func(ctx context.Context, ln net.Listener) error { return cur.Load().ServeISCSI(ctx, ln) })

	for n := 1; n <= 2; n++ {
		vm := startVM(t, Options{
			Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 512,
			Append:   directCmdline(serverScriptArgs(t, httpAddr, mac)),
			Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: svc.addr}},
		})
		if n == 1 {
			if _, err := vm.Expect(MarkerCounter+" n=3", bootTimeout); err != nil {
				t.Fatalf("no %q before the restart: %v", MarkerCounter+" n=3", err)
			}
			svc.stop()
			cur.Load().Close()
			t.Logf("server closed for 10s")
			time.Sleep(10 * time.Second)
			cur.Store(open())
			svc.start()
			t.Logf("a new server on the same data directory, iSCSI on %s", svc.addr)
		}
		expectWriteLoop(t, vm, n, rounds)
	}
}

// expectWriteLoop checks boot n (1 or 2) of a machine whose root wrote its
// counter in rounds (OVERBOOT_TEST=writeloop or sanwriteloop) while, in
// boot 1, the iSCSI service was restarted: it passed, found the count of
// the boot before with the default recovery timeout, wrote each value in
// turn, and in boot 1 the keeper reinstated the session.
func expectWriteLoop(t *testing.T, vm *VM, n, rounds int) {
	t.Helper()
	found := (n - 1) * rounds
	expectPass(t, vm)
	if !vm.Contains(fmt.Sprintf("%s n=%d recovery=[120 ]", MarkerCounterFound, found)) {
		t.Errorf("boot %d: the root did not find the count %d of the boot before, or the session's recovery timeout is not the default 120 s", n, found)
	}
	ns := counters(vm)
	for i, got := range ns {
		if got != found+i+1 {
			t.Errorf("boot %d: round %d wrote %d, want %d", n, i+1, got, found+i+1)
		}
	}
	if len(ns) != rounds {
		t.Errorf("boot %d: %d rounds, want %d", n, len(ns), rounds)
	}
	if n == 1 {
		t.Logf("the longest pause between two writes: %v", longestPause(vm, MarkerCounter+" "))
		checkRecovered(t, vm)
		if !consoleHas(vm, "overboot-keeper", "session reinstated") {
			t.Errorf("the session was not reinstated after the restart")
		}
	}
}

// TestISCSIRecoverLower: the root's image is a read-only iSCSI LUN; while
// the root reads /pad round after round with the page cache dropped (each
// round from the device), the target stops for 10 s and a new one serves
// on the same address: no read fails, the keeper logs the session in
// again.
func TestISCSIRecoverLower(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	chap := target.CHAP{User: "vmtest", Secret: "vmtest-secret-0123"}
	lun, err := target.OpenFile(a.Root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lun.Close() })
	// Each start is a new target, as a restarted server is: it knows no
	// session.
	svc := newStoppable(t, func(ctx context.Context, ln net.Listener) error {
		srv := target.New(nil)
		if err := srv.AddTarget(target.TargetConfig{IQN: vmIQN, LUNs: []target.Backing{lun}, CHAP: chap, Initiators: []string{vmInitiator}}); err != nil {
			return err
		}
		return srv.Serve(ctx, ln)
	})
	doc := boot.Document{Version: 1,
		Lower: boot.Source{ISCSI: &boot.ISCSISource{
			Portal: GuestServer + ":3260", Target: vmIQN, Initiator: vmInitiator,
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
		Append:   directCmdline("overboot.doc=http://"+GuestServer+"/doc", "overboot.onfail=poweroff", "overboot.onfail.delay=1s", "OVERBOOT_TEST=lazyread", "OVERBOOT_TEST_ROUNDS=12"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: svc.addr}},
	})
	svc.outage(t, vm, MarkerLazyRound+" 2", 10*time.Second)
	expectPass(t, vm)
	t.Logf("the longest pause between two reads: %v", longestPause(vm, MarkerLazyRound))
	checkRecovered(t, vm)
	if vm.Contains(string(chap.Secret)) {
		t.Errorf("the CHAP secret appeared on the console")
	}
}

// TestISCSIRecoverNetworkCut: the machine's network is cut for a minute
// (QMP set_link off, then on) while its root writes on its iSCSI upper.
// The kernel finds the connection dead (no answer to its pings), the
// keeper's connects fail until the link is back, then it logs the session
// in again while the target may still hold the old connection (the
// session continues, or is reinstated if the old one ended first): every
// write lands, inside the recovery timeout, set to 150 s by the profile
// (iscsi-recovery, overboot.iscsi.recovery on the kernel command line).
func TestISCSIRecoverNetworkCut(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		mac    = "52:54:00:0e:00:03"
		rounds = 12
		cut    = time.Minute
	)
	dir := t.TempDir()
	conf := writeLoopConf(a, dir, rounds, "iscsi-recovery = 150s\n")
	_, httpAddr, iscsiAddr := startServer(t, conf, filepath.Join(dir, "data"))
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 512, QMP: qmpPath,
		Append:   directCmdline(serverScriptArgs(t, httpAddr, mac)),
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	qmp, err := DialQMP(ctx, qmpPath)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qmp.Close() })
	if _, err := vm.Expect(MarkerCounter+" n=3", bootTimeout); err != nil {
		t.Fatalf("the root did not start writing: %v", err)
	}
	if !vm.Contains(MarkerCounterFound + " n=0 recovery=[150 ]") {
		t.Errorf("the session's recovery timeout is not the profile's 150 s")
	}
	if _, err := qmp.Execute("set_link", map[string]any{"name": "n0", "up": false}); err != nil {
		t.Fatal(err)
	}
	t.Logf("link down for %v", cut)
	time.Sleep(cut)
	if _, err := qmp.Execute("set_link", map[string]any{"name": "n0", "up": true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("link up")
	expectPass(t, vm)
	ns := counters(vm)
	for i, got := range ns {
		if got != i+1 {
			t.Errorf("round %d wrote %d, want %d", i+1, got, i+1)
		}
	}
	if len(ns) != rounds {
		t.Errorf("%d rounds, want %d", len(ns), rounds)
	}
	pause := longestPause(vm, MarkerCounter+" ")
	t.Logf("the longest pause between two writes: %v", pause)
	if pause < cut/2 {
		t.Errorf("the writes never waited for the network: the cut proved nothing")
	}
	checkRecovered(t, vm)
}

// countingBacking counts what reaches a LUN.
type countingBacking struct {
	target.Backing
	reads, writes atomic.Int64
}

func (c *countingBacking) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.Backing.ReadAt(p, off)
}

func (c *countingBacking) WriteAt(p []byte, off int64) (int, error) {
	c.writes.Add(1)
	return c.Backing.WriteAt(p, off)
}

// TestISCSIRecoverImpostor: the machine's root writes on its iSCSI upper;
// the server's iSCSI service stops and an impostor takes the portal's
// address, serving the same target name and accepting the machine's own
// CHAP (the worst case: it learned the initiator's secret) but not
// knowing the target's secret. The keeper's logins fail mutual CHAP, the
// kernel never resumes the held I/O against it (nothing reaches the
// impostor's disk); when the real target is back, the session is
// reinstated and every write lands.
func TestISCSIRecoverImpostor(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		mac    = "52:54:00:0e:00:05"
		rounds = 12
	)
	dir := t.TempDir()
	conf := writeLoopConf(a, dir, rounds, "")
	s := configServer(t, conf, filepath.Join(dir, "data"))
	httpAddr := serveHTTP(t, s.Handler())
	svc := newStoppable(t, s.ServeISCSI)
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 512,
		Append:   directCmdline(serverScriptArgs(t, httpAddr, mac)),
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: svc.addr}},
	})
	if _, err := vm.Expect(MarkerCounter+" n=3", bootTimeout); err != nil {
		t.Fatalf("the root did not start writing: %v", err)
	}
	// What the impostor knows: the target's name, the machine's
	// initiator name and CHAP secret, the target's CHAP name.
	ctx := context.Background()
	adm, err := s.DB().Admission(ctx, mac, "default")
	if err != nil || adm.Secret == "" || adm.TargetSecret == "" {
		t.Fatalf("the machine's admission has no secrets: %v", err)
	}
	k, err := s.DB().Disk(ctx, state.OwnerMachine, mac, "default")
	if err != nil {
		t.Fatal(err)
	}
	owner := disks.Owner{Kind: state.OwnerMachine, Name: mac}
	fake := filepath.Join(t.TempDir(), "impostor.img")
	if err := os.WriteFile(fake, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fake, k.Size); err != nil {
		t.Fatal(err)
	}
	fb, err := target.OpenFile(fake, false)
	if err != nil {
		t.Fatal(err)
	}
	lun := &countingBacking{Backing: fb}
	t.Cleanup(func() { fb.Close() })
	impostor := func(ctx context.Context, ln net.Listener) error {
		srv := target.New(nil)
		if err := srv.AddTarget(target.TargetConfig{IQN: disks.TargetIQN(k), LUNs: []target.Backing{lun},
			CHAP:       target.CHAP{User: disks.CHAPUser(owner), Secret: target.Secret(adm.Secret)},
			MutualCHAP: &target.CHAP{User: disks.TargetCHAPUser(owner), Secret: "not-the-target-secret"},
			Initiators: []string{disks.InitiatorIQN(mac)}, Exclusive: true}); err != nil {
			return err
		}
		return srv.Serve(ctx, ln)
	}
	written := len(counters(vm))
	svc.stop()
	svc.serve = impostor
	svc.start()
	t.Logf("the impostor serves on %s", svc.addr)
	if _, err := vm.Expect("failed mutual CHAP", 2*time.Minute); err != nil {
		t.Fatalf("the keeper never met the impostor: %v", err)
	}
	// Some more attempts against it.
	time.Sleep(15 * time.Second)
	if n := lun.writes.Load() + lun.reads.Load(); n != 0 {
		t.Errorf("the impostor's disk got %d reads and writes", n)
	}
	if now := len(counters(vm)); now > written+1 {
		t.Errorf("the root went on writing (%d rounds, %d before the impostor): its I/O reached something", now, written)
	}
	svc.stop()
	svc.serve = s.ServeISCSI
	svc.start()
	t.Logf("the real target is back on %s", svc.addr)
	expectPass(t, vm)
	ns := counters(vm)
	for i, got := range ns {
		if got != i+1 {
			t.Errorf("round %d wrote %d, want %d", i+1, got, i+1)
		}
	}
	if len(ns) != rounds {
		t.Errorf("%d rounds, want %d", len(ns), rounds)
	}
	checkRecovered(t, vm)
	if n := lun.writes.Load() + lun.reads.Load(); n != 0 {
		t.Errorf("the impostor's disk got %d reads and writes", n)
	}
	if vm.Contains(adm.TargetSecret) || vm.Contains(adm.Secret) {
		t.Errorf("a CHAP secret appeared on the console")
	}
}
