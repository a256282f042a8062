package vmtest

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/verity"
	"github.com/overboot/overboot/server"
)

// restartable serves a handler on one 127.0.0.1 address that a test can
// stop (every connection dropped) and start again.
type restartable struct {
	h    http.Handler
	addr string

	mu  sync.Mutex
	srv *http.Server
}

func newRestartable(t *testing.T, h http.Handler) *restartable {
	t.Helper()
	r := &restartable{h: h, addr: "127.0.0.1:0"}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() error {
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r.h, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return nil
}

func (r *restartable) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// lazyServer is an overboot server whose default profile reads the test
// root in mode (lazy or fill), with the root's init reading /pad in rounds
// (OVERBOOT_TEST=lazyread) and the keeper's cache at its smallest, so the
// rounds keep reading from the server.
func lazyServer(t *testing.T, a *Artifacts, mode string, rounds int) (*server.Server, *restartable, string) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "store")
	conf := fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = %s\nonfail = poweroff\nonfail-delay = 1s\nlower-cache = 4M\ncmdline = console=ttyS0 panic=-1 OVERBOOT_TEST=lazyread OVERBOOT_TEST_ROUNDS=%d\n",
		a.Kernel, a.Initramfs, a.Root, mode, rounds)
	s := configServer(t, conf, data)
	return s, newRestartable(t, s.Handler()), data
}

func startLazyVM(t *testing.T, rs *restartable, mac string) *VM {
	t.Helper()
	return startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac,
		Forwards: []Forward{{GuestPort: 80, HostAddr: rs.addr}},
	})
}

// TestLazyRootServerRestart: the root is read on demand through the
// keeper, NBD and dm-verity; while its init reads /pad round after round
// (each round from the device), the server goes away for lazyOutage and
// comes back: reads wait, none fails, the keeper says so in the kernel
// log. The outage is past the kernel's NBD request timeout (30 s, blk-mq's
// default): the agent sets none, so the driver only warns and waits on.
func TestLazyRootServerRestart(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	_, rs, _ := lazyServer(t, a, "lazy", 12)
	vm := startLazyVM(t, rs, "52:54:00:0d:00:01")
	if _, err := vm.Expect(MarkerLazyRound+" 2", bootTimeout); err != nil {
		t.Fatalf("the lazy root did not start reading: %v", err)
	}
	rs.stop()
	time.Sleep(lazyOutage)
	if err := rs.start(); err != nil {
		t.Fatal(err)
	}
	expectPass(t, vm)
	for _, want := range []string{"overboot-keeper: serving image", "dm-verity"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	// A read waited through most of the outage, past the kernel's 30 s.
	waited := 0.0
	for _, l := range vm.Lines() {
		if _, after, ok := strings.Cut(l.Text, "overboot-keeper: image server "); ok {
			if _, v, ok := strings.Cut(after, " back after "); ok {
				fmt.Sscanf(v, "%fs", &waited)
			}
		}
		if strings.Contains(l.Text, "nbd") && strings.Contains(l.Text, "request") {
			t.Logf("console %s", l)
		}
	}
	if waited < 30 {
		t.Errorf("the keeper reported the server back after %.1fs (0: never): no read waited past the kernel's 30 s, the outage proved nothing", waited)
	}
}

// lazyOutage is how long TestLazyRootServerRestart stops the server.
const lazyOutage = 40 * time.Second

// TestLazyRootFill: in fill mode the keeper completes the image in RAM;
// then the server is stopped for good and the root keeps reading.
func TestLazyRootFill(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	_, rs, _ := lazyServer(t, a, "fill", 6)
	vm := startLazyVM(t, rs, "52:54:00:0d:00:02")
	if _, err := vm.Expect("complete in RAM", bootTimeout); err != nil {
		t.Fatalf("the fill did not complete: %v", err)
	}
	rs.stop()
	expectPass(t, vm)
}

// TestLazyRootCorruptBlock: a block of the image changed on the server
// after the tree was made: reading it fails with dm-verity's message, the
// root's check of /pad fails, nothing reads wrong data silently.
func TestLazyRootCorruptBlock(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	_, rs, data := lazyServer(t, a, "lazy", 1)
	// In the middle of the image: /pad's incompressible data.
	corrupt(t, filepath.Join(data, "blobs", "sha256", a.RootSum.Hex()), a.RootSize/2)
	expectVerityFailure(t, startLazyVM(t, rs, "52:54:00:0d:00:03"), "the root read a corrupted image and passed")
}

// TestLazyRootCorruptTree: the image is intact but a block of its tree
// changed on the server (the top level, which every read is checked
// through): the tree is read on demand like the image and dm-verity checks
// its blocks against the root hash too, so the mount fails with
// dm-verity's message and the boot fails; nothing is read unchecked.
func TestLazyRootCorruptTree(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	_, rs, data := lazyServer(t, a, "lazy", 1)
	// The first block after the superblock's: the top level.
	corrupt(t, filepath.Join(data, "hashtrees", a.RootSum.Hex()+".tree"), 4096+64)
	expectVerityFailure(t, startLazyVM(t, rs, "52:54:00:0d:00:04"), "the root booted from a corrupted tree")
}

// corrupt overwrites a few bytes of the file at path at off.
func corrupt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("corrupt!"), off); err != nil {
		t.Fatal(err)
	}
}

