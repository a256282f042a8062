package vmtest

import (
	"fmt"
	"github.com/overboot/overboot/internal/netnsrun"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
)

// A NetNS is a network namespace of the test's own with a bridge in it:
// QEMU machines join it through tap devices and overboot's DHCP, TFTP
// and HTTP listen on the bridge's address, so firmware PXE (DHCP
// broadcasts included) runs as on a real LAN, and no packet leaves the
// namespace. Addresses come from 192.0.2.0/24 (ENV.md). Needs root and
// iproute2; the namespace and its devices go when the test ends.
type NetNS struct {
	Name   string
	Bridge string // "br0"
	Addr   string // the bridge's address, 192.0.2.1
	taps   atomic.Int32
}

var nsSeq atomic.Int32

// TB is what the namespace helpers need of their caller: a *testing.T,
// or the benchmark program's stand-in (cmd/overboot-bench).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// NewNetNS makes a namespace with a bridge at 192.0.2.1/24 and loopback up.
func NewNetNS(t TB) *NetNS {
	t.Helper()
	n := &NetNS{Name: fmt.Sprintf("obtest%d-%d", os.Getpid(), nsSeq.Add(1)), Bridge: "br0", Addr: "192.0.2.1"}
	runCmd(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", n.Addr + "/24", "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		runCmd(t, "ip", append([]string{"-n", n.Name}, args...)...)
	}
	return n
}

// Tap adds a tap device on the bridge for one QEMU machine and returns
// its name. QEMU opens it from inside the namespace (Exec).
func (n *NetNS) Tap(t TB) string {
	t.Helper()
	name := fmt.Sprintf("tap%d", n.taps.Add(1))
	runCmd(t, "ip", "-n", n.Name, "tuntap", "add", "name", name, "mode", "tap")
	runCmd(t, "ip", "-n", n.Name, "link", "set", name, "master", n.Bridge)
	runCmd(t, "ip", "-n", n.Name, "link", "set", name, "up")
	return name
}

// Exec wraps a command to run inside the namespace.
func (n *NetNS) Exec(name string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name, name}, args...)
}

// Do runs fn inside the namespace (internal/netnsrun): sockets fn opens
// belong to the namespace for their whole life, wherever they are used
// afterwards.
func (n *NetNS) Do(fn func() error) error {
	_, err := netnsrun.Do(n.Name, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// Listen opens a TCP listener inside the namespace.
func (n *NetNS) Listen(t TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// ListenPacket opens a UDP socket inside the namespace.
func (n *NetNS) ListenPacket(t TB, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := n.Do(func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func runCmd(t TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// Host adds another host to the LAN: a namespace of its own joined to the
// bridge by a veth pair, with address addr/24 on its end (Bridge names
// that end). A site's DHCP server runs there, apart from overboot, as it
// would on a real network (both want UDP port 67).
func (n *NetNS) Host(t TB, addr string) *NetNS {
	t.Helper()
	seq := nsSeq.Add(1)
	h := &NetNS{Name: fmt.Sprintf("obtest%d-%d", os.Getpid(), seq), Bridge: "eth0", Addr: addr}
	runCmd(t, "ip", "netns", "add", h.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", h.Name).Run() })
	a, b := fmt.Sprintf("obva%d", seq), fmt.Sprintf("obvb%d", seq)
	runCmd(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	runCmd(t, "ip", "link", "set", a, "netns", n.Name)
	runCmd(t, "ip", "link", "set", b, "netns", h.Name)
	for _, args := range [][]string{
		{"-n", n.Name, "link", "set", a, "master", n.Bridge},
		{"-n", n.Name, "link", "set", a, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
		{"-n", h.Name, "link", "set", b, "name", h.Bridge},
		{"-n", h.Name, "addr", "add", addr + "/24", "dev", h.Bridge},
		{"-n", h.Name, "link", "set", h.Bridge, "up"},
	} {
		runCmd(t, "ip", args...)
	}
	return h
}
