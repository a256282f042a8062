package vmtest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCmdline(t *testing.T) {
	common := []string{"-accel", "tcg", "-m", "1024", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
		"-device", "virtio-rng-pci"}
	for _, tc := range []struct {
		name string
		o    Options
		want []string
		err  string
	}{
		{
			name: "direct",
			o:    Options{Kernel: "/k", Initrd: "/i", Append: "console=ttyS0", Forwards: []Forward{{80, "127.0.0.1:8080"}}, Relay: "/r"},
			want: append(append([]string{"-accel", "tcg", "-cpu", "max"}, common[2:]...),
				"-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:/r 127.0.0.1:8080",
				"-device", "virtio-net-pci,netdev=n0,romfile=",
				"-kernel", "/k", "-initrd", "/i", "-append", "console=ttyS0"),
		},
		{
			name: "pxe",
			o:    Options{PXE: true, TFTPDir: "/t", BootFile: "boot.ipxe", MAC: "52:54:00:aa:bb:cc", MemoryMB: 512},
			want: append(append([]string(nil), strings.Fields(strings.Replace(strings.Join(common, " "), "-m 1024", "-m 512", 1))...),
				"-netdev", "user,id=n0,restrict=on,tftp=/t,bootfile=boot.ipxe",
				"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:aa:bb:cc",
				"-boot", "n"),
		},
		{
			// The login test's machine: PXE with a VGA card and a QMP
			// socket; still no window.
			name: "pxe vga qmp",
			o:    Options{PXE: true, TFTPDir: "/t", BootFile: "boot.ipxe", VGA: true, QMP: "/tmp/x/qmp.sock"},
			want: append(append([]string(nil), common...),
				"-netdev", "user,id=n0,restrict=on,tftp=/t,bootfile=boot.ipxe",
				"-device", "virtio-net-pci,netdev=n0",
				"-device", "VGA",
				"-qmp", "unix:/tmp/x/qmp.sock,server=on,wait=off",
				"-boot", "n"),
		},
		{
			name: "direct vga",
			o:    Options{Kernel: "/k", VGA: true, Extra: []string{"-S"}},
			want: append(append([]string{"-accel", "tcg", "-cpu", "max"}, common[2:]...),
				"-netdev", "user,id=n0,restrict=on",
				"-device", "virtio-net-pci,netdev=n0,romfile=",
				"-device", "VGA",
				"-kernel", "/k", "-S"),
		},
		{
			// Firmware PXE on a LAN of the test's own: a tap in a namespace.
			name: "pxe tap",
			o:    Options{PXE: true, Tap: "tap1", NetNS: "ns1", MAC: "52:54:00:aa:bb:cc"},
			want: append(append([]string(nil), common...),
				"-netdev", "tap,id=n0,ifname=tap1,script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:aa:bb:cc",
				"-boot", "n"),
		},
		{
			// Secure Boot: the secboot firmware on q35 with SMM, its
			// variables writable only from SMM.
			name: "secure boot",
			o:    Options{PXE: true, Tap: "tap1", NetNS: "ns1", UEFIVars: "/v/OVMF_VARS.fd", SecureBoot: true, NoNICROM: true},
			want: append(append([]string(nil), common...),
				"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCodeSecure,
				"-drive", "if=pflash,format=raw,unit=1,file=/v/OVMF_VARS.fd",
				"-netdev", "tap,id=n0,ifname=tap1,script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=n0,romfile=",
				"-boot", "n"),
		},
		{
			// A TPM: q35, swtpm's control socket in the state directory,
			// a tpm-crb device; UEFI, direct kernel boot.
			name: "direct uefi tpm",
			o:    Options{Kernel: "/k", UEFIVars: "/v/OVMF_VARS.fd", TPMState: "/s/tpm"},
			want: append(append([]string{"-accel", "tcg", "-cpu", "max"}, common[2:]...),
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
				"-drive", "if=pflash,format=raw,unit=1,file=/v/OVMF_VARS.fd",
				"-machine", "q35",
				"-chardev", "socket,id=chrtpm,path=/s/tpm/sock", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-crb,tpmdev=tpm0",
				"-netdev", "user,id=n0,restrict=on",
				"-device", "virtio-net-pci,netdev=n0,romfile=",
				"-kernel", "/k"),
		},
		{name: "tpm state relative", o: Options{Kernel: "/k", TPMState: "tpm"}, err: "want an absolute path"},
		{name: "tpm state comma", o: Options{Kernel: "/k", TPMState: "/s/a,b"}, err: "must not contain commas"},
		{name: "secure boot without vars", o: Options{PXE: true, Tap: "tap1", NetNS: "ns1", SecureBoot: true}, err: "SecureBoot needs UEFIVars"},
		{name: "tap without namespace", o: Options{PXE: true, Tap: "tap1"}, err: "needs its namespace"},
		{name: "tap with forwards", o: Options{PXE: true, Tap: "tap1", NetNS: "n", Forwards: []Forward{{80, "127.0.0.1:1"}}, Relay: "/r"}, err: "no forwards"},
		{
			name: "pxe rtl8139",
			o:    Options{PXE: true, TFTPDir: "/t", BootFile: "boot.ipxe", NIC: "rtl8139"},
			want: append(append([]string(nil), common...),
				"-netdev", "user,id=n0,restrict=on,tftp=/t,bootfile=boot.ipxe",
				"-device", "rtl8139,netdev=n0",
				"-boot", "n"),
		},
		{name: "nic with options", o: Options{Kernel: "/k", NIC: "e1000e,romfile=/x"}, err: "NIC model"},
		{name: "qmp path with a comma", o: Options{Kernel: "/k", QMP: "/tmp/a,b"}, err: "QMP socket"},
		{name: "neither", o: Options{}, err: "exactly one"},
		{name: "both", o: Options{Kernel: "/k", PXE: true}, err: "exactly one"},
		{name: "non-loopback forward", o: Options{Kernel: "/k", Forwards: []Forward{{80, "10.1.2.3:80"}}, Relay: "/r"}, err: "only loopback"},
		{name: "bad forward", o: Options{Kernel: "/k", Forwards: []Forward{{80, "nope"}}, Relay: "/r"}, err: "forward 80"},
		{name: "forward without relay", o: Options{Kernel: "/k", Forwards: []Forward{{80, "127.0.0.1:1"}}}, err: "Relay"},
		{name: "pxe without tftp", o: Options{PXE: true}, err: "TFTPDir"},
		{name: "bad mac", o: Options{Kernel: "/k", MAC: "zz"}, err: "MAC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.o.Cmdline()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Cmdline (-want +got):\n%s", d)
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"6.1.0-9-amd64", "6.1.0-56-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-9-amd64", false},
		{"5.10.0-1-amd64", "6.1.0-1-amd64", true},
		{"6.1.0-1-amd64", "6.1.0-1-amd64", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