// expectVerityFailure waits for vm's verdict: the boot or the root's
// check must fail (passed says what a pass would mean), with dm-verity's
// message on the console.
func expectVerityFailure(t *testing.T, vm *VM, passed string) {
	t.Helper()
	l, i, err := vm.ExpectAny(bootTimeout, MarkerPass, MarkerFail, "overboot: BOOT FAILED")
	if err != nil {
		t.Fatalf("no verdict: %v", err)
	}
	if i == 0 {
		t.Fatalf("%s: %s", passed, l.Text)
	}
	if !consoleHas(vm, "verity", "is corrupted") {
		t.Errorf("no dm-verity message on the console")
	}
}

// consoleHas reports whether one console line holds all of texts.
func consoleHas(vm *VM, texts ...string) bool {
	for _, l := range vm.Lines() {
		all := true
		for _, s := range texts {
			all = all && strings.Contains(l.Text, s)
		}
		if all {
			return true
		}
	}
	return false
}

// TestLazyStaticCmdline: no overboot server at all: a plain file server
// holds the image and its tree (as overboot mkimage verity writes it), and
// the static command line names the root hash.
func TestLazyStaticCmdline(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "root.squashfs")
	if err := copyFile(a.Root, img, 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := os.Create(img + ".verity")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.Open(img)
	h := sha256.New()
	tr, err := verity.Build(src, a.RootSize, io.MultiWriter(tree, h), verity.ParamsFor(a.RootSum.Hex()))
	src.Close()
	tree.Close()
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHTTP(t, http.FileServer(http.Dir(dir)))
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs,
		Append: directCmdline(
			"overboot.lower=http://"+GuestServer+"/root.squashfs",
			"overboot.digest="+a.RootSum.String(),
			fmt.Sprintf("overboot.size=%d", a.RootSize),
			"overboot.lower.mode=lazy",
			"overboot.verity=http://"+GuestServer+"/root.squashfs.verity",
			fmt.Sprintf("overboot.verity.digest=sha256:%x", h.Sum(nil)),
			fmt.Sprintf("overboot.verity.size=%d", tr.HashSize),
			fmt.Sprintf("overboot.verity.root=%x", tr.RootHash),
			"overboot.onfail=poweroff", "overboot.onfail.delay=1s",
			"OVERBOOT_TEST=lazyread", "OVERBOOT_TEST_ROUNDS=2"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	if !vm.Contains("checked by dm-verity") {
		t.Errorf("the root was not read on demand")
	}
}
