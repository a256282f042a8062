package vmtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/testneed"
)

// Generous: TCG on a busy 2-core machine. Markers, never fixed sleeps.
const bootTimeout = 4 * time.Minute

var (
	artifactsOnce sync.Once
	artifacts     *Artifacts
	artifactsErr  error
	artifactsDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if artifactsDir != "" {
		os.RemoveAll(artifactsDir)
	}
	os.Exit(code)
}

// needVM returns the shared artifacts, building them on first use. Without
// OVERBOOT_VMTEST=1 the test is left to the QEMU tier (testneed.VM); with
// it, anything missing fails.
func needVM(t *testing.T) *Artifacts {
	t.Helper()
	testneed.VM(t)
	artifactsOnce.Do(func() {
		artifactsDir, artifactsErr = os.MkdirTemp("", "overboot-vmtest-")
		if artifactsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		artifacts, artifactsErr = Build(ctx, artifactsDir, BuildOptions{PadBytes: 24 << 20, Log: testLogWriter{}})
	})
	if artifactsErr != nil {
		t.Fatalf("build test artifacts: %v", artifactsErr)
	}
	return artifacts
}

type testLogWriter struct{}

func (testLogWriter) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

// startVM boots o, logging the console to the test's temp dir and, when the
// test fails, into the test log.
func startVM(t *testing.T, o Options) *VM {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Relay == "" {
		o.Relay = artifacts.Relay
	}
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := Start(ctx, o, logf)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Kill()
		cancel()
		logf.Close()
		if t.Failed() {
			t.Logf("console (last 80 lines):\n%s", vm.Tail(80))
		}
	})
	return vm
}

// serveHTTP serves h on a fresh 127.0.0.1 port until the test ends.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// directCmdline is the static command line of a machine booted without an
// overboot server.
func directCmdline(extra ...string) string {
	return strings.Join(append([]string{"console=ttyS0", "random.trust_cpu=on", "panic=-1"}, extra...), " ")
}

// expectPass waits for the root's verdict and for QEMU to power off.
func expectPass(t *testing.T, vm *VM) {
	t.Helper()
	l, i, err := vm.ExpectAny(bootTimeout, MarkerPass, MarkerFail, "overboot: BOOT FAILED")
	if err != nil {
		t.Fatalf("no verdict from the test root: %v", err)
	}
	if i != 0 {
		t.Fatalf("boot did not pass: %s", l.Text)
	}
	if _, err := vm.Wait(time.Minute); err != nil {
		t.Fatalf("after %s: %v", MarkerPass, err)
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "overboot: [") && (strings.Contains(l.Text, " lower: ") || strings.Contains(l.Text, "network: ok")) || strings.Contains(l.Text, "overboot: timing:") || strings.Contains(l.Text, MarkerInit) {
			t.Logf("console %s", l)
		}
	}
}

// TestDirectStaticCmdline boots with the kernel and initramfs given to
// QEMU and a static command line naming the image on a plain HTTP file
// server: no overboot server at all.
func TestDirectStaticCmdline(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	addr := serveHTTP(t, http.FileServer(http.Dir(filepath.Dir(a.Root))))
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs,
		Append: directCmdline(
			"overboot.lower=http://"+GuestServer+"/"+filepath.Base(a.Root),
			"overboot.digest="+a.RootSum.String(),
			"overboot.onfail=poweroff", "overboot.onfail.delay=1s"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})
	expectPass(t, vm)
	for _, phase := range []string{"early: ok", "modules: ok", "network: ok", "lower: ok", "upper: ok", "overlay: ok", "overboot: timing:"} {
		if !vm.Contains(phase) {
			t.Errorf("console has no %q line", phase)
		}
	}
}

// TestBadImageRefused serves a truncated and a corrupted copy of the image
// under the real digest: the agent must refuse both with a clear error and
// never start the root.
func TestBadImageRefused(t *testing.T) {
	a := needVM(t)
	good, err := os.ReadFile(a.Root)
	if err != nil {
		t.Fatal(err)
	}
	corrupted := append([]byte(nil), good...)
	corrupted[len(corrupted)/2] ^= 0x40
	for _, tc := range []struct {
		name  string
		image []byte
		args  []string
		want  string
	}{
		{"truncated", good[:len(good)/3], []string{"overboot.size=" + fmt.Sprint(len(good))}, "truncated"},
		{"truncated-no-size", good[:len(good)/3], nil, "sha256 is"},
		{"corrupted", corrupted, nil, "sha256 is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "root.squashfs"), tc.image, 0o644); err != nil {
				t.Fatal(err)
			}
			addr := serveHTTP(t, http.FileServer(http.Dir(dir)))
			vm := startVM(t, Options{
				Kernel: a.Kernel, Initrd: a.Initramfs,
				Append: directCmdline(append([]string{
					"overboot.lower=http://" + GuestServer + "/root.squashfs",
					"overboot.digest=" + a.RootSum.String(),
					"overboot.fetch.attempts=2",
					"overboot.onfail=poweroff", "overboot.onfail.delay=1s"}, tc.args...)...),
				Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
			})
			if _, err := vm.Expect("overboot: BOOT FAILED in phase lower", bootTimeout); err != nil {
				t.Fatalf("no failure reported: %v", err)
			}
			if l, err := vm.Expect(tc.want, 30*time.Second); err != nil {
				t.Errorf("the failure does not say %q: %v", tc.want, err)
			} else {
				t.Logf("console: %s", l.Text)
			}
			if _, err := vm.Expect("powering off", 30*time.Second); err != nil {
				t.Errorf("policy not announced: %v", err)
			}
			if _, err := vm.Wait(time.Minute); err != nil {
				t.Errorf("the machine did not power off: %v", err)
			}
			if vm.Contains(MarkerInit) {
				t.Errorf("the root's init ran from a bad image")
			}
		})
	}
}

// TestServerUnreachable points the agent at a port nobody listens on: the
// clear error comes within the fetch retries, then the reboot policy runs
// (QEMU runs with -no-reboot, so a reboot ends it).
func TestServerUnreachable(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs,
		Append: directCmdline(
			"overboot.lower=http://"+GuestServer+"/root.squashfs",
			"overboot.digest="+a.RootSum.String(),
			"overboot.fetch.attempts=3",
			"overboot.onfail=reboot", "overboot.onfail.delay=2s"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: closed}},
	})
	// Each retry is announced, with why and when.
	for _, want := range []string{"lower: attempt 1 failed (", "lower: attempt 2 failed ("} {
		if l, err := vm.Expect(want, bootTimeout); err != nil {
			t.Errorf("no %q on the console: %v", want, err)
		} else if !strings.Contains(l.Text, "again in ") {
			t.Errorf("retry notice %q does not say when", l.Text)
		}
	}
	if _, err := vm.Expect("overboot: BOOT FAILED in phase lower", bootTimeout); err != nil {
		t.Fatalf("no failure reported: %v", err)
	}
	if l, err := vm.Expect("fetch http://"+GuestServer+"/root.squashfs: unavailable after 3 attempts", 10*time.Second); err != nil {
		t.Errorf("the failure does not name the URL: %v", err)
	} else {
		t.Logf("console: %s", l.Text)
	}
	if _, err := vm.Expect("rebooting in 2s", 30*time.Second); err != nil {
		t.Errorf("policy not announced: %v", err)
	}
	if _, err := vm.Wait(time.Minute); err != nil {
		t.Errorf("the machine did not reboot: %v", err)
	}
}
