package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
)

// The kernel's generic netlink family "nbd": the numbers are those of
// include/uapi/linux/nbd-netlink.h in Linux 6.1 (as Debian 12's
// linux-libc-dev ships it; unchanged since, but for NBD_ATTR_BACKEND_IDENTIFIER
// added after the nine below). The attribute types the kernel expects are in
// drivers/block/nbd.c, nbd_attr_policy: NBD_ATTR_INDEX is a u32, the other
// scalars u64, NBD_SOCK_FD a u32.
const (
	genlName    = "nbd" // NBD_GENL_FAMILY_NAME
	genlVersion = 1     // NBD_GENL_VERSION

	cmdConnect     = 1 // NBD_CMD_CONNECT
	cmdDisconnect  = 2 // NBD_CMD_DISCONNECT
	cmdReconfigure = 3 // NBD_CMD_RECONFIGURE

	attrIndex           = 1 // NBD_ATTR_INDEX, u32
	attrSizeBytes       = 2 // NBD_ATTR_SIZE_BYTES, u64
	attrBlockSizeBytes  = 3 // NBD_ATTR_BLOCK_SIZE_BYTES, u64
	attrTimeout         = 4 // NBD_ATTR_TIMEOUT, u64 seconds
	attrServerFlags     = 5 // NBD_ATTR_SERVER_FLAGS, u64
	attrClientFlags     = 6 // NBD_ATTR_CLIENT_FLAGS, u64
	attrSockets         = 7 // NBD_ATTR_SOCKETS, nested
	attrDeadConnTimeout = 8 // NBD_ATTR_DEAD_CONN_TIMEOUT, u64 seconds

	sockItem = 1 // NBD_SOCK_ITEM, nested in NBD_ATTR_SOCKETS
	sockFD   = 1 // NBD_SOCK_FD, u32, in NBD_SOCK_ITEM

	nlaFNested = 1 << 15 // NLA_F_NESTED, include/uapi/linux/netlink.h
)

// Client flags for Config.ClientFlags (NBD_CFLAG_* in nbd.h).
const (
	// ClientDestroyOnDisconnect removes /dev/nbdN when it is disconnected.
	ClientDestroyOnDisconnect = 1 << 0
	// ClientDisconnectOnClose disconnects when the last opener closes it.
	ClientDisconnectOnClose = 1 << 1
)

// AnyIndex as Config.Index lets the kernel pick a free device.
const AnyIndex = -1

// DefaultBlockSize is the logical block size when Config.BlockSize is zero.
const DefaultBlockSize = 4096

// Device is an NBD device by index: Device(0) is /dev/nbd0.
type Device int

// Path is the device node, /dev/nbdN.
func (d Device) Path() string { return fmt.Sprintf("/dev/nbd%d", int(d)) }

func (d Device) String() string { return d.Path() }

// Config is what Connect tells the kernel about a device: what an NBD
// handshake would have negotiated. The device is always read-only.
type Config struct {
	// Index is N in /dev/nbdN; AnyIndex lets the kernel choose.
	Index int
	// Size is the device size in bytes: a positive multiple of BlockSize.
	// It should be the Backend's Size: the kernel reads the last blocks
	// (partition tables), and Serve answers reads past the Backend's end
	// with EINVAL.
	Size int64
	// BlockSize is the logical block size in bytes, a power of two from 512
	// to the page size; 0 means DefaultBlockSize.
	BlockSize int64
	// Timeout is how long a request may go unanswered before the kernel
	// gives up on the connection, in whole seconds (rounded up); 0 leaves
	// the kernel's default (30 s).
	Timeout time.Duration
	// DeadConnTimeout is how long the kernel holds requests once every
	// connection is dead, waiting for Reconfigure to hand it a new socket,
	// before it fails them; whole seconds, rounded up; 0 fails them at once.
	DeadConnTimeout time.Duration
	// ClientFlags are NBD_CFLAG_* bits (ClientDestroyOnDisconnect,
	// ClientDisconnectOnClose); 0 sets none.
	ClientFlags uint64
}

func (c Config) blockSize() int64 {
	if c.BlockSize == 0 {
		return DefaultBlockSize
	}
	return c.BlockSize
}

// validate checks what the kernel would refuse with a bare EINVAL.
func (c Config) validate() error {
	if c.Index < AnyIndex {
		return fmt.Errorf("nbd: device index %d: want 0 or more, or AnyIndex", c.Index)
	}
	bs := c.blockSize()
	if bs < 512 || bs > int64(os.Getpagesize()) || bs&(bs-1) != 0 {
		return fmt.Errorf("nbd: block size %d: want a power of two from 512 to the page size (%d)", bs, os.Getpagesize())
	}
	if c.Size <= 0 {
		return fmt.Errorf("nbd: device size %d: want a positive number of bytes", c.Size)
	}
	if c.Size%bs != 0 {
		return fmt.Errorf("nbd: device size %d is not a multiple of the block size %d: pad the image", c.Size, bs)
	}
	if c.Timeout < 0 || c.DeadConnTimeout < 0 {
		return fmt.Errorf("nbd: negative timeout (%v, dead connection %v)", c.Timeout, c.DeadConnTimeout)
	}
	return nil
}

