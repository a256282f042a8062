package vmtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/sitetls"
)

// countingListener counts the bytes its connections write.
type countingListener struct {
	net.Listener
	written atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.written}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// tlsBoot is a server with tls-listen and its site CA, serving HTTP on
// the guest's port 80 and HTTPS on 443, and an initramfs that carries
// the CA (or not: withCA false).
type tlsBoot struct {
	s         *server.Server
	initramfs string
	https     *countingListener
	forwards  []Forward
}

// tlsProfile is the end of the profile's section of newTLSBoot's
// configuration: the RAM root, the default.
const tlsProfile = "onfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n"

func newTLSBoot(t *testing.T, a *Artifacts, withCA bool, profile string) *tlsBoot {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	// The CA first (overboot tls ca --make), so the initramfs the
	// profile boots carries it; the server finds it at start.
	if _, _, err := (&sitetls.Site{Dir: filepath.Join(data, sitetls.Dir)}).CA(); err != nil {
		t.Fatal(err)
	}
	b := &tlsBoot{initramfs: a.Initramfs}
	if withCA {
		b.initramfs = filepath.Join(t.TempDir(), "initramfs-ca.img")
		f, err := os.Create(b.initramfs)
		if err != nil {
			t.Fatal(err)
		}
		_, err = initramfs.Build(context.Background(), f, initramfs.Options{Agent: a.Agent, KernelRelease: a.Release, SiteCA: sitetls.CAPath(data)})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.https = &countingListener{Listener: ln}
	conf := fmt.Sprintf(`[server]
url = http://%s
tls-url = https://%s
tls-listen = %s
[profile default]
kernel = %s
initramfs = %s
root = %s
lower-tls = yes
%s`, GuestServer, GuestServer, ln.Addr(), a.Kernel, b.initramfs, a.Root, profile)
	b.s = configServer(t, conf, data)
	httpAddr := serveHTTP(t, b.s.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.s.ServeTLS(ctx, b.https); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	b.forwards = []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 443, HostAddr: ln.Addr().String()}}
	return b
}

// TestTLSBoot: a machine boots through iPXE (script, kernel, initramfs
// over HTTP) and its agent fetches the document, sends its reports and
// downloads the image (lower-tls) over HTTPS, trusting the site CA its
// initramfs carries; the server refuses documents over HTTP, so the
// document's event proves the HTTPS fetch, and the bytes the HTTPS
// listener wrote the image's.
func TestTLSBoot(t *testing.T) {
	a := needVM(t)
	b := newTLSBoot(t, a, true, tlsProfile)
	const mac = "52:54:00:0b:7c:01"
	vm := startVM(t, Options{PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac, Forwards: b.forwards})
	expectPass(t, vm)
	ctx := context.Background()
	bs, err := b.s.DB().Boots(ctx, mac, 1)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots: %v %v", bs, err)
	}
	ev, err := b.s.DB().BootEvents(ctx, bs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range ev {
		if e.Outcome != "running" || e.Phase == "switch_root" {
			got[e.Source] = append(got[e.Source], e.Phase+":"+e.Outcome)
		}
	}
	// The agent's reports arrived: over HTTPS, the only report URL the
	// document names.
	want := []string{"early:ok", "modules:ok", "network:ok", "document:ok", "lower:ok", "upper:ok", "overlay:ok", "switch_root:running"}
	if d := cmp.Diff(want, got["agent"]); d != "" {
		t.Errorf("agent reports (-want +got):\n%s", d)
	}
	if n := b.https.written.Load(); n < a.RootSize {
		t.Errorf("the HTTPS listener wrote %d bytes, less than the image (%d): not read over HTTPS", n, a.RootSize)
	}
}

// TestTLSBootNoCA: an initramfs without the site CA cannot fetch its
// https document: the boot fails at once, saying so.
func TestTLSBootNoCA(t *testing.T) {
	a := needVM(t)
	b := newTLSBoot(t, a, false, tlsProfile)
	vm := startVM(t, Options{PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:7c:02", Forwards: b.forwards})
	l, err := vm.Expect("overboot: BOOT FAILED", bootTimeout)
	if err != nil {
		t.Fatalf("no failure: %v", err)
	}
	t.Logf("console %s", l)
	// The reason follows the verdict.
	why, err := vm.Expect("this initramfs has no site CA", time.Minute)
	if err != nil {
		t.Fatalf("the console does not say the initramfs has no site CA: %v", err)
	}
	t.Logf("console %s", why)
}

// TestTLSBootLazy: a lazy root read over HTTPS: the keeper, a process
// of its own that outlives the agent, trusts the initramfs's site CA too
// and serves the root's reads (rounds over /pad, past its small cache)
// from the HTTPS listener.
func TestTLSBootLazy(t *testing.T) {
	a := needVM(t)
	b := newTLSBoot(t, a, true, "lower-mode = lazy\nlower-cache = 4M\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1 OVERBOOT_TEST=lazyread OVERBOOT_TEST_ROUNDS=3\n")
	vm := startVM(t, Options{PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:7c:03", Forwards: b.forwards})
	expectPass(t, vm)
	for _, want := range []string{"overboot-keeper: serving image", MarkerLazyRound + " 3"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if n := b.https.written.Load(); n < a.RootSize {
		t.Errorf("the HTTPS listener wrote %d bytes, less than the image (%d) the rounds read past a 4 MiB cache", n, a.RootSize)
	}
}
