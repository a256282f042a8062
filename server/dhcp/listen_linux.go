package dhcp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// RecvBuffer is the receive buffer ListenInterface asks for.
const RecvBuffer = 4 << 20

// ListenInterface opens a UDP socket on 0.0.0.0:port that only sees
// ifname's packets (SO_BINDTODEVICE) and may broadcast (SO_BROADCAST),
// for Proxy.Serve and Full.Serve (port 67) and Proxy.ServeBootServer
// (port 4011).
//
// A DHCP server must listen on the wildcard address: clients without an
// address send to 255.255.255.255 from 0.0.0.0. Binding to the device
// keeps one interface's clients apart from another's, makes replies to
// 255.255.255.255 leave by that interface rather than the default
// route's, and lets one socket per interface share the port
// (SO_REUSEADDR too). Port 67 needs CAP_NET_BIND_SERVICE, and
// SO_BINDTODEVICE may need CAP_NET_RAW.
func ListenInterface(ctx context.Context, ifname string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return control(c, func(s int) error {
			if err := interfaceSocket(s, ifname); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
				return fmt.Errorf("SO_BROADCAST: %w", err)
			}
			return nil
		})
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen on %s port %d: %w", ifname, port, err)
	}
	return pc.(*net.UDPConn), nil
}

// control runs fn on the socket's descriptor and returns its error.
func control(c syscall.RawConn, fn func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// interfaceSocket sets what every DHCP server socket needs: bound to one
// interface (SO_BINDTODEVICE), sharing its port with the sockets of other
// interfaces (SO_REUSEADDR), and a receive buffer for a lab powered on at
// once.
func interfaceSocket(s int, ifname string) error {
	if err := unix.BindToDevice(s, ifname); err != nil {
		return fmt.Errorf("SO_BINDTODEVICE %s: %w", ifname, err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	// A lab powered on at once sends its requests together: the default
	// buffer (208 KiB) held about 166 of 200 DISCOVERs and the kernel
	// dropped the rest (the bench's finding). 4 MiB holds thousands;
	// FORCE passes net.core.rmem_max where the process may (port 67 and
	// 547 need privilege anyway), else the plain option gets what the
	// system allows.
	if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, RecvBuffer) != nil {
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, RecvBuffer)
	}
	return nil
}