// serverFlags are the transmission flags the kernel gets: this server
// supports flags, the device is read-only, and with more than one socket
// every connection sees the same data (nothing is written, so that holds).
func serverFlags(sockets int) uint64 {
	f := uint64(FlagHasFlags | FlagReadOnly)
	if sockets > 1 {
		f |= FlagCanMultiConn
	}
	return f
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// connectMessage is the generic netlink payload (genlmsghdr and attributes)
// of NBD_CMD_CONNECT for cfg and the kernel's ends of the sockets.
func connectMessage(cfg Config, fds []int) ([]byte, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(fds) == 0 {
		return nil, errors.New("nbd: connect: no socket for the kernel")
	}
	b := genlHeader(cmdConnect)
	if cfg.Index != AnyIndex {
		b = appendU32(b, attrIndex, uint32(cfg.Index))
	}
	b = appendU64(b, attrSizeBytes, uint64(cfg.Size))
	b = appendU64(b, attrBlockSizeBytes, uint64(cfg.blockSize()))
	if cfg.Timeout > 0 {
		b = appendU64(b, attrTimeout, seconds(cfg.Timeout))
	}
	b = appendU64(b, attrServerFlags, serverFlags(len(fds)))
	if cfg.ClientFlags != 0 {
		b = appendU64(b, attrClientFlags, cfg.ClientFlags)
	}
	if cfg.DeadConnTimeout > 0 {
		b = appendU64(b, attrDeadConnTimeout, seconds(cfg.DeadConnTimeout))
	}
	return appendSockets(b, fds)
}

// reconfigureMessage is NBD_CMD_RECONFIGURE handing device d new sockets.
func reconfigureMessage(d Device, fds []int) ([]byte, error) {
	if d < 0 {
		return nil, fmt.Errorf("nbd: reconfigure: device index %d", int(d))
	}
	if len(fds) == 0 {
		return nil, errors.New("nbd: reconfigure: no socket for the kernel")
	}
	b := appendU32(genlHeader(cmdReconfigure), attrIndex, uint32(d))
	return appendSockets(b, fds)
}

// disconnectMessage is NBD_CMD_DISCONNECT for device d.
func disconnectMessage(d Device) ([]byte, error) {
	if d < 0 {
		return nil, fmt.Errorf("nbd: disconnect: device index %d", int(d))
	}
	return appendU32(genlHeader(cmdDisconnect), attrIndex, uint32(d)), nil
}

// parseConnectReply finds NBD_ATTR_INDEX in the kernel's reply to
// NBD_CMD_CONNECT (drivers/block/nbd.c, nbd_connect_reply): a genlmsghdr
// and a u32 attribute.
func parseConnectReply(msg []byte) (Device, error) {
	if len(msg) < 4 {
		return 0, fmt.Errorf("nbd: connect reply of %d bytes", len(msg))
	}
	attrs := msg[4:]
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4]) &^ (nlaFNested | 1<<14)
		if l < 4 || l > len(attrs) {
			return 0, fmt.Errorf("nbd: connect reply: attribute of length %d in %d bytes", l, len(attrs))
		}
		if typ == attrIndex && l == 8 {
			return Device(binary.NativeEndian.Uint32(attrs[4:8])), nil
		}
		attrs = attrs[min(align4(l), len(attrs)):]
	}
	return 0, errors.New("nbd: connect reply without NBD_ATTR_INDEX")
}

// Netlink attributes (include/uapi/linux/netlink.h, struct nlattr): length
// (header included, padding not) and type in host byte order, the payload,
// padding to 4 bytes.

func genlHeader(cmd uint8) []byte {
	// struct genlmsghdr: cmd, version, reserved u16.
	return []byte{cmd, genlVersion, 0, 0}
}

func align4(n int) int { return (n + 3) &^ 3 }

func appendAttr(b []byte, typ uint16, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	return append(b, make([]byte, align4(len(payload))-len(payload))...)
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

func appendU64(b []byte, typ uint16, v uint64) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint64(nil, v))
}

// appendSockets: NBD_ATTR_SOCKETS holds one NBD_SOCK_ITEM per socket, each
// holding its NBD_SOCK_FD.
func appendSockets(b []byte, fds []int) ([]byte, error) {
	var items []byte
	for _, fd := range fds {
		if fd < 0 {
			return nil, fmt.Errorf("nbd: socket descriptor %d", fd)
		}
		items = appendAttr(items, nlaFNested|sockItem, appendU32(nil, sockFD, uint32(fd)))
	}
	return appendAttr(b, nlaFNested|attrSockets, items), nil
}
