package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The transmission phase of the NBD protocol, as the Linux kernel speaks it
// once netlink has configured the device (no handshake: the netlink
// attributes carry what the handshake would). References: the NBD protocol,
// NetworkBlockDevice/nbd doc/proto.md, "Transmission", "Request message",
// "Simple reply message", "Error values"; and the kernel's
// include/uapi/linux/nbd.h (struct nbd_request, struct nbd_reply).

// Magic numbers (proto.md; NBD_REQUEST_MAGIC and NBD_REPLY_MAGIC in nbd.h).
const (
	RequestMagic     = 0x25609513
	SimpleReplyMagic = 0x67446698
)

// Header lengths on the wire.
const (
	// RequestHeaderLen: magic 4, command flags 2, type 2, handle 8,
	// offset 8, length 4.
	RequestHeaderLen = 28
	// ReplyHeaderLen: magic 4, error 4, handle 8.
	ReplyHeaderLen = 16
)

// MaxLength bounds the length of a read or write request that ParseRequest
// accepts, so that a corrupt frame cannot make the server allocate
// gigabytes. It equals the largest request the kernel sends: drivers/block/nbd.c
// limits the queue to 65536 sectors of 512 bytes.
const MaxLength = 32 << 20

// Command is a request type (proto.md "Request types"; NBD_CMD_* in nbd.h).
type Command uint16

// Request types.
const (
	CmdRead        Command = 0
	CmdWrite       Command = 1
	CmdDisc        Command = 2
	CmdFlush       Command = 3
	CmdTrim        Command = 4
	CmdWriteZeroes Command = 6
)

func (c Command) String() string {
	switch c {
	case CmdRead:
		return "NBD_CMD_READ"
	case CmdWrite:
		return "NBD_CMD_WRITE"
	case CmdDisc:
		return "NBD_CMD_DISC"
	case CmdFlush:
		return "NBD_CMD_FLUSH"
	case CmdTrim:
		return "NBD_CMD_TRIM"
	case CmdWriteZeroes:
		return "NBD_CMD_WRITE_ZEROES"
	}
	return fmt.Sprintf("NBD_CMD_%d", uint16(c))
}

// CmdFlagFUA is the one command flag the server accepts (proto.md "Command
// flags": valid for all commands; nothing here writes, so it is a no-op).
const CmdFlagFUA = 1 << 0

// Transmission flags: what the server supports, given to the kernel as
// NBD_ATTR_SERVER_FLAGS (proto.md "Transmission flags"; NBD_FLAG_* in nbd.h).
const (
	FlagHasFlags     = 1 << 0
	FlagReadOnly     = 1 << 1
	FlagSendFlush    = 1 << 2
	FlagSendFUA      = 1 << 3
	FlagRotational   = 1 << 4
	FlagSendTrim     = 1 << 5
	FlagCanMultiConn = 1 << 8
)

// Errno is the error field of a reply. Only the values proto.md "Error
// values" defines are sent.
type Errno uint32

// Error values.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ESHUTDOWN Errno = 108
)

func (e Errno) String() string {
	switch e {
	case 0:
		return "OK"
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return fmt.Sprintf("errno %d", uint32(e))
}

// ErrProtocol marks a frame that breaks the protocol: after one the stream
// cannot be trusted, and the server hangs up (proto.md: a hard disconnect).
var ErrProtocol = errors.New("nbd protocol error")

// Request is one request header. Handle is opaque (the kernel packs a
// cookie and its blk-mq tag into it) and is echoed in the reply.
type Request struct {
	Flags  uint16
	Type   Command
	Handle uint64
	Offset uint64
	Length uint32
}

// ParseRequest decodes a request header. It refuses a short buffer, a wrong
// magic and a read or write longer than MaxLength, with errors wrapping
// ErrProtocol that say what was wrong. Bytes past the header are ignored.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < RequestHeaderLen {
		return Request{}, fmt.Errorf("%w: request header of %d bytes, want %d", ErrProtocol, len(b), RequestHeaderLen)
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != RequestMagic {
		return Request{}, fmt.Errorf("%w: request magic %#08x, want %#08x", ErrProtocol, m, RequestMagic)
	}
	r := Request{
		Flags:  binary.BigEndian.Uint16(b[4:6]),
		Type:   Command(binary.BigEndian.Uint16(b[6:8])),
		Handle: binary.BigEndian.Uint64(b[8:16]),
		Offset: binary.BigEndian.Uint64(b[16:24]),
		Length: binary.BigEndian.Uint32(b[24:28]),
	}
	if (r.Type == CmdRead || r.Type == CmdWrite) && r.Length > MaxLength {
		return Request{}, fmt.Errorf("%w: %v of %d bytes at offset %d (handle %#x): over the %d-byte limit",
			ErrProtocol, r.Type, r.Length, r.Offset, r.Handle, MaxLength)
	}
	return r, nil
}

// AppendBinary appends the request header to b.
func (r Request) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, RequestMagic)
	b = binary.BigEndian.AppendUint16(b, r.Flags)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Type))
	b = binary.BigEndian.AppendUint64(b, r.Handle)
	b = binary.BigEndian.AppendUint64(b, r.Offset)
	b = binary.BigEndian.AppendUint32(b, r.Length)
	return b, nil
}

// MarshalBinary returns the request header.
func (r Request) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, RequestHeaderLen))
}

// ReadRequest reads and parses one request header. At a clean end of stream
// (no byte of a new header) it returns io.EOF; a header cut short gives
// io.ErrUnexpectedEOF.
func ReadRequest(rd io.Reader) (Request, error) {
	var b [RequestHeaderLen]byte
	if _, err := io.ReadFull(rd, b[:]); err != nil {
		return Request{}, err
	}
	return ParseRequest(b[:])
}

// Reply is a simple reply header. A successful read reply is followed by the
// request's Length bytes of data; an error reply carries no data (proto.md,
// NBD_CMD_READ: "it MUST NOT send any payload for this request"; the kernel
// reads none either).
type Reply struct {
	Error  Errno
	Handle uint64
}

// ParseReply decodes a simple reply header, refusing a short buffer and a
// wrong magic (the structured reply magic included: the kernel never
// negotiates structured replies).
func ParseReply(b []byte) (Reply, error) {
	if len(b) < ReplyHeaderLen {
		return Reply{}, fmt.Errorf("%w: reply header of %d bytes, want %d", ErrProtocol, len(b), ReplyHeaderLen)
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != SimpleReplyMagic {
		return Reply{}, fmt.Errorf("%w: reply magic %#08x, want %#08x", ErrProtocol, m, SimpleReplyMagic)
	}
	return Reply{
		Error:  Errno(binary.BigEndian.Uint32(b[4:8])),
		Handle: binary.BigEndian.Uint64(b[8:16]),
	}, nil
}

// AppendBinary appends the reply header to b.
func (r Reply) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, SimpleReplyMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Error))
	b = binary.BigEndian.AppendUint64(b, r.Handle)
	return b, nil
}

// put writes the header into b, which has ReplyHeaderLen bytes.
func (r Reply) put(b *[ReplyHeaderLen]byte) {
	binary.BigEndian.PutUint32(b[0:4], SimpleReplyMagic)
	binary.BigEndian.PutUint32(b[4:8], uint32(r.Error))
	binary.BigEndian.PutUint64(b[8:16], r.Handle)
}
