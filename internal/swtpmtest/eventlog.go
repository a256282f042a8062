package swtpmtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"time"
	"unicode/utf16"
)

// Event is one TCG_PCR_EVENT2 of the log: the SHA-256 digest extended
// into PCR, the event's type and data.
type Event struct {
	PCR    int
	Type   uint32
	Data   []byte
	Digest [sha256.Size]byte
}

// The event types the log uses (TCG PC Client Platform Firmware Profile).
const (
	EvPostCode            = 0x00000001
	EvNoAction            = 0x00000003
	EvSeparator           = 0x00000004
	EvSCRTMVersion        = 0x00000008
	EvIPL                 = 0x0000000d
	EvEFIVariableDriver   = 0x80000001
	EvEFIVariableBoot     = 0x80000002
	EvEFIBootServicesApp  = 0x80000003
	EvEFIAction           = 0x80000007
	EvEFIPlatformFirmware = 0x80000008
	EvEFIVariableAuthorit = 0x800000e0
)

// Data makes an event whose digest is the SHA-256 of its data (the
// firmware's variables, separators, actions).
func Data(pcr int, typ uint32, data []byte) Event {
	return Event{PCR: pcr, Type: typ, Data: data, Digest: sha256.Sum256(data)}
}

// Measured makes an event whose digest is the SHA-256 of what was
// measured (a file, a string), its data a description.
func Measured(pcr int, typ uint32, data, measured []byte) Event {
	return Event{PCR: pcr, Type: typ, Data: data, Digest: sha256.Sum256(measured)}
}

// Boot describes one boot for Log: what the firmware, shim and GRUB
// measure.
type Boot struct {
	SecureBoot bool   // the SecureBoot variable is 1
	Firmware   string // the firmware's version, measured into PCR 0: another is a firmware update
	// GRUB's config, and what it loaded: the kernel, the initrds (each
	// with its file name) and the command line of its linux command as
	// GRUB measures it (server/attest.GRUBCmdline).
	Config  []byte
	Kernel  File
	Initrds []File
	Cmdline string
	// Loaders are the Authenticode hashes the firmware measures into
	// PCR 4 for shim and GRUB, KernelPE the kernel's (shim's verifier
	// measures the kernel it checks); nil: stand-ins.
	Loaders  [][]byte
	KernelPE []byte
}

// File is a file GRUB read: its name (the path it asked for) and content.
type File struct {
	Name    string
	Content []byte
}

// Log is the events of a Secure Boot as OVMF, shim and GRUB log it:
// the firmware in PCR 0, the Secure Boot policy in PCR 7 (SecureBoot,
// PK, KEK, db, dbx), separators, the boot applications in PCR 4 and
// their authority in PCR 7, GRUB's commands and command line in PCR 8
// and the files it read in PCR 9.
func Log(b Boot) []Event {
	sep := []byte{0, 0, 0, 0}
	cert := TestCert()
	sb := byte(0)
	if b.SecureBoot {
		sb = 1
	}
	ev := []Event{
		Data(0, EvSCRTMVersion, utf16le("overboot test firmware "+b.Firmware+"\x00")),
		Measured(0, EvEFIPlatformFirmware, make([]byte, 16), []byte("firmware volume "+b.Firmware)),
		Data(7, EvEFIVariableDriver, variable(efiGlobal, "SecureBoot", []byte{sb})),
		Data(7, EvEFIVariableDriver, variable(efiGlobal, "PK", x509List(cert))),
		Data(7, EvEFIVariableDriver, variable(efiGlobal, "KEK", x509List(cert))),
		Data(7, EvEFIVariableDriver, variable(efiImageSecurity, "db", x509List(cert))),
		Data(7, EvEFIVariableDriver, variable(efiImageSecurity, "dbx", sha256List(sha256.Sum256([]byte("revoked"))))),
		Data(7, EvSeparator, sep),
		Measured(1, EvEFIVariableBoot, variable(efiGlobal, "BootOrder", []byte{1, 0}), []byte{1, 0}),
		Data(4, EvEFIAction, []byte("Calling EFI Application from Boot Option")),
	}
	for pcr := range 7 {
		ev = append(ev, Data(pcr, EvSeparator, sep))
	}
	ev = append(ev,
		Data(7, EvEFIVariableAuthorit, variable(efiImageSecurity, "db", signatureData(cert))),
		app(b.loader(0), []byte("shimx64.efi")),
		Data(7, EvEFIVariableAuthorit, variable(shimLock, "Shim", signatureData(cert))),
		app(b.loader(1), []byte("grubnetx64.efi")),
		Measured(9, EvIPL, cstr("(http)/grub/grub.cfg"), b.Config),
		grubString("grub_cmd: ", "linux "+b.Cmdline),
		Measured(9, EvIPL, cstr(b.Kernel.Name), b.Kernel.Content),
		// shim's verifier measures the kernel it checked (its hash
		// here, standing for the Authenticode hash).
		app(b.KernelPE, b.Kernel.Content),
		grubString("kernel_cmdline: ", b.Cmdline),
	)
	for _, f := range b.Initrds {
		ev = append(ev, grubString("grub_cmd: ", "initrd "+f.Name), Measured(9, EvIPL, cstr(f.Name), f.Content))
	}
	return ev
}

