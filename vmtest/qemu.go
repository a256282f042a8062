package vmtest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// OVMFCode is Debian's UEFI firmware for QEMU (package ovmf).
const OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"

// OVMFVars is the variable store template a machine copies.
const OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"

// OVMFCodeSecure is Debian's OVMF built with Secure Boot (and SMM, which
// guards its variables); OVMFVarsMS the variable store with Microsoft's
// keys enrolled and Secure Boot on, as a machine from the shop has it.
const (
	OVMFCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsMS     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// GuestServer is the address the guest uses for the host's services:
// QEMU user networking forwards its ports to 127.0.0.1 (guestfwd).
const GuestServer = "10.0.2.100"

// Forward maps a guest address (GuestServer:port) to a host address on
// 127.0.0.1. QEMU's user network runs with restrict=on, so forwards are the
// guest's only way out.
type Forward struct {
	GuestPort int
	HostAddr  string // 127.0.0.1:PORT
}

// FwCfg is one fw_cfg item the firmware reads: a name and a string.
type FwCfg struct{ Name, Value string }

// Options describe one QEMU machine. The zero value plus either Kernel or
// PXE is a valid machine.
type Options struct {
	QEMU     string // default qemu-system-x86_64
	MemoryMB int    // default 1024
	CPUs     int    // default 1
	// CPU model: default "max" for direct kernel boots (TCG then emulates
	// RDRAND, so random.trust_cpu=on seeds the guest's RNG at once) and
	// QEMU's default for PXE boots: under TCG, -cpu max makes the BIOS and
	// iPXE ROM crawl (measured here: 88 s instead of 14 s to the kernel).
	CPU string

	// Direct kernel boot (skips firmware and iPXE).
	Kernel, Initrd, Append string

	// PXE boot through the NIC's iPXE option ROM: QEMU's built-in DHCP
	// hands out BootFile from TFTPDir.
	PXE      bool
	TFTPDir  string
	BootFile string

	MAC string // default QEMU's 52:54:00:12:34:56
	// Tap puts the NIC on this tap device (of NetNS) instead of QEMU's
	// user network: the firmware's DHCP and TFTP then go to whatever
	// serves the namespace's bridge (overboot, dnsmasq), as on a LAN.
	Tap string
	// NetNS is the network namespace QEMU runs in (with Tap).
	NetNS string
	// UEFIVars boots UEFI firmware (Debian's OVMF, OVMF_CODE_4M.fd)
	// instead of SeaBIOS, with this copy of OVMF_VARS_4M.fd as its
	// variable store ("" = BIOS).
	UEFIVars string
	// SecureBoot runs OVMFCodeSecure on a q35 machine with SMM (its
	// variable store writable only from SMM), so UEFIVars should be a
	// copy of OVMFVarsMS: Secure Boot on, Microsoft's keys.
	SecureBoot bool
	// NoNICROM leaves the NIC without its iPXE option ROM: the
	// firmware's own network stack does PXE (OVMF's PxeBcDxe), so the
	// firmware fetches a boot file over TFTP as on real hardware.
	NoNICROM bool
	// NIC is QEMU's network device model: virtio-net-pci (default),
	// e1000e, rtl8139, ... (qemu-system-x86_64 -device help lists them;
	// the ipxe-qemu package has the option ROMs for PXE).
	NIC string
	// FwCfg are named strings for the firmware (QEMU's -fw_cfg), e.g.
	// OVMF's "opt/org.tianocore/IPv4PXESupport" = "n", which leaves
	// out the UEFI PXEv4 boot option (edk2 OvmfPkg/RUNTIME_CONFIG.md).
	FwCfg    []FwCfg
	Forwards []Forward
	// Relay is the qemurelay binary QEMU runs for each guest connection
	// of a forward (required with Forwards).
	Relay string

	// VGA adds a standard VGA card (QEMU's "VGA" device): iPXE draws its
	// menus and forms there, not on the serial console. The display stays
	// "none": tests read the screen with QMP screendump.
	VGA bool
	// QMP is the path of a unix socket QEMU listens on for QMP (see
	// DialQMP): send-key and screendump drive and read the VGA screen.
	QMP string
	// TPMState gives the machine a TPM 2.0: a swtpm of its own with its
	// state in this directory (absolute; made if missing), which the
	// caller keeps across the machine's reboots. Start starts it before
	// QEMU and stops it after; the machine is a q35 with a tpm-crb
	// device (tpm.go).
	TPMState string

	Extra []string // appended verbatim
}

// Cmdline returns QEMU's argv (without the program name). The serial
// console is on stdout; QEMU exits instead of rebooting, so a guest's
// reboot or power-off both end the process.
func (o Options) Cmdline() ([]string, error) {
	if (o.Kernel == "") == !o.PXE {
		return nil, fmt.Errorf("qemu: set exactly one of Kernel (direct boot) or PXE")
	}
	mem := o.MemoryMB
	if mem == 0 {
		mem = 1024
	}
	cpus := o.CPUs
	if cpus == 0 {
		cpus = 1
	}
	cpu := o.CPU
	if cpu == "" && !o.PXE {
		cpu = "max"
	}
	// KVM does not work on these machines (ENV.md): TCG.
	args := []string{"-accel", "tcg"}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	args = append(args,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-nodefaults",
		// A virtio RNG as well: the agent must not depend on it, but the
		// root's programs may.
		"-device", "virtio-rng-pci",
	)
	netdev := "user,id=n0,restrict=on"
	if o.Tap != "" {
		if len(o.Forwards) > 0 || o.TFTPDir != "" || o.NetNS == "" || strings.ContainsAny(o.Tap, ", ") {
			return nil, fmt.Errorf("qemu: a tap NIC takes no forwards and no user-network TFTP, and needs its namespace")
		}
		netdev = "tap,id=n0,ifname=" + o.Tap + ",script=no,downscript=no"
	}
	if len(o.Forwards) > 0 && (o.Relay == "" || strings.ContainsAny(o.Relay, ", ")) {
		return nil, fmt.Errorf("qemu: forwards need a Relay binary path without commas or spaces, have %q", o.Relay)
	}
	for _, f := range o.Forwards {
		host, port, err := net.SplitHostPort(f.HostAddr)
		if err != nil {
			return nil, fmt.Errorf("qemu: forward %d: %w", f.GuestPort, err)
		}
		// Network rule (ENV.md): the guest reaches this machine's loopback
		// and nothing else.
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("qemu: forward %d to %s: only loopback addresses are allowed", f.GuestPort, f.HostAddr)
		}
		if f.GuestPort <= 0 || f.GuestPort > 65535 {
			return nil, fmt.Errorf("qemu: forward: bad guest port %d", f.GuestPort)
		}
		// One relay process per guest connection (see vmtest/qemurelay).
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s %s", GuestServer, f.GuestPort, o.Relay, net.JoinHostPort(host, port))
	}
	if o.PXE && o.Tap == "" {
		if o.TFTPDir == "" || o.BootFile == "" {
			return nil, fmt.Errorf("qemu: PXE needs TFTPDir and BootFile")
		}
		if strings.Contains(o.TFTPDir, ",") || strings.Contains(o.BootFile, ",") {
			return nil, fmt.Errorf("qemu: TFTP dir and boot file must not contain commas")
		}
		netdev += ",tftp=" + o.TFTPDir + ",bootfile=" + o.BootFile
	}
	model := o.NIC
	if model == "" {
		model = "virtio-net-pci"
	}
	if strings.ContainsAny(model, ", =") {
		return nil, fmt.Errorf("qemu: NIC model %q: want a device name such as e1000e", model)
	}
	nic := model + ",netdev=n0"
	if o.MAC != "" {
		if _, err := net.ParseMAC(o.MAC); err != nil {
			return nil, fmt.Errorf("qemu: MAC %q: %w", o.MAC, err)
		}
		nic += ",mac=" + o.MAC
	}
	if !o.PXE || o.NoNICROM {
		// No iPXE option ROM: the firmware would initialise it for
		// nothing (about a second under TCG) before the direct boot.
		nic += ",romfile="
	}
	if o.UEFIVars != "" {
		if strings.Contains(o.UEFIVars, ",") {
			return nil, fmt.Errorf("qemu: UEFI vars path %q must not contain commas", o.UEFIVars)
		}
		code := OVMFCode
		if o.SecureBoot {
			code = OVMFCodeSecure
			args = append(args, "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+o.UEFIVars)
	} else if o.SecureBoot {
		return nil, fmt.Errorf("qemu: SecureBoot needs UEFIVars (a copy of %s)", OVMFVarsMS)
	}
	if o.TPMState != "" {
		if err := checkTPMState(o.TPMState); err != nil {
			return nil, err
		}
		if !o.SecureBoot {
			args = append(args, "-machine", "q35")
		}
		args = append(args, tpmArgs(o.TPMState)...)
	}
	args = append(args, "-netdev", netdev, "-device", nic)
	for _, f := range o.FwCfg {
		if f.Name == "" || strings.ContainsAny(f.Name+f.Value, ",") {
			return nil, fmt.Errorf("qemu: fw_cfg %q=%q: want a name, and no commas", f.Name, f.Value)
		}
		args = append(args, "-fw_cfg", "name="+f.Name+",string="+f.Value)
	}
	if o.VGA {
		args = append(args, "-device", "VGA")
	}
	if o.QMP != "" {
		if strings.ContainsAny(o.QMP, ", ") {
			return nil, fmt.Errorf("qemu: QMP socket path %q must not contain commas or spaces", o.QMP)
		}
		// wait=off: the guest starts at once; the test connects when
		// it likes (DialQMP retries until the socket exists).
		args = append(args, "-qmp", "unix:"+o.QMP+",server=on,wait=off")
	}
	if o.PXE {
		args = append(args, "-boot", "n")
	} else {
		args = append(args, "-kernel", o.Kernel)
		if o.Initrd != "" {
			args = append(args, "-initrd", o.Initrd)
		}
		if o.Append != "" {
			args = append(args, "-append", o.Append)
		}
	}
	return append(args, o.Extra...), nil
}

// Program returns the QEMU binary to run.
func (o Options) Program() string {
	if o.QEMU != "" {
		return o.QEMU
	}
	return "qemu-system-x86_64"
}

// Argv is the whole command: QEMU, inside NetNS when set.
func (o Options) Argv() ([]string, error) {
	args, err := o.Cmdline()
	if err != nil {
		return nil, err
	}
	argv := append([]string{o.Program()}, args...)
	if o.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", o.NetNS}, argv...)
	}
	return argv, nil
}
