package initagent

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/u-root/u-root/pkg/dhclient"
	uiorand "github.com/u-root/uio/rand"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func init() {
	// insomniacslk/dhcp draws DHCPv4 and DHCPv6 transaction IDs from
	// u-root/uio's rand, which waits for the kernel's CRNG: getrandom
	// spins until it is ready, and /dev/urandom (UROOT_NOHWRNG) makes the
	// kernel generate entropy first, which took 1.1 s of every boot on an
	// emulated machine without RDRAND or virtio-rng. A transaction ID only
	// has to differ from other clients' (RFC 2131 4.1), not be secret: it
	// comes from math/rand/v2, which the Go runtime seeds from the bytes
	// the kernel gives every process at exec (AT_RANDOM), without waiting.
	uiorand.Reader = xidSource{}
}

// xidSource is a uio ContextReader over math/rand/v2.
type xidSource struct{}

func (xidSource) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(mathrand.Uint32())
	}
	return len(b), nil
}

func (x xidSource) ReadContext(_ context.Context, b []byte) (int, error) { return x.Read(b) }

// bringUpNetwork waits for a carrier, runs DHCPv4 and configures the
// address, routes and resolv.conf. It returns a note for the console and
// the interface it used.
func bringUpNetwork(ctx context.Context, s Network) (string, string, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	t0 := time.Now()
	link, err := waitForLink(ctx, s.Iface, s.LinkTimeout)
	if err != nil {
		return "", "", err
	}
	linkTook := time.Since(t0)
	name := link.Attrs().Name
	if s.Family == 6 {
		note, err := dhcp6(ctx, link, s)
		if err != nil {
			return "", name, err
		}
		return note + fmt.Sprintf(" (link %.2fs, dhcpv6 %.2fs)", linkTook.Seconds(), time.Since(t0).Seconds()-linkTook.Seconds()), name, nil
	}
	client, err := nclient4.New(name, nclient4.WithTimeout(s.DHCPTimeout), nclient4.WithRetry(s.Attempts))
	if err != nil {
		return "", name, fmt.Errorf("dhcp on %s: %w", name, err)
	}
	defer client.Close()
	lease, err := client.Request(ctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("overboot")))
	if err != nil {
		return "", name, fmt.Errorf("no DHCPv4 lease on %s after %d attempts of %v (%v): is the cable in, and does a DHCP server answer on this network?", name, s.Attempts, s.DHCPTimeout, err)
	}
	if err := dhclient.Configure4(link, lease.ACK); err != nil {
		return "", name, fmt.Errorf("configure %s with the DHCP lease: %w", name, err)
	}
	ack := lease.ACK
	mask, _ := ack.SubnetMask().Size()
	note := fmt.Sprintf("%s %s %s/%d from %s", name, link.Attrs().HardwareAddr, ack.YourIPAddr, mask, ack.ServerIdentifier())
	if r := ack.Router(); len(r) > 0 {
		note += fmt.Sprintf(" via %s", r[0])
	}
	note += fmt.Sprintf(" (link %.2fs, dhcp %.2fs)", linkTook.Seconds(), time.Since(t0).Seconds()-linkTook.Seconds())
	return note, name, nil
}

// waitForLink brings every candidate interface up and returns the first
// with a carrier. A named interface is waited for even if its driver has
// not created it yet.
func waitForLink(ctx context.Context, want string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	up := map[string]bool{}
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
		var seen []string
		for _, l := range candidates(links, want) {
			a := l.Attrs()
			seen = append(seen, a.Name)
			if !up[a.Name] {
				if err := netlink.LinkSetUp(l); err != nil {
					return nil, fmt.Errorf("bring up %s: %w", a.Name, err)
				}
				up[a.Name] = true
			}
			// IFF_UP and IFF_LOWER_UP: the carrier is on. The operstate
			// follows only when the kernel's linkwatch runs, up to a second
			// later; the device transmits already (dev_open activated its
			// queues, or the carrier-on event did).
			if a.OperState == netlink.OperUp || (a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0) {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, linkError(want, seen, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// candidates returns the interfaces DHCP may run on: the named one, or every
// Ethernet-like interface that is not loopback, sorted by index.
func candidates(links []netlink.Link, want string) []netlink.Link {
	var out []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if want != "" {
			if a.Name == want {
				out = append(out, l)
			}
			continue
		}
		if a.Flags&0x8 != 0 || len(a.HardwareAddr) != 6 { // net.FlagLoopback
			continue
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	return out
}

func linkError(want string, seen []string, timeout time.Duration) error {
	switch {
	case want != "" && len(seen) == 0:
		return fmt.Errorf("no interface %s after %v: is its driver in the initramfs (overboot.modules=), or is the name different?", want, timeout)
	case len(seen) == 0:
		return errors.New("no network interface found after " + timeout.String() + ": is the NIC's driver in the initramfs (add it with overboot.modules= or mkimage initramfs --modules)?")
	}
	return fmt.Errorf("no link on %s after %v: is the cable in and the switch port up?", strings.Join(seen, ", "), timeout)
}

// handOverNetwork writes HandOverFiles for the interface Network used.
func handOverNetwork(s HandOverNetwork, iface string) (string, error) {
	if iface == "" {
		return "no interface to hand over", nil
	}
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return "", fmt.Errorf("hand over %s: %w", iface, err)
	}
	files, err := HandOverFiles(iface, link.Attrs().HardwareAddr.String(), s.Keep)
	if err != nil {
		return "", err
	}
	var names []string
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return "", err
		}
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	return strings.Join(names, " "), nil
}
