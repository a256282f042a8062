package nbd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Socketpair returns a connected pair of Unix stream sockets: kernel, the
// end for Connect (close it once Connect returns: the kernel holds its own
// reference), and agent, the end to Serve.
func Socketpair() (kernel *os.File, agent net.Conn, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	kernel = os.NewFile(uintptr(fds[0]), "nbd-kernel")
	f := os.NewFile(uintptr(fds[1]), "nbd-agent")
	defer f.Close()
	agent, err = net.FileConn(f)
	if err != nil {
		kernel.Close()
		return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
	}
	return kernel, agent, nil
}

// Connect configures an NBD device over generic netlink (NBD_CMD_CONNECT)
// with the kernel's ends of one or more sockets, and returns the device the
// kernel set up (cfg.Index, or the one it chose for AnyIndex). The device is
// read-only (NBD_FLAG_READ_ONLY). It needs root and the nbd module.
//
// Serve the other ends before or right after: the kernel reads the first
// blocks (partition scan) as soon as the device is up, and holds each
// request up to cfg.Timeout.
func Connect(cfg Config, sockets ...*os.File) (Device, error) {
	msg, err := connectMessage(cfg, fds(sockets))
	if err != nil {
		return 0, err
	}
	replies, err := genlDo(msg)
	runtime.KeepAlive(sockets)
	if err != nil {
		what := "connect"
		if cfg.Index != AnyIndex {
			what = "connect " + Device(cfg.Index).Path()
		}
		return 0, explain(what, err)
	}
	for _, r := range replies {
		if d, err := parseConnectReply(r); err == nil {
			return d, nil
		}
	}
	if cfg.Index != AnyIndex {
		return Device(cfg.Index), nil
	}
	return 0, errors.New("nbd: connect: the kernel's reply names no device")
}

// Reconfigure hands the kernel new sockets for device d
// (NBD_CMD_RECONFIGURE), to replace connections it has marked dead (a
// server that restarted): the kernel takes them only in place of dead ones,
// and holds requests for them up to Config.DeadConnTimeout.
func Reconfigure(d Device, sockets ...*os.File) error {
	msg, err := reconfigureMessage(d, fds(sockets))
	if err != nil {
		return err
	}
	_, err = genlDo(msg)
	runtime.KeepAlive(sockets)
	if err != nil {
		return explain("reconfigure "+d.Path(), err)
	}
	return nil
}

// Disconnect asks the kernel to disconnect device d (NBD_CMD_DISCONNECT):
// it sends NBD_CMD_DISC on each socket, on which Serve returns nil.
func Disconnect(d Device) error {
	msg, err := disconnectMessage(d)
	if err != nil {
		return err
	}
	if _, err := genlDo(msg); err != nil {
		return explain("disconnect "+d.Path(), err)
	}
	return nil
}

func fds(files []*os.File) []int {
	out := make([]int, len(files))
	for i, f := range files {
		out[i] = int(f.Fd())
	}
	return out
}

// ErrNoModule means the kernel has no "nbd" generic netlink family: nbd.ko
// is not loaded.
var ErrNoModule = errors.New("no nbd generic netlink family: is nbd.ko loaded?")

// genlDo sends one request (a genlmsghdr and attributes) to the nbd family
// and returns the kernel's reply messages, if any, as genlmsghdr and
// attributes. It asks for an acknowledgement, so a command without a reply
// (NBD_CMD_DISCONNECT) returns when the kernel has done it.
func genlDo(msg []byte) ([][]byte, error) {
	fam, err := netlink.GenlFamilyGet(genlName)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, ErrNoModule
		}
		return nil, fmt.Errorf("look up generic netlink family %q: %w", genlName, err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK)
	req.AddRawData(msg)
	return req.Execute(unix.NETLINK_GENERIC, fam.ID)
}

// explain names the likely fix for the kernel's terse errors.
func explain(what string, err error) error {
	var hint string
	switch {
	case errors.Is(err, ErrNoModule):
		hint = "load it first (modprobe nbd)"
	case errors.Is(err, unix.EPERM):
		hint = "this needs root (CAP_SYS_ADMIN)"
	case errors.Is(err, unix.EBUSY):
		hint = "the device is connected already: disconnect it, or use another index"
	case errors.Is(err, unix.EINVAL):
		hint = "the kernel refused the configuration: its log has a line starting with \"nbd:\""
	case errors.Is(err, unix.ENOSPC):
		hint = "no dead connection to replace"
	}
	if hint == "" {
		return fmt.Errorf("nbd: %s: %w", what, err)
	}
	return fmt.Errorf("nbd: %s: %w (%s)", what, err, hint)
}
