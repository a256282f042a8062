package initiator

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/overboot/overboot/boot"
)

// IBFTDir is where the kernel's iscsi_ibft module shows the iSCSI Boot
// Firmware Table that iPXE (or a NIC's firmware) left in memory.
const IBFTDir = "/sys/firmware/ibft"

// iBFT target flags (iBFT 1.03 section 3.6).
const (
	ibftTargetValid    = 1 << 0
	ibftTargetSelected = 1 << 1 // the firmware booted from this target
)

// ErrNoIBFT means the firmware left no iBFT: the machine was not booted
// from an iSCSI disk.
var ErrNoIBFT = errors.New("no iBFT: the firmware did not boot from an iSCSI disk (iPXE sanboot publishes one)")

// ParseIBFT reads the iBFT's initiator and the target the firmware booted
// from out of fsys, laid out like /sys/firmware/ibft (initiator/,
// target0/, ... with one value per file). The CHAP secrets it returns are
// the firmware's: the only copy the booted system gets.
func ParseIBFT(fsys fs.FS) (boot.ISCSISource, error) {
	read := func(dir, name string) (string, bool, error) {
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("ibft %s/%s: %w", dir, name, err)
		}
		return strings.TrimRight(string(b), "\n\x00"), true, nil
	}
	initiator, ok, err := read("initiator", "initiator-name")
	if err != nil {
		return boot.ISCSISource{}, err
	}
	if !ok {
		if _, err := fs.Stat(fsys, "."); err != nil {
			return boot.ISCSISource{}, ErrNoIBFT
		}
		return boot.ISCSISource{}, errors.New("ibft: no initiator/initiator-name")
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return boot.ISCSISource{}, ErrNoIBFT
	}
	var targets []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "target") && e.IsDir() {
			targets = append(targets, e.Name())
		}
	}
	sort.Strings(targets)
	var chosen string
	for _, t := range targets {
		v, _, err := read(t, "flags")
		if err != nil {
			return boot.ISCSISource{}, err
		}
		flags, err := strconv.ParseUint(v, 0, 8)
		if err != nil {
			return boot.ISCSISource{}, fmt.Errorf("ibft %s/flags: %q: not a number", t, v)
		}
		if flags&ibftTargetValid != 0 && flags&ibftTargetSelected != 0 {
			chosen = t
			break
		}
	}
	if chosen == "" {
		return boot.ISCSISource{}, fmt.Errorf("ibft: none of %d targets is valid and marked as booted from", len(targets))
	}
	field := func(name string) (string, error) {
		v, ok, err := read(chosen, name)
		if err == nil && (!ok || v == "") {
			err = fmt.Errorf("ibft %s: no %s", chosen, name)
		}
		return v, err
	}
	var src boot.ISCSISource
	src.Initiator = initiator
	if src.Target, err = field("target-name"); err != nil {
		return boot.ISCSISource{}, err
	}
	ip, err := field("ip-addr")
	if err != nil {
		return boot.ISCSISource{}, err
	}
	if net.ParseIP(ip) == nil {
		return boot.ISCSISource{}, fmt.Errorf("ibft %s/ip-addr: %q is not an IP address", chosen, ip)
	}
	port := "3260"
	if v, ok, err := read(chosen, "port"); err != nil {
		return boot.ISCSISource{}, err
	} else if ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return boot.ISCSISource{}, fmt.Errorf("ibft %s/port: %q is not a TCP port", chosen, v)
		}
		port = v
	}
	src.Portal = net.JoinHostPort(ip, port)
	if v, ok, err := read(chosen, "lun"); err != nil {
		return boot.ISCSISource{}, err
	} else if ok {
		if src.LUN, err = parseIBFTLUN(v); err != nil {
			return boot.ISCSISource{}, fmt.Errorf("ibft %s/lun: %w", chosen, err)
		}
	}
	chapType := "0"
	if v, ok, err := read(chosen, "chap-type"); err != nil {
		return boot.ISCSISource{}, err
	} else if ok {
		chapType = v
	}
	switch chapType {
	case "0":
	case "1", "2":
		var c boot.CHAP
		if c.User, err = field("chap-name"); err != nil {
			return boot.ISCSISource{}, err
		}
		if c.Secret, err = field("chap-secret"); err != nil {
			return boot.ISCSISource{}, err
		}
		if chapType == "2" {
			if c.TargetUser, err = field("rev-chap-name"); err != nil {
				return boot.ISCSISource{}, err
			}
			if c.TargetSecret, err = field("rev-chap-name-secret"); err != nil {
				return boot.ISCSISource{}, err
			}
		}
		src.CHAP = &c
	default:
		return boot.ISCSISource{}, fmt.Errorf("ibft %s/chap-type: %q: want 0 (none), 1 (CHAP) or 2 (mutual CHAP)", chosen, chapType)
	}
	return src, nil
}

// parseIBFTLUN reads the kernel's rendering of the 8-byte LUN field: each
// byte printed with %x, no padding. Single-level LUNs (SAM-5 peripheral
// or flat addressing of LUNs below 16) come out as 8 digits; the LUN is
// then in the low bits of the first two bytes.
func parseIBFTLUN(v string) (int, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%q: only LUNs 0 to 15 with single-level addressing are supported", v)
	}
	var b [8]uint64
	for i := range 8 {
		d, err := strconv.ParseUint(v[i:i+1], 16, 8)
		if err != nil {
			return 0, fmt.Errorf("%q: not hexadecimal", v)
		}
		b[i] = d
	}
	for _, x := range b[2:] {
		if x != 0 {
			return 0, fmt.Errorf("%q: multi-level LUNs are not supported", v)
		}
	}
	return int((b[0]&0x3f)<<8 | b[1]), nil
}
