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

// The anchors' build commands and kernel arguments, whole: they are what
// the report states.
func TestAnchors(t *testing.T) {
	const url = "http://10.0.2.100/minbase.squashfs"
	type row struct {
		Name, Ref, Chroot string
		Build, Args       []string
		Big               bool
	}
	var got []row
	for _, a := range anchors() {
		got = append(got, row{a.Name, a.Ref, a.Chroot.Name, a.Build("6.1.0-56-amd64", "/tmp/x.img"), a.Args(url), a.Big})
	}
	dracutArgs := []string{"root=live:" + url, "rd.live.overlay.overlayfs=1", "rd.neednet=1", "ip=dhcp"}
	want := []row{
		{"dracut-lean", "dracut-lean", "dracut",
			[]string{"dracut", "--no-hostonly", "--force", "--kver", "6.1.0-56-amd64", "-m", "base network-legacy livenet dmsquash-live", "--add-drivers", "virtio_pci", "/tmp/x.img"},
			dracutArgs, true},
		{"dracut-generic", "dracut-gen", "dracut",
			[]string{"dracut", "--no-hostonly", "--force", "--kver", "6.1.0-56-amd64", "--add", "network-legacy livenet dmsquash-live", "/tmp/x.img"},
			dracutArgs, false},
		{"live-boot", "live-boot", "live-boot",
			[]string{"mkinitramfs", "-o", "/tmp/x.img", "6.1.0-56-amd64"},
			[]string{"boot=live", "fetch=" + url, "ip=dhcp"}, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("anchors (-want +got):\n%s", diff)
	}
	for _, a := range anchors() {
		if len(a.Ref) > 11 {
			t.Errorf("%s: ref name %q is wider than the table's column", a.Name, a.Ref)
		}
	}
}

func TestChrootArgv(t *testing.T) {
	got := chrootArgv("/w/chroot-dracut", "6.1.0-56-amd64", []string{"dracut", "--force"})
	if diff := cmp.Diff([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c"}, got[:7]); diff != "" {
		t.Errorf("prefix (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"sh", "/w/chroot-dracut", "6.1.0-56-amd64", "dracut", "--force"}, got[8:]); diff != "" {
		t.Errorf("script arguments (-want +got):\n%s", diff)
	}
	for _, s := range []string{`mount --bind -o ro "/lib/modules/$k" "$d/lib/modules/$k"`, `exec chroot "$d" "$@"`} {
		if !strings.Contains(got[7], s) {
			t.Errorf("script lacks %q:\n%s", s, got[7])
		}
	}
}

// The command lines of overboot and an anchor for the same image, whole.
func TestContenderCmdline(t *testing.T) {
	im := benchImage{Label: "55 MB", File: "minbase.squashfs", Hex: "ab12", Size: 54640640}
	o := contender{Args: overbootVariants()[0].Args}
	want := "console=ttyS0 panic=-1 overboot.lower=http://10.0.2.100/blobs/sha256/ab12 overboot.digest=sha256:ab12 overboot.size=54640640 overboot.onfail=poweroff overboot.onfail.delay=1s"
	if got := o.cmdline(im); got != want {
		t.Errorf("overboot cmdline\n got %s\nwant %s", got, want)
	}
	lb := anchors()[2]
	a := contender{Args: func(im benchImage) []string { return lb.Args("http://10.0.2.100/" + im.File) }}
	want = "console=ttyS0 panic=-1 boot=live fetch=http://10.0.2.100/minbase.squashfs ip=dhcp"
	if got := a.cmdline(im); got != want {
		t.Errorf("live-boot cmdline\n got %s\nwant %s", got, want)
	}
}

func TestBootResults(t *testing.T) {
	s := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	bt := func(p, e float64) bootTimes { return bootTimes{Program: s(p), Exec: s(e), UsedKB: 100000} }
	images := []benchImage{{Label: "55 MB"}, {Label: "222 MB"}, {Label: "2300 MB"}}
	cs := []contender{{Name: "live-boot", Ref: "live-boot", Big: true}, {Name: "dracut-lean", Ref: "dracut-lean"}, {Name: "overboot", Big: true, Overboot: true}, {Name: "lazy", Big: true, Huge: true, Overboot: true}}
	times := map[string]map[string][]bootTimes{
		"live-boot":   {"55 MB": {bt(30, 50), bt(24, 45), bt(27, 40)}, "222 MB": {bt(31, 60)}},
		"dracut-lean": {"55 MB": {bt(40, 41), bt(40, 41), bt(40, 41)}},
		"overboot":    {"55 MB": {bt(11, 11.1), bt(12, 12.1), bt(10, 10.1)}, "222 MB": {bt(20, 20.1), bt(21, 21.1), bt(22, 22.1)}},
		"lazy":        {"55 MB": {bt(6, 6.1)}, "2300 MB": {bt(7, 7.1)}},
	}
	got := bootResults(cs, overbootVariants(), images, times, 5)
	type row struct {
		Metric    string
		Ours, Ref float64
		Goal      string
		Note      string
	}
	var rows []row
	for _, r := range got {
		rows = append(rows, row{r.Metric, r.Ours, r.Ref, r.Goal, r.Note})
	}
	// The goals go to the fastest anchor's rows (live-boot here).
	want := []row{
		{"first program, 55 MB image, s", 11, 27, "<= 0.3x", "median of 3"},
		{"first exec, 55 MB image, s", 11.1, 45, "", "median of 3"},
		{"first program, 55 MB image, s", 11, 40, "", "median of 3"},
		{"first exec, 55 MB image, s", 11.1, 41, "", "median of 3"},
		{"RAM used at first exec, 55 MB image, MB", 102.4, 0, "", "MemTotal - MemAvailable"},
		{"first program, 222 MB image, s", 21, 31, "<= 0.3x", "median of 3 and 1 boots (of 3)"},
		{"first exec, 222 MB image, s", 21.1, 60, "", "median of 3 and 1 boots (of 3)"},
		{"RAM used at first exec, 222 MB image, MB", 102.4, 0, "", "MemTotal - MemAvailable"},
		{"lazy: first program, 55 MB image, s", 6, 27, "<= 0.25x", "median of 1 and 3 boots (of 3)"},
		{"lazy: first exec, 55 MB image, s", 6.1, 45, "<= 0.15x", "median of 1 and 3 boots (of 3)"},
		{"lazy: first program, 55 MB image, s", 6, 40, "", "median of 1 and 3 boots (of 3)"},
		{"lazy: first exec, 55 MB image, s", 6.1, 41, "", "median of 1 and 3 boots (of 3)"},
		{"lazy: RAM used at first exec, 55 MB image, MB", 102.4, 0, "", "MemTotal - MemAvailable"},
		{"lazy: first program, 2300 MB image, s", 7, 0, "", "median of 1; no anchor can boot an image larger than RAM"},
		{"lazy: first exec, 2300 MB image, s", 7.1, 0, "", "median of 1; no anchor can boot an image larger than RAM"},
		{"lazy: RAM used at first exec, 2300 MB image, MB", 102.4, 0, "", "MemTotal - MemAvailable"},
		{"initramfs, MB", 5, 0, "<= 6 MB", ""},
		{"initramfs, MB", 5, 0, "", ""},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"dracut", "-m", "base livenet", "it's", ""})
	want := `dracut -m 'base livenet' 'it'\''s' ''`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
