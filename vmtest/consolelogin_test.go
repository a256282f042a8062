package vmtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/initagent"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// expectNth waits until n console lines contain text (Expect finds the
// first only), polling the lines QEMU has written.
func expectNth(t *testing.T, vm *VM, text string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := 0
		for _, l := range vm.Lines() {
			if strings.Contains(l.Text, text) {
				c++
			}
		}
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %q a %dth time: seen %d times; console:\n%s", timeout, text, n, c, vm.Tail(30))
		}
		// The polling period of a wait for the guest, not a wait for
		// anything: ExpectAny on a text no line has returns at a new line
		// or after the second.
		vm.ExpectAny(time.Second, "\x00never")
	}
}

// TestConsoleLogin: a login profile with login = console boots by iPXE
// without a form: the kernel boots first with overboot.login on its
// command line, the agent asks on the serial console. A wrong password
// (typed with echo off), the server's refusal and a new prompt; then the
// right one, the user's own iSCSI root, new on this first login.
func TestConsoleLogin(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	const (
		mac   = "52:54:00:0b:00:19"
		user  = "alice"
		right = "Open & 4+2; 42%!"
		wrong = "open sesame"
	)
	dir := t.TempDir()
	conf := fmt.Sprintf(`[server]
data = %s
iscsi-portal = %s:3260

[profile default]
kernel = %s
initramfs = %s
root = %s
upper = iscsi
upper-disk-size = 64M
enroll = login
login = console
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1 OVERBOOT_TEST_UPPER=iscsi
`, dir, GuestServer, a.Kernel, a.Initramfs, a.Root)
	srv, httpAddr, iscsiAddr := startServer(t, conf, dir)
	ctx := context.Background()
	hash, err := enroll.HashPassword(right)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DB().AddUser(ctx, user, hash); err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac,
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
	})
	heading := "overboot login for default at http://" + GuestServer
	typeLogin := func(n int, pw string) {
		t.Helper()
		expectNth(t, vm, heading, n, bootTimeout)
		if err := vm.Type(user + "\n"); err != nil {
			t.Fatal(err)
		}
		// Typed once the echo is off, as a person would after the prompt.
		expectNth(t, vm, initagent.SecretHint, n, time.Minute)
		if err := vm.Type(pw + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	typeLogin(1, wrong)
	if _, err := vm.Expect("wrong username or password", time.Minute); err != nil {
		t.Fatalf("no refusal on the console: %v\n%s", err, vm.Tail(30))
	}
	typeLogin(2, right)
	if _, err := vm.Expect(MarkerPersistNew, bootTimeout); err != nil {
		t.Errorf("boot events: %s", loginBoots(srv.DB(), mac))
		t.Fatalf("first boot on %s's new disk: %v", user, err)
	}
	expectPass(t, vm)

	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "overboot login") || strings.Contains(l.Text, "username:") || strings.Contains(l.Text, "password:") || strings.Contains(l.Text, initagent.SecretHint) || strings.Contains(l.Text, "wrong username") {
			t.Logf("console %s", l)
		}
	}
	if !vm.Contains("username: " + user) {
		t.Errorf("the username was not echoed")
	}
	u, err := srv.DB().User(ctx, user)
	if err != nil || u.Secret == "" {
		t.Fatalf("%s has no CHAP secret after the login (%v)", user, err)
	}
	for what, s := range map[string]string{"the password": right, "the wrong password": wrong, "the CHAP secret": u.Secret, "a login body": `"password"`} {
		if vm.Contains(s) {
			t.Errorf("%s appeared on the serial console", what)
		}
	}
	if ds, err := srv.DB().DisksOf(ctx, state.OwnerUser, user); err != nil || len(ds) != 1 {
		t.Errorf("%s's disks: %+v (%v), want one", user, ds, err)
	}
	bs, err := srv.DB().Boots(ctx, mac, 10)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots: %+v %v (want one: the refused password and the login are one boot)", bs, err)
	}
	ev, _ := srv.DB().BootEvents(ctx, bs[0].ID)
	if bs[0].User != user || !hasEvent(ev, "server", "login", "failed") || !hasEvent(ev, "server", "login", "ok") || !hasEvent(ev, "server", "document", "ok") || !hasEvent(ev, "agent", "upper", "ok") {
		t.Errorf("the boot's record: %s", loginBoots(srv.DB(), mac))
	}
}

// TestLANSecureBootConsoleLogin: the console login on the Secure Boot
// path, where GRUB has no login form: a login profile with secure-boot
// boots Debian's signed chain over overboot's DHCP and TFTP, GRUB loads
// the kernel with overboot.login on its command line, the agent asks on
// the serial console (locked down, Secure Boot on), the user's password
// gets the document, the root is reached as that user's boot.
func TestLANSecureBootConsoleLogin(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	vars := needSecureBoot(t)
	ns := NewNetNS(t)
	const (
		mac  = "52:54:00:5b:00:19"
		user = "bob"
		pw   = "Secure & 4+2; boot"
	)
	conf := fmt.Sprintf("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = 192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nenroll = login\nsecure-boot = yes\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		a.Kernel, a.Initramfs, a.Root)
	s, logs, _ := fullDHCPServer(t, ns, conf, filepath.Join(t.TempDir(), "data"))
	hash, err := enroll.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.DB().AddUser(ctx, user, hash); err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true})
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()
	expectNth(t, vm, "overboot login for default at http://192.0.2.1", 1, bootTimeout)
	if err := vm.Type(user + "\n"); err != nil {
		t.Fatal(err)
	}
	expectNth(t, vm, initagent.SecretHint, 1, time.Minute)
	if err := vm.Type(pw + "\n"); err != nil {
		t.Fatal(err)
	}
	expectPass(t, vm)
	for _, want := range []string{"Secure boot enabled", "Kernel is locked down from EFI Secure Boot"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if vm.Contains(pw) {
		t.Error("the password appeared on the serial console")
	}
	if strings.Contains(logs.String(), "file=ipxe.efi") || strings.Contains(logs.String(), "userclass=iPXE") {
		t.Error("iPXE ran on the Secure Boot path")
	}
	bs, err := s.DB().Boots(ctx, mac, 10)
	if err != nil || len(bs) != 1 || bs[0].User != user || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v (want one, %s's, at switch_root)", bs, err, user)
	}
	ev, _ := s.DB().BootEvents(ctx, bs[0].ID)
	if !hasEvent(ev, "server", "login", "ok") || !hasEvent(ev, "server", "document", "ok") {
		t.Errorf("the boot's record: %s", loginBoots(s.DB(), mac))
	}
}
