package mkimage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFixFstab(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          string
		want        string
		wantDropped []string
	}{
		{
			name: "empty",
		},
		{
			name: "comments and blank lines only",
			in:   "# / ext4\n\n   \n#UUID=x / ext4 defaults 0 1\n",
			want: "# / ext4\n\n   \n#UUID=x / ext4 defaults 0 1\n",
		},
		{
			name: "debian installer fstab",
			in: "# /etc/fstab: static file system information.\n" +
				"#\n" +
				"# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n" +
				"# / was on /dev/sda1 during installation\n" +
				"UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1\n" +
				"# /boot was on /dev/sda2 during installation\n" +
				"UUID=0a1b2c3d-0000-4000-8000-000000000002 /boot           ext4    defaults        0       2\n" +
				"# swap was on /dev/sda5 during installation\n" +
				"UUID=0a1b2c3d-0000-4000-8000-000000000005 none            swap    sw              0       0\n" +
				"/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n",
			want: "# /etc/fstab: static file system information.\n" +
				"#\n" +
				"# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n" +
				"# / was on /dev/sda1 during installation\n" +
				"# overboot: netboot root, dropped: UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1\n" +
				"# /boot was on /dev/sda2 during installation\n" +
				"UUID=0a1b2c3d-0000-4000-8000-000000000002 /boot           ext4    defaults        0       2\n" +
				"# swap was on /dev/sda5 during installation\n" +
				"# overboot: netboot root, dropped: UUID=0a1b2c3d-0000-4000-8000-000000000005 none            swap    sw              0       0\n" +
				"/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n",
			wantDropped: []string{
				"UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1",
				"UUID=0a1b2c3d-0000-4000-8000-000000000005 none            swap    sw              0       0",
			},
		},
		{
			name:        "tabs and LABEL",
			in:          "LABEL=root\t/\tbtrfs\tsubvol=@,compress=zstd\t0\t0\nLABEL=home\t/home\tbtrfs\tsubvol=@home\t0\t0\n",
			want:        "# overboot: netboot root, dropped: LABEL=root\t/\tbtrfs\tsubvol=@,compress=zstd\t0\t0\nLABEL=home\t/home\tbtrfs\tsubvol=@home\t0\t0\n",
			wantDropped: []string{"LABEL=root\t/\tbtrfs\tsubvol=@,compress=zstd\t0\t0"},
		},
		{
			name:        "swap with swap mount point, leading blanks",
			in:          "  /dev/sda2 swap swap defaults 0 0\n/swapfile none swap sw,pri=5 0 0\n",
			want:        "# overboot: netboot root, dropped: /dev/sda2 swap swap defaults 0 0\n# overboot: netboot root, dropped: /swapfile none swap sw,pri=5 0 0\n",
			wantDropped: []string{"  /dev/sda2 swap swap defaults 0 0", "/swapfile none swap sw,pri=5 0 0"},
		},
		{
			name:        "root without dump and pass, no final newline",
			in:          "/dev/vda1 / xfs",
			want:        "# overboot: netboot root, dropped: /dev/vda1 / xfs",
			wantDropped: []string{"/dev/vda1 / xfs"},
		},
		{
			name:        "CRLF kept",
			in:          "/dev/vda1 / ext4 defaults 0 1\r\n/dev/vda2 /srv ext4 defaults 0 2\r\n",
			want:        "# overboot: netboot root, dropped: /dev/vda1 / ext4 defaults 0 1\r\n/dev/vda2 /srv ext4 defaults 0 2\r\n",
			wantDropped: []string{"/dev/vda1 / ext4 defaults 0 1"},
		},
		{
			name:        "root spelled with extra slashes",
			in:          "/dev/vda1 // ext4 defaults 0 1\n",
			want:        "# overboot: netboot root, dropped: /dev/vda1 // ext4 defaults 0 1\n",
			wantDropped: []string{"/dev/vda1 // ext4 defaults 0 1"},
		},
		{
			name: "mount points that are not root",
			in:   "tmpfs /tmp tmpfs defaults 0 0\n/dev/sdb1 /\\040data ext4 defaults 0 2\nproc /proc proc defaults 0 0\nnfs:/x relative nfs defaults 0 0\n",
			want: "tmpfs /tmp tmpfs defaults 0 0\n/dev/sdb1 /\\040data ext4 defaults 0 2\nproc /proc proc defaults 0 0\nnfs:/x relative nfs defaults 0 0\n",
		},
		{
			name: "short lines kept",
			in:   "/dev/vda1 /\nswap\n",
			want: "/dev/vda1 /\nswap\n",
		},
		{
			name: "swap as an option or a device name is not swap",
			in:   "/dev/mapper/swap /data ext4 swap 0 0\n",
			want: "/dev/mapper/swap /data ext4 swap 0 0\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := FixFstab([]byte(tc.in))
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("FixFstab output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDropped, dropped); diff != "" {
				t.Errorf("FixFstab dropped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnescapeFstab(t *testing.T) {
	for in, want := range map[string]string{
		`/`:            "/",
		`/a\040b`:      "/a b",
		`\134`:         `\`,
		`/x\04`:        `/x\04`,
		`/x\777`:       `/x\777`,
		`\011tab\040`:  "\ttab ",
		`/plain/path/`: "/plain/path/",
	} {
		if got := unescapeFstab(in); got != want {
			t.Errorf("unescapeFstab(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzFixFstab checks FixFstab's promises on any input: every line is kept or
// commented out (never lost), no root or swap entry survives, and a second pass
// changes nothing.
func FuzzFixFstab(f *testing.F) {
	for _, s := range []string{
		"",
		"UUID=1 / ext4 defaults 0 1\nLABEL=s none swap sw 0 0\n/dev/sda1 /boot ext4 defaults 0 2\n",
		"# comment\n\n\t/dev/x\t/\tbtrfs\tdefaults\r\n",
		"/dev/a /\\040 ext4\n/dev/b /\\057 ext4\n",
		"a b\nc\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, dropped := FixFstab(in)
		if len(dropped) == 0 && !bytes.Equal(in, out) {
			t.Fatalf("nothing dropped but output differs:\n%q\n%q", in, out)
		}
		if got, want := bytes.Count(out, []byte("\n")), bytes.Count(in, []byte("\n")); got != want {
			t.Fatalf("output has %d newlines, input %d", got, want)
		}
		if got, want := bytes.Count(out, []byte(fstabDropPrefix))-bytes.Count(in, []byte(fstabDropPrefix)), len(dropped); got != want {
			t.Fatalf("%d lines commented out, %d reported dropped", got, want)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if dropFstabLine(strings.TrimRight(line, "\r")) {
				t.Fatalf("root or swap entry survived: %q", line)
			}
		}
		again, dropped2 := FixFstab(out)
		if len(dropped2) != 0 || !bytes.Equal(again, out) {
			t.Fatalf("second pass changed the output: dropped %q", dropped2)
		}
	})
}
