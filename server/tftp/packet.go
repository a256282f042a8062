package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Opcodes: RFC 1350 section 5; OACK is RFC 2347's.
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// Op is a request's opcode.
type Op uint16

// The two requests of RFC 1350. This server answers RRQ only.
const (
	RRQ Op = Op(opRRQ)
	WRQ Op = Op(opWRQ)
)

func (o Op) String() string {
	switch o {
	case RRQ:
		return "RRQ"
	case WRQ:
		return "WRQ"
	}
	return fmt.Sprintf("opcode %d", uint16(o))
}

// ErrorCode is the code of an ERROR packet: RFC 1350's appendix, plus 8
// from RFC 2347.
type ErrorCode uint16

const (
	ErrUndefined    ErrorCode = 0 // see the message
	ErrNotFound     ErrorCode = 1
	ErrAccess       ErrorCode = 2 // access violation
	ErrDiskFull     ErrorCode = 3
	ErrIllegal      ErrorCode = 4 // illegal TFTP operation
	ErrUnknownTID   ErrorCode = 5
	ErrExists       ErrorCode = 6
	ErrNoUser       ErrorCode = 7
	ErrOptionDenied ErrorCode = 8 // RFC 2347: the client refuses the OACK
)

func (c ErrorCode) String() string {
	switch c {
	case ErrUndefined:
		return "undefined"
	case ErrNotFound:
		return "file not found"
	case ErrAccess:
		return "access violation"
	case ErrDiskFull:
		return "disk full"
	case ErrIllegal:
		return "illegal operation"
	case ErrUnknownTID:
		return "unknown transfer ID"
	case ErrExists:
		return "file exists"
	case ErrNoUser:
		return "no such user"
	case ErrOptionDenied:
		return "option negotiation refused"
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is an ERROR packet, sent or received. Client.Get returns one when
// the server ends the transfer with an ERROR; errors.As finds it.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("tftp error %d (%s): %s", uint16(e.Code), e.Code, e.Message)
}

// maxErrorMessage bounds the text of the ERROR packets we send: they
// quote filenames and parse errors that come from the network.
const maxErrorMessage = 200

func (e *Error) marshal() []byte {
	msg := e.Message
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	// The message is NUL-terminated (RFC 1350): a NUL inside would cut it.
	msg = strings.ReplaceAll(msg, "\x00", "")
	b := make([]byte, 0, 5+len(msg))
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Code))
	b = append(b, msg...)
	return append(b, 0)
}

// Option is a TFTP option (RFC 2347). Names are case-insensitive; parsed
// ones are lowercased.
type Option struct {
	Name  string
	Value string
}

// Request is a parsed RRQ or WRQ.
type Request struct {
	Op       Op
	Filename string
	Mode     string   // lowercased: "octet", "netascii" or "mail"
	Options  []Option // in the order sent, names lowercased
}

// MaxRequestSize is the largest request packet: RFC 2347 section
// "Packet Formats" says a request, options included, must not exceed
// 512 octets.
const MaxRequestSize = 512

// ParseRequest parses an RRQ or WRQ packet (RFC 1350 section 5, options
// as in RFC 2347). It is pure: it validates syntax only; which mode and
// options the server accepts is decided elsewhere. Errors say what was
// wrong, for the ERROR packet's message.
func ParseRequest(b []byte) (Request, error) {
	if len(b) > MaxRequestSize {
		return Request{}, fmt.Errorf("request of %d bytes is over the %d of RFC 2347", len(b), MaxRequestSize)
	}
	if len(b) < 2 {
		return Request{}, fmt.Errorf("packet of %d bytes has no opcode", len(b))
	}
	op := binary.BigEndian.Uint16(b)
	if op != opRRQ && op != opWRQ {
		return Request{}, fmt.Errorf("opcode %d is not a request (RRQ 1 or WRQ 2)", op)
	}
	r := Request{Op: Op(op)}
	rest := b[2:]
	name, rest, err := cstring(rest, "filename")
	if err != nil {
		return Request{}, err
	}
	if name == "" {
		return Request{}, errors.New("empty filename")
	}
	r.Filename = name
	mode, rest, err := cstring(rest, "mode")
	if err != nil {
		return Request{}, err
	}
	// RFC 1350: the mode is case-insensitive.
	r.Mode = asciiLower(mode)
	switch r.Mode {
	case "octet", "netascii", "mail":
	default:
		return Request{}, fmt.Errorf("unknown mode %q (octet, netascii or mail)", mode)
	}
	opts, err := parseOptions(rest)
	if err != nil {
		return Request{}, err
	}
	r.Options = opts
	return r, nil
}

