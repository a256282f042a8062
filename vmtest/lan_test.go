package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/tftp"
)

// lan is a LAN of the test's own: a namespace with a bridge at 192.0.2.1,
// the overboot server's HTTP (port 80) and TFTP (port 69) listening there,
// and a DHCP server given by the test.
type lan struct {
	ns   *NetNS
	srv  *server.Server
	logs *lockedLog
}

// lockedLog collects the server's log lines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newLAN starts conf's server with its HTTP and TFTP on the namespace's
// bridge address.
func newLAN(t *testing.T, conf, data string) *lan {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("LAN tests need root for network namespaces (CI runs as root)")
	}
	ns := NewNetNS(t)
	cfg, err := config.Parse("lan.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = data
	logs := &lockedLog{}
	s, err := server.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	httpLn := ns.Listen(t, ns.Addr+":80")
	tftpPC := ns.ListenPacket(t, ns.Addr+":69")
	done := make(chan struct{}, 2)
	go func() { s.Serve(ctx, httpLn); done <- struct{}{} }()
	dial := func(l, r *net.UDPAddr) (c *net.UDPConn, err error) {
		err = ns.Do(func() error { c, err = net.DialUDP("udp", l, r); return err })
		return c, err
	}
	go func() { s.ServeTFTP(ctx, tftpPC, dial); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &lan{ns: ns, srv: s, logs: logs}
}

// dnsmasq runs Debian's dnsmasq in the namespace as a DHCP server only
// (no DNS: port=0), with the given extra options, until the test ends.
func (l *lan) dnsmasq(t *testing.T, extra ...string) {
	t.Helper()
	runDnsmasq(t, l.ns, extra...)
}

// runDnsmasq runs dnsmasq as a DHCP server on ns's Bridge interface.
func runDnsmasq(t *testing.T, ns *NetNS, extra ...string) {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq (package dnsmasq-base) is needed: %v", err)
	}
	dir := t.TempDir()
	args := append([]string{"--no-daemon", "--port=0", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--interface=" + ns.Bridge, "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,1h",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--log-dhcp", "--log-facility=" + filepath.Join(dir, "log")}, extra...)
	argv := ns.Exec(bin, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("dnsmasq:\n%s%s", out.String(), log)
		}
	})
}

// TestLANSiteDHCP boots over a LAN of the test's own the way a lab whose
// site DHCP server is configured for overboot does: the NIC's PXE
// firmware (QEMU's ROMs are iPXE) asks DHCP (dnsmasq here), is recognised
// by its user class and sent to overboot's /boot.ipxe over HTTP (a plain
// PXE ROM would get undionly.kpxe over overboot's TFTP first: the TFTP
// server is up, and answers from the namespace); then the machine's
// script, kernel, initramfs, document and root. The agent's own DHCP gets
// its address from the same server.
func TestLANSiteDHCP(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	dir := t.TempDir()
	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		filepath.Join(dir, "data"), a.Kernel, a.Initramfs, a.Root)
	l := newLAN(t, conf, filepath.Join(dir, "data"))
	l.dnsmasq(t, "--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-boot=tag:!ipxe,undionly.kpxe,,192.0.2.1",
		"--dhcp-boot=tag:ipxe,http://192.0.2.1/boot.ipxe")
	const mac = "52:54:00:0c:00:01"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac})
	expectPass(t, vm)
	ctx := context.Background()
	bs, err := l.srv.DB().Boots(ctx, mac, 1)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots: %v %v", bs, err)
	}
	if !strings.HasPrefix(bs[0].Address, "192.0.2.1") || bs[0].Phase != "switch_root" {
		t.Errorf("the boot as recorded: %+v", bs[0])
	}
	// TFTP answers on the LAN as a plain PXE ROM would ask.
	var b bytes.Buffer
	if err := l.ns.Do(func() error {
		_, err := (&tftp.Client{BlockSize: 1456}).Get(ctx, l.ns.Addr+":69", "undionly.kpxe", &b)
		return err
	}); err != nil || b.Len() < 1000 {
		t.Errorf("TFTP undionly.kpxe on the LAN: %d bytes, %v", b.Len(), err)
	}
}

