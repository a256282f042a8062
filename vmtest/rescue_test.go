package vmtest

import (
	"net/http"
	"strings"
	"testing"
)

// TestRescueShell: a boot that fails with overboot.onfail=shell starts the
// rescue shell (/bin/sh, the agent's own binary called sh) on the serial
// console; it runs what is typed there, and exiting it reboots (QEMU's
// -no-reboot then ends the run).
func TestRescueShell(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	missing := serveHTTP(t, http.NotFoundHandler())
	vm := startVM(t, Options{
		Kernel: a.Kernel, Initrd: a.Initramfs, MemoryMB: 512,
		Append: directCmdline("overboot.lower=http://"+GuestServer+"/missing", "overboot.digest=sha256:"+strings.Repeat("0", 64),
			"overboot.fetch.attempts=1", "overboot.onfail=shell"),
		Forwards: []Forward{{GuestPort: 80, HostAddr: missing}},
	})
	if _, err := vm.Expect("starting the rescue shell", bootTimeout); err != nil {
		t.Fatalf("no rescue shell: %v", err)
	}
	// The console's line discipline holds what is typed until the shell
	// reads it.
	if err := vm.Type("echo rescue-$((6 * 7))\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect("rescue-42", bootTimeout); err != nil {
		t.Fatalf("the shell did not run the command: %v", err)
	}
	if err := vm.Type("exit\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect("rescue shell exited; rebooting", bootTimeout); err != nil {
		t.Fatalf("exit did not end the shell: %v", err)
	}
	if _, err := vm.Wait(bootTimeout); err != nil {
		t.Errorf("no reboot after the shell: %v", err)
	}
}
