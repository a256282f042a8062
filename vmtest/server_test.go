package vmtest

import (
	"context"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
)

// newServer makes an in-process overboot server whose default profile
// boots the shared artifacts.
func newServer(t *testing.T, a *Artifacts) *server.Server {
	t.Helper()
	conf := fmt.Sprintf(`[profile default]
kernel = %s
initramfs = %s
root = %s
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1
`, a.Kernel, a.Initramfs, a.Root)
	return configServer(t, conf, filepath.Join(t.TempDir(), "store"))
}

// configServer makes an in-process overboot server from a configuration
// text, with its data directory (blobs and state store) in data.
func configServer(t *testing.T, conf, data string) *server.Server {
	t.Helper()
	cfg, err := config.Parse("vmtest.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = data
	s, err := server.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startServer serves conf's server over HTTP and iSCSI on fresh 127.0.0.1
// ports until the test ends, and returns it and both addresses.
func startServer(t *testing.T, conf, data string) (s *server.Server, httpAddr, iscsiAddr string) {
	t.Helper()
	s = configServer(t, conf, data)
	httpAddr = serveHTTP(t, s.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.ServeISCSI(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, httpAddr, ln.Addr().String()
}

// machineSecret is the CHAP secret the server keeps for a machine's
// disks (of the one profile it has a secret for).
func machineSecret(t *testing.T, s *server.Server, mac string) string {
	t.Helper()
	as, err := s.DB().Admissions(context.Background(), mac)
	var secrets []string
	for _, a := range as {
		if a.Secret != "" {
			secrets = append(secrets, a.Secret)
		}
	}
	if err != nil || len(secrets) != 1 {
		t.Fatalf("machine %s: %d secrets, want 1 (%v)", mac, len(secrets), err)
	}
	return secrets[0]
}

// bootstrapTFTP is a TFTP directory whose boot.ipxe chains the server's
// /boot.ipxe, as a site's DHCP/TFTP would hand iPXE.
func bootstrapTFTP(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!ipxe\nchain http://" + GuestServer + "/boot.ipxe || exit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPXE boots through QEMU's iPXE option ROM: QEMU's DHCP and TFTP hand
// iPXE a one-line script chaining to the server's /boot.ipxe, which asks
// for this machine's script, which loads kernel and initramfs, whose agent
// fetches the root; the root's init checks the overlay and powers off.
func TestPXE(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	s := newServer(t, a)
	addr := serveHTTP(t, s.Handler())
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: "52:54:00:0b:00:01",
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	// The server followed the boot: its own steps, then the agent's
	// phase reports, up to the hand-over to the image's init.
	ctx := context.Background()
	bs, err := s.DB().Boots(ctx, "52:54:00:0b:00:01", 1)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots: %v %v", bs, err)
	}
	ev, err := s.DB().BootEvents(ctx, bs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	// Each source in its order (the two interleave as the boot goes).
	got := map[string][]string{}
	for _, e := range ev {
		if e.Outcome != "running" || e.Phase == "switch_root" {
			got[e.Source] = append(got[e.Source], e.Phase+":"+e.Outcome)
		}
	}
	want := map[string][]string{
		"server": {"script:ok", "kernel:ok", "initramfs:ok", "document:ok", "root:ok"},
		"agent":  {"early:ok", "modules:ok", "network:ok", "document:ok", "lower:ok", "upper:ok", "overlay:ok", "switch_root:running"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("boot events by source (-want +got):\n%s", d)
	}
}

// stopper wraps the server's handler: once the image download has sent
// more than a third of the image, it stops the whole HTTP server (every
// connection dropped), waits, and starts it again on the same address.
type stopper struct {
	h         http.Handler
	imagePath string
	cut       int64
	addr      string

	mu      sync.Mutex // guards srv, stopped, ranges
	srv     *http.Server
	stopped bool
	ranges  []string
}

func (s *stopper) start(t *testing.T) {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		if t != nil {
			t.Errorf("start the server: %v", err)
		}
		return
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

func (s *stopper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.imagePath {
		s.h.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	armed := !s.stopped
	s.mu.Unlock()
	if armed {
		w = &cutWriter{ResponseWriter: w, left: s.cut, cut: s.stop}
	}
	s.h.ServeHTTP(w, r)
}

// stop closes the server and every connection, then restarts it.
func (s *stopper) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
	go func() {
		time.Sleep(2 * time.Second) // the agent retries meanwhile
		s.start(nil)
	}()
}

type cutWriter struct {
	http.ResponseWriter
	left int64
	cut  func()
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	if c.left <= 0 {
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		c.cut()
		return n, http.ErrAbortHandler
	}
	return n, err
}

// TestServerRestartMidDownload stops the overboot server while the agent
// downloads the image and starts it again: the agent resumes with a Range
// request and boots.
func TestServerRestartMidDownload(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	s := newServer(t, a)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	st := &stopper{h: s.Handler(), imagePath: server.BlobPrefix + a.RootSum.Hex(), cut: a.RootSize / 3, addr: addr}
	st.start(t)
	t.Cleanup(func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.srv.Close()
	})
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs,
		Append: directCmdline(
			"overboot.lower=http://"+GuestServer+st.imagePath,
			"overboot.digest="+a.RootSum.String(),
			fmt.Sprintf("overboot.size=%d", a.RootSize),
			"overboot.onfail=poweroff", "overboot.onfail.delay=1s"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	if !vm.Contains("1 resume") {
		t.Errorf("the agent did not report a resumed download")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.stopped {
		t.Fatalf("the server was never stopped: the test proved nothing")
	}
	resumed := false
	for _, r := range st.ranges {
		resumed = resumed || strings.HasPrefix(r, "bytes=")
	}
	if !resumed {
		t.Errorf("no Range request after the restart: %q", st.ranges)
	}
}
