package vmtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFailoverLazyRoot: a machine boots the systemd image on a lazy root
// from server A, whose document lists server B (another `overboot serve`
// with the same image, and so the same blob and dm-verity tree) as a
// mirror. Once systemd is up and the root starts reading every file of
// /usr/share and /usr/lib (most of them never read before), A is killed
// with SIGKILL and never comes back: the keeper moves to B, the reads go
// on, none fails, and the machine reaches its checkpoint and powers off.
// The longest stall (the slowest batch of reads, guest-side, and the
// keeper's messages) is logged as a figure, not asserted.
func TestFailoverLazyRoot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	img := systemdImage(t, dir)
	profile := fmt.Sprintf("\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = lazy\nonfail = poweroff\nonfail-delay = 1s\ncmdline = overboot_test=failover\n",
		a.Kernel, a.Initramfs, img)
	// In the guest, A is 10.0.2.100:80 and B 10.0.2.100:81.
	srvB := startServe(t, a, filepath.Join(dir, "b"), "url = http://"+GuestServer+":81\n"+profile)
	srvA := startServe(t, a, filepath.Join(dir, "a"), "url = http://"+GuestServer+"\nmirrors = http://"+GuestServer+":81\n"+profile)

	// B makes its dm-verity tree with its first document: one for a
	// machine that never boots.
	if _, err := httpGet("http://" + srvB.addr + "/doc/" + docToken(t, srvB.addr, "52:54:00:0e:00:99")); err != nil {
		t.Fatalf("B's document: %v", err)
	}
	const mac = "52:54:00:0e:00:01"
	args := scriptKernelArgs(t, srvA.addr, mac)
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MAC: mac, MemoryMB: 1024, CPUs: 2,
		Append:   directCmdline(args),
		Forwards: []Forward{{GuestPort: 80, HostAddr: srvA.addr}, {GuestPort: 81, HostAddr: srvB.addr}},
	})
	l, i, err := vm.ExpectAny(2*bootTimeout, MarkerFailover+" ready", "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("the failover routine did not start: %v %s", err, l.Text)
	}
	if !strings.Contains(srvA.log.String(), "/verity/sha256/") {
		t.Fatalf("the machine did not read its tree from A:\n%s", srvA.log.String())
	}
	srvA.kill()
	killedAt := l.At
	bBefore := strings.Count(srvB.log.String(), "/blobs/sha256/")
	t.Logf("A killed (SIGKILL) at the console's %.1fs", killedAt.Seconds())

	done, i, err := vm.ExpectAny(bootTimeout, MarkerFailover+" done", "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("no checkpoint after the kill: %v %s", err, done.Text)
	}
	t.Logf("checkpoint at %.1fs: %s", done.At.Seconds(), done.Text)
	if _, err := vm.Wait(2 * time.Minute); err != nil {
		t.Errorf("systemd did not power off: %v", err)
	}
	m := regexp.MustCompile(`files=(\d+) bytes=(\d+) errors=(\d+) batches=(\d+) longest_ms=(\d+) median_ms=(\d+) total_ms=(\d+)`).FindStringSubmatch(done.Text)
	switch {
	case m == nil:
		t.Fatalf("unreadable checkpoint %q", done.Text)
	case m[3] != "0":
		t.Errorf("%s batches of reads failed after A died", m[3])
	default:
		t.Logf("FIGURE: longest stall <= %s ms (slowest batch of 40 files, guest clock; median batch %s ms), %s files, %s bytes read in %s ms after A was killed",
			m[5], m[6], m[1], m[2], m[7])
	}
	if n := strings.Count(srvB.log.String(), "/blobs/sha256/") - bBefore; n == 0 {
		t.Errorf("no image request reached B after A died")
	} else {
		t.Logf("%d image requests reached B after A died", n)
	}
	moved := false
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, MarkerFailover+" slow") {
			t.Logf("%s", l)
		}
		if strings.Contains(l.Text, "overboot-keeper") && (strings.Contains(l.Text, "image source") || strings.Contains(l.Text, "image server")) {
			t.Logf("keeper: %s", l)
			moved = moved || strings.Contains(l.Text, "reading from http://"+GuestServer+":81/")
		}
		for _, bad := range []string{"I/O error", "SQUASHFS error", "is corrupted", "overboot-keeper: stopped"} {
			if strings.Contains(l.Text, bad) {
				t.Errorf("console: %s", l)
			}
		}
	}
	if !moved {
		t.Errorf("the keeper did not say it moved to B")
	}
}

// serveProc is one `overboot serve` process on 127.0.0.1.
type serveProc struct {
	cmd    *exec.Cmd
	addr   string
	log    *lockedLog
	exited chan error
}

// startServe runs `overboot serve` with data and the [server] keys given
// (its profile sections after them) on a free 127.0.0.1 port, and waits
// until it answers.
func startServe(t *testing.T, a *Artifacts, data, keys string) *serveProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(t.TempDir(), "overboot.conf")
	text := fmt.Sprintf("[server]\nlisten = %s\ndata = %s\n%s", addr, data, keys)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: exec.Command(a.Overboot, "serve", "-v", "--config", conf), addr: addr, log: &lockedLog{}, exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("overboot serve %s:\n%s", addr, p.log.String())
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := httpGet("http://" + addr + "/boot.ipxe"); err == nil {
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("overboot serve exited: %v\n%s", err, p.log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("overboot serve did not answer:\n%s", p.log.String())
		}
	}
}

// kill ends the process with SIGKILL, once, and waits for it.
func (p *serveProc) kill() {
	p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
}

func httpGet(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: HTTP %s: %s", url, resp.Status, b)
	}
	return b, err
}

// machineScript is the server's script for mac, as iPXE would get it.
func machineScript(t *testing.T, httpAddr, mac string) string {
	t.Helper()
	b, err := httpGet("http://" + httpAddr + "/ipxe?mac=" + strings.ReplaceAll(mac, ":", "-"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scriptKernelArgs is the kernel command line of the first kernel
// command of mac's script (the mirrors' commands follow it after "||").
func scriptKernelArgs(t *testing.T, httpAddr, mac string) string {
	t.Helper()
	script := machineScript(t, httpAddr, mac)
	m := regexp.MustCompile(`(?m)^kernel --name overboot-kernel \S+ initrd=overboot-initrd0 (.*?) \|\| `).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no kernel arguments in the script:\n%s", script)
	}
	if !strings.Contains(script, " || kernel --name overboot-kernel http://"+GuestServer+":81/blobs/sha256/") {
		t.Errorf("the script does not fall back to the mirror for the kernel:\n%s", script)
	}
	return m[1]
}

// docToken is the document token of mac's script.
func docToken(t *testing.T, httpAddr, mac string) string {
	t.Helper()
	m := regexp.MustCompile(`overboot\.doc=\S+/doc/(\S+)`).FindStringSubmatch(machineScript(t, httpAddr, mac))
	if m == nil {
		t.Fatalf("no document URL in %s's script", mac)
	}
	return m[1]
}
