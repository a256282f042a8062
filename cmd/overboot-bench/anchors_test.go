package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/vmtest"
)

// The one machine of the boot section, whole: no -cpu (QEMU's default
// model), no virtio-rng, one vCPU, 2 GiB.
func TestMachineArgv(t *testing.T) {
	got, err := machine{Kernel: "/boot/vmlinuz-6.1.0-56-amd64", Initrd: "/w/lean.img", Cmdline: "console=ttyS0 panic=-1", Relay: "/w/qemurelay", Server: "127.0.0.1:8080"}.Argv()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"qemu-system-x86_64", "-accel", "tcg",
		"-m", "2048", "-smp", "1", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
		"-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:/w/qemurelay 127.0.0.1:8080",
		"-device", "virtio-net-pci,netdev=n0,romfile=",
		"-kernel", "/boot/vmlinuz-6.1.0-56-amd64", "-initrd", "/w/lean.img", "-append", "console=ttyS0 panic=-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if _, err := (machine{Kernel: "k", Initrd: "i", Relay: "/r", Server: "10.0.0.1:80"}).Argv(); err == nil {
		t.Error("a forward off the loopback was accepted")
	}
}

func TestParseBoot(t *testing.T) {
	at := func(s float64, text string) vmtest.Line {
		return vmtest.Line{At: time.Duration(s * float64(time.Second)), Text: text}
	}
	for _, tc := range []struct {
		name    string
		lines   []vmtest.Line
		want    bootTimes
		wantErr string
	}{
		{
			name: "all markers",
			lines: []vmtest.Line{
				at(5.1, "[    4.788280] Run /init as init process"),
				at(27.5, "Begin: Mounting ..."),
				at(43.8, "OVERBOOT-BENCH-INIT uptime=36.14"),
				at(62.9, "OVERBOOT-BENCH-EXEC uptime=55.33"),
				at(63.0, "OVERBOOT-BENCH-ROOT overlay overlay"),
			},
			want: bootTimes{Kernel: 5100 * time.Millisecond, Program: 43800 * time.Millisecond, Exec: 62900 * time.Millisecond, Root: "overlay overlay"},
		},
		{
			name: "two root lines: the last is the root",
			lines: []vmtest.Line{
				at(1, "OVERBOOT-BENCH-INIT uptime=1"), at(2, "OVERBOOT-BENCH-EXEC uptime=2"),
				at(3, "OVERBOOT-BENCH-ROOT rootfs rootfs"), at(3, "OVERBOOT-BENCH-ROOT LiveOS_rootfs overlay"),
			},
			want: bootTimes{Program: time.Second, Exec: 2 * time.Second, Root: "LiveOS_rootfs overlay"},
		},
		{
			name:    "no first program",
			lines:   []vmtest.Line{at(5, "Run /init as init process"), at(47, "dracut Warning: Can't mount root filesystem")},
			wantErr: "never ran",
		},
		{
			name:    "no exec",
			lines:   []vmtest.Line{at(5, "OVERBOOT-BENCH-INIT uptime=3")},
			wantErr: "never returned",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBoot(tc.lines)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("times (-want +got):\n%s", diff)
			}
		})
	}
}