// TestLANProxyDHCP: a site's DHCP server (dnsmasq on another host of the
// LAN) gives addresses and knows nothing of network boot; overboot's
// ProxyDHCP answers the PXE firmware with the boot file (iPXE, by its user
// class, gets /boot.ipxe: no chainload loop), and the machine boots.
func TestLANProxyDHCP(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := proxyLAN(t, a)
	const mac = "52:54:00:0c:00:02"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac})
	expectPass(t, vm)
	bs, err := l.srv.DB().Boots(context.Background(), mac, 1)
	if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
		t.Fatalf("boots: %+v %v", bs, err)
	}
	// The address came from the site's server, not from overboot.
	if !strings.HasPrefix(bs[0].Address, "192.0.2.1") || bs[0].Address == "192.0.2.1" {
		t.Errorf("boot from %s: not a lease of the site's range", bs[0].Address)
	}
	// dnsmasq named no boot file: the one iPXE followed was overboot's.
	if !strings.Contains(l.logs.String(), `msg="proxydhcp answer" type=OFFER mac=52:54:00:0c:00:02`) || !strings.Contains(l.logs.String(), "url=http://192.0.2.1/boot.ipxe") {
		t.Errorf("no ProxyDHCP offer with the script URL in the server log:\n%s", l.logs.String())
	}
}

// proxyLAN is a LAN whose site DHCP server (another host) gives addresses
// and whose overboot answers PXE with ProxyDHCP and TFTP.
func proxyLAN(t *testing.T, a *Artifacts) *lan {
	t.Helper()
	return proxyLANConf(t, fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		a.Kernel, a.Initramfs, a.Root))
}

// proxyLANConf is proxyLAN with profiles of the test's own.
func proxyLANConf(t *testing.T, profiles string) *lan {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf("[server]\ndata = %s\nurl = http://192.0.2.1\nproxy-dhcp = br0\n\n%s", filepath.Join(dir, "data"), profiles)
	l := newLAN(t, conf, filepath.Join(dir, "data"))
	site := l.ns.Host(t, "192.0.2.2")
	runDnsmasq(t, site, "--dhcp-option=3,192.0.2.1")
	ctx, cancel := context.WithCancel(context.Background())
	var c67, c4011 net.PacketConn
	if err := l.ns.Do(func() (err error) {
		if c67, err = dhcp.ListenInterface(ctx, "br0", 67); err != nil {
			return err
		}
		c4011, err = dhcp.ListenInterface(ctx, "br0", 4011)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.srv.ServeProxyDHCP(ctx, c67, c4011, netip.MustParseAddr("192.0.2.1")) }()
	t.Cleanup(func() { cancel(); <-done; c67.Close(); c4011.Close() })
	return l
}

// TestLANUEFI: UEFI firmware's own PXE (OVMF, the NIC without iPXE's
// ROM) asks DHCP; overboot's ProxyDHCP names ipxe.efi, the firmware
// fetches it over overboot's TFTP, iPXE asks again and gets the script;
// the kernel boots through its EFI stub with the initramfs.
func TestLANUEFI(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	l := proxyLAN(t, a)
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars, 0o644); err != nil {
		t.Fatalf("OVMF (package ovmf): %v", err)
	}
	const mac = "52:54:00:0c:00:03"
	vm := startVM(t, Options{PXE: true, Tap: l.ns.Tap(t), NetNS: l.ns.Name, MAC: mac, UEFIVars: vars, NoNICROM: true})
	expectPass(t, vm)
	logs := l.logs.String()
	for _, want := range []string{
		`msg="proxydhcp answer" type=OFFER mac=52:54:00:0c:00:03 arch=7 userclass="" iface=br0 file=ipxe.efi`,
		`msg="tftp transfer"`,
		`msg="proxydhcp answer" type=OFFER mac=52:54:00:0c:00:03 arch=7 userclass=iPXE iface=br0 file="" url=http://192.0.2.1/boot.ipxe`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("server log lacks %s:\n%s", want, logs)
		}
	}
}