// Marshal encodes the request; ParseRequest reads it back.
func (r Request) Marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(r.Op))
	b = append(append(b, r.Filename...), 0)
	b = append(append(b, r.Mode...), 0)
	return appendOptions(b, r.Options)
}

// cstring takes one NUL-terminated string off b.
func cstring(b []byte, what string) (string, []byte, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, fmt.Errorf("%s not terminated by NUL (truncated packet?)", what)
	}
	return string(b[:i]), b[i+1:], nil
}

// parseOptions reads RFC 2347 name/value pairs, as in a request or an
// OACK. Trailing NUL bytes are ignored: some PXE ROMs pad their requests.
func parseOptions(b []byte) ([]Option, error) {
	var opts []Option
	for len(b) > 0 && !allZero(b) {
		name, rest, err := cstring(b, "option name")
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, errors.New("empty option name")
		}
		value, rest, err := cstring(rest, fmt.Sprintf("value of option %q", name))
		if err != nil {
			return nil, err
		}
		name = asciiLower(name)
		for _, o := range opts {
			if o.Name == name {
				// Which one would the client mean? Refuse rather than guess.
				return nil, fmt.Errorf("option %q given twice", name)
			}
		}
		opts = append(opts, Option{Name: name, Value: value})
		b = rest
	}
	return opts, nil
}

func appendOptions(b []byte, opts []Option) []byte {
	for _, o := range opts {
		b = append(append(b, o.Name...), 0)
		b = append(append(b, o.Value...), 0)
	}
	return b
}

// asciiLower folds ASCII letters only: names are netascii (RFC 1350),
// and strings.ToLower would turn a stray invalid UTF-8 byte into a
// 3-byte U+FFFD, changing what the client sent (found by
// FuzzParseRequest).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// packet is a parsed DATA, ACK, ERROR or OACK: what the two ends of a
// transfer exchange after the request.
type packet struct {
	op    uint16
	block uint16   // DATA, ACK
	data  []byte   // DATA; aliases the buffer parsed
	err   *Error   // ERROR
	opts  []Option // OACK
}

// parsePacket parses the packets of a transfer (RFC 1350 section 5,
// RFC 2347 for OACK). Requests are ParseRequest's.
func parsePacket(b []byte) (packet, error) {
	if len(b) < 2 {
		return packet{}, fmt.Errorf("packet of %d bytes has no opcode", len(b))
	}
	p := packet{op: binary.BigEndian.Uint16(b)}
	switch p.op {
	case opDATA, opACK:
		if len(b) < 4 {
			return packet{}, fmt.Errorf("opcode %d packet of %d bytes has no block number", p.op, len(b))
		}
		p.block = binary.BigEndian.Uint16(b[2:])
		if p.op == opDATA {
			p.data = b[4:]
		}
		// An ACK's trailing bytes, if any, are ignored: only its block
		// number means anything.
	case opERROR:
		if len(b) < 4 {
			return packet{}, fmt.Errorf("ERROR packet of %d bytes has no code", len(b))
		}
		// The message should end in NUL; a peer that forgot still meant
		// to stop the transfer, so take what is there.
		msg := b[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		p.err = &Error{Code: ErrorCode(binary.BigEndian.Uint16(b[2:])), Message: string(msg)}
	case opOACK:
		opts, err := parseOptions(b[2:])
		if err != nil {
			return packet{}, fmt.Errorf("OACK: %w", err)
		}
		p.opts = opts
	default:
		return packet{}, fmt.Errorf("opcode %d is not DATA, ACK, ERROR or OACK", p.op)
	}
	return p, nil
}

func marshalACK(block uint16) []byte {
	return []byte{0, byte(opACK), byte(block >> 8), byte(block)}
}

func marshalOACK(opts []Option) []byte {
	return appendOptions(binary.BigEndian.AppendUint16(nil, opOACK), opts)
}

// putDataHeader writes a DATA header into the first 4 bytes of b.
func putDataHeader(b []byte, block uint16) {
	binary.BigEndian.PutUint16(b, opDATA)
	binary.BigEndian.PutUint16(b[2:], block)
}