// loader is the Authenticode hash of boot loader i (0 shim, 1 GRUB), or
// nil for a stand-in.
func (b Boot) loader(i int) []byte {
	if i < len(b.Loaders) {
		return b.Loaders[i]
	}
	return nil
}

// app is the firmware's event for an EFI application it starts: its
// Authenticode hash as the digest, or (nil) the SHA-256 of standIn.
func app(authenticode, standIn []byte) Event {
	e := Measured(4, EvEFIBootServicesApp, make([]byte, 32), standIn)
	if authenticode != nil {
		copy(e.Digest[:], authenticode)
	}
	return e
}

// grubString is GRUB's event for a command or the command line: the
// data prefix+s and a NUL, the digest SHA-256 of s.
func grubString(prefix, s string) Event {
	return Measured(8, EvIPL, cstr(prefix+s), []byte(s))
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// Encode writes events as a TCG2 crypto-agile log: a TCG_PCClientPCREvent
// with the Spec ID event (SHA-256 only), then a TCG_PCR_EVENT2 each.
func Encode(events []Event) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	binary.Write(&spec, le, uint32(0)) // platform class
	spec.Write([]byte{0, 2, 0, 2})     // version 2.0, errata 0, uintn size 2 (64-bit)
	binary.Write(&spec, le, uint32(1)) // one algorithm:
	binary.Write(&spec, le, uint16(0x000b))
	binary.Write(&spec, le, uint16(sha256.Size))
	spec.WriteByte(0) // no vendor info
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint32(EvNoAction))
	b.Write(make([]byte, 20))
	binary.Write(&b, le, uint32(spec.Len()))
	b.Write(spec.Bytes())
	for _, e := range events {
		binary.Write(&b, le, uint32(e.PCR))
		binary.Write(&b, le, e.Type)
		binary.Write(&b, le, uint32(1))
		binary.Write(&b, le, uint16(0x000b))
		b.Write(e.Digest[:])
		binary.Write(&b, le, uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes()
}

// EFI GUIDs, in their byte order in memory.
var (
	efiGlobal        = guid(0x8be4df61, 0x93ca, 0x11d2, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c)
	efiImageSecurity = guid(0xd719b2cb, 0x3d3a, 0x4596, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f)
	shimLock         = guid(0x605dab50, 0xe046, 0x4300, 0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23)
	certX509         = guid(0xa5c059a1, 0x94e4, 0x4aa7, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72)
	certSHA256       = guid(0xc1c41626, 0x504c, 0x4092, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28)
	owner            = guid(0x11111111, 0x2222, 0x3333, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55)
)

func guid(a uint32, b, c uint16, d ...byte) []byte {
	g := binary.LittleEndian.AppendUint32(nil, a)
	g = binary.LittleEndian.AppendUint16(g, b)
	g = binary.LittleEndian.AppendUint16(g, c)
	return append(g, d...)
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// variable is a UEFI_VARIABLE_DATA.
func variable(g []byte, name string, data []byte) []byte {
	n := utf16.Encode([]rune(name))
	b := append([]byte{}, g...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(n)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	for _, u := range n {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, data...)
}

// signatureData is an EFI_SIGNATURE_DATA: the owner and the entry.
func signatureData(entry []byte) []byte {
	return append(append([]byte{}, owner...), entry...)
}

// signatureList is an EFI_SIGNATURE_LIST of entries of one size.
func signatureList(typ []byte, entries ...[]byte) []byte {
	size := 16 + len(entries[0])
	b := append([]byte{}, typ...)
	b = binary.LittleEndian.AppendUint32(b, uint32(28+size*len(entries)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	for _, e := range entries {
		b = append(b, signatureData(e)...)
	}
	return b
}

func x509List(cert []byte) []byte { return signatureList(certX509, cert) }

func sha256List(h [sha256.Size]byte) []byte { return signatureList(certSHA256, h[:]) }

// TestCert is the Secure Boot key of the test firmware (PK, KEK and db
// alike): an Ed25519 certificate made from a fixed seed, the same DER
// on every call, so that PCR 7 is the same on every boot.
func TestCert() []byte {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "overboot test Secure Boot key"},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2054, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic("swtpmtest: the test certificate: " + err.Error())
	}
	return der
}
