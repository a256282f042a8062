package initiator

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sgIOHdr is Linux's struct sg_io_hdr (<scsi/sg.h>), for the SG_IO ioctl.
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         uintptr
	cmdp           uintptr
	sbp            uintptr
	timeout        uint32 // ms
	flags          uint32
	packID         int32
	usrPtr         uintptr
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

const (
	sgIO           = 0x2285
	sgDxferFromDev = -3
)

// DeviceIdentity reads the Device Identification VPD page (0x83, SPC-4
// 7.8.6) of the SCSI disk open as f, with an INQUIRY through SG_IO: the
// designators a target gives its logical unit, in hex. It goes through
// the disk's queue like any I/O.
func DeviceIdentity(f *os.File) (string, error) {
	cdb := []byte{0x12, 0x01, 0x83, 0x00, 0xff, 0x00} // INQUIRY, EVPD, page 0x83, 255 bytes
	buf := make([]byte, 255)
	sense := make([]byte, 32)
	h := sgIOHdr{
		interfaceID: 'S', dxferDirection: sgDxferFromDev,
		cmdLen: uint8(len(cdb)), mxSbLen: uint8(len(sense)),
		dxferLen: uint32(len(buf)), dxferp: uintptr(unsafe.Pointer(&buf[0])),
		cmdp: uintptr(unsafe.Pointer(&cdb[0])), sbp: uintptr(unsafe.Pointer(&sense[0])),
		timeout: 30_000,
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), sgIO, uintptr(unsafe.Pointer(&h)))
	runtime.KeepAlive(buf)
	runtime.KeepAlive(cdb)
	runtime.KeepAlive(sense)
	if errno != 0 {
		return "", &os.PathError{Op: "SG_IO INQUIRY", Path: f.Name(), Err: errno}
	}
	if h.status != 0 || h.hostStatus != 0 || h.driverStatus&0x0f != 0 {
		return "", fmt.Errorf("%s: INQUIRY VPD 0x83: status 0x%02x host 0x%x driver 0x%x", f.Name(), h.status, h.hostStatus, h.driverStatus)
	}
	return parseVPD83(buf[:len(buf)-int(h.resid)])
}

// parseVPD83 checks a Device Identification page and returns its
// designators in hex.
func parseVPD83(b []byte) (string, error) {
	if len(b) < 4 || b[1] != 0x83 {
		return "", errors.New("INQUIRY VPD 0x83: not a device identification page")
	}
	n := int(b[2])<<8 | int(b[3])
	if n == 0 || 4+n > len(b) {
		return "", fmt.Errorf("INQUIRY VPD 0x83: %d bytes of designators, %d read", n, len(b)-4)
	}
	return hex.EncodeToString(b[4 : 4+n]), nil
}