// fullDHCPServer runs conf's server on ns with overboot's own DHCP server
// on the bridge (full mode), and returns a stop function.
func fullDHCPServer(t *testing.T, ns *NetNS, conf, data string) (*server.Server, *lockedLog, func()) {
	t.Helper()
	cfg, err := config.Parse("lan.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = data
	logs := &lockedLog{}
	s, err := server.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var httpLn net.Listener
	var c67 net.PacketConn
	if err := ns.Do(func() (err error) {
		if httpLn, err = net.Listen("tcp", ns.Addr+":80"); err != nil {
			return err
		}
		c67, err = dhcp.ListenInterface(ctx, ns.Bridge, 67)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// TFTP too, for firmware PXE (the iPXE binaries, the Secure Boot
	// path's shim and GRUB): the DHCP answers name this server.
	tftpPC := ns.ListenPacket(t, ns.Addr+":69")
	dial := func(l, r *net.UDPAddr) (c *net.UDPConn, err error) {
		err = ns.Do(func() error { c, err = net.DialUDP("udp", l, r); return err })
		return c, err
	}
	done := make(chan struct{}, 3)
	go func() { s.Serve(ctx, httpLn); done <- struct{}{} }()
	go func() { s.ServeTFTP(ctx, tftpPC, dial); done <- struct{}{} }()
	go func() {
		if err := s.ServeDHCP(ctx, c67, netip.MustParseAddr(ns.Addr), netip.MustParsePrefix(ns.Addr+"/24")); err != nil {
			t.Errorf("dhcp: %v", err)
		}
		done <- struct{}{}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			<-done
			<-done
			httpLn.Close()
			tftpPC.Close() // a restarted server binds port 69 again
			c67.Close()
			s.Close()
		})
	}
	t.Cleanup(stop)
	return s, logs, stop
}

// TestLANFullDHCP: on an isolated network overboot is the DHCP server
// (full mode): it gives the machine its address (the firmware's, iPXE's
// and the agent's requests alike) with the boot answer, keeps the lease
// in its store, and gives the same address after a restart of the server.
func TestLANFullDHCP(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	if os.Getuid() != 0 {
		t.Fatal("LAN tests need root for network namespaces (CI runs as root)")
	}
	ns := NewNetNS(t)
	data := filepath.Join(t.TempDir(), "data")
	conf := fmt.Sprintf("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = 192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		a.Kernel, a.Initramfs, a.Root)
	const mac = "52:54:00:0c:00:04"
	boot := func(s *server.Server) string {
		t.Helper()
		vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac})
		expectPass(t, vm)
		bs, err := s.DB().Boots(context.Background(), mac, 1)
		if err != nil || len(bs) != 1 || bs[0].Phase != "switch_root" {
			t.Fatalf("boots: %+v %v", bs, err)
		}
		return bs[0].Address
	}
	s1, logs, stop := fullDHCPServer(t, ns, conf, data)
	addr1 := boot(s1)
	if l, ok, err := s1.DB().Lease(context.Background(), mac); !ok || err != nil || l.IP != addr1 {
		t.Errorf("lease in the store: %+v %v %v (booted from %s)", l, ok, err, addr1)
	}
	if !strings.Contains(logs.String(), `msg="dhcp answer" type=ACK mac=52:54:00:0c:00:04 ip=`+addr1) {
		t.Errorf("no DHCP ACK of %s in the log:\n%s", addr1, logs.String())
	}
	stop()
	s2, _, _ := fullDHCPServer(t, ns, conf, data)
	if addr2 := boot(s2); addr2 != addr1 {
		t.Errorf("after a restart the machine got %s, before %s", addr2, addr1)
	}
	if !strings.HasPrefix(addr1, "192.0.2.5") {
		t.Errorf("address %s is not from the range", addr1)
	}
}

// TestLANServeCommand: `overboot serve` itself, run inside the LAN's
// namespace from a config file, opens its DHCP (full mode), TFTP and HTTP
// sockets on the bridge and answers IPv6 router solicitations there
// (quiet-ra), and a UEFI machine PXE-boots from it alone: the firmware's
// PXE, ipxe.efi over TFTP, iPXE's script over HTTP. (Without an
// advertisement on the LAN, UEFI iPXE waits about 15 s for IPv6 before its
// script; the answer's time is not asserted, only that it was sent.)
func TestLANServeCommand(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	if os.Getuid() != 0 {
		t.Fatal("LAN tests need root for network namespaces (CI runs as root)")
	}
	ns := NewNetNS(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "overboot.conf")
	text := fmt.Sprintf("[server]\nlisten = %[1]s:80\nurl = http://%[1]s\ndata = %[2]s\ntftp = %[1]s:69\ndhcp = %[3]s\ndhcp-range = 192.0.2.70-192.0.2.79\ndhcp-router = %[1]s\nquiet-ra = %[3]s\n\n[profile default]\nkernel = %[4]s\ninitramfs = %[5]s\nroot = %[6]s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\n",
		ns.Addr, filepath.Join(dir, "data"), ns.Bridge, a.Kernel, a.Initramfs, a.Root)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := ns.Exec(a.Overboot, "serve", "-v", "--config", conf)
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &lockedLog{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("overboot serve:\n%s", out.String())
		}
	})
	// serve prints its services once every socket is open.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "overboot: DHCP on "+ns.Bridge) {
		select {
		case err := <-exited:
			t.Fatalf("overboot serve exited: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("overboot serve did not start:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "overboot: quiet IPv6 router advertisements on "+ns.Bridge) {
		t.Errorf("serve does not say it answers router solicitations:\n%s", out.String())
	}
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars, 0o644); err != nil {
		t.Fatalf("OVMF (package ovmf): %v", err)
	}
	const mac = "52:54:00:0c:00:0a"
	vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, UEFIVars: vars, NoNICROM: true})
	expectPass(t, vm)
	for _, want := range []string{`msg="dhcp answer" type=ACK mac=` + mac, `msg="quiet router advertisement" iface=` + ns.Bridge + ` solicited_by=fe80::`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve's log lacks %s:\n%s", want, out.String())
		}
	}
}
