package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

// TestParseNFSRoot: root = nfs://HOST/EXPORT with lower-nfs's options is
// the profile's NFS lower; Root (the image) stays empty, and nothing
// else is needed.
func TestParseNFSRoot(t *testing.T) {
	c, err := Parse("f", strings.NewReader("[profile nfs]\nkernel = k\ninitramfs = i\nroot = nfs://192.0.2.1/srv/roots/debian\nlower-nfs = vers=3,mountport=20048\n[profile v4]\nkernel = k\ninitramfs = i\nroot = nfs://files.example.org/root\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profiles["nfs"]
	want := &boot.NFSSource{Server: "192.0.2.1", Export: "/srv/roots/debian", Version: "3", Options: []string{"mountport=20048"}}
	if d := cmp.Diff(want, p.NFSLower()); d != "" || p.Root != "" {
		t.Errorf("NFS lower (-want +got):\n%s\nroot %q", d, p.Root)
	}
	if n := c.Profiles["v4"].NFSLower(); n == nil || n.NFSVersion() != "4" || n.Server != "files.example.org" {
		t.Errorf("v4 profile: %+v", n)
	}
	if c.Profiles["v4"].NFSLower() == c.Profiles["v4"].RootNFS {
		t.Error("NFSLower hands out the profile's own source")
	}
}

func TestParseNFSRootErrors(t *testing.T) {
	const head = "[profile p]\nkernel = k\ninitramfs = i\n"
	for _, tc := range []struct{ name, in, want string }{
		{"no export", head + "root = nfs://192.0.2.1\n", `f:4: root: "nfs://192.0.2.1": export: missing`},
		{"export not absolute", head + "root = nfs://192.0.2.1/a/../b\n", "f:4: root: \"nfs://192.0.2.1/a/../b\": export \"/a/../b\": want a clean absolute path"},
		{"port in url", head + "root = nfs://192.0.2.1:2049/r\n", "f:4: root: \"nfs://192.0.2.1:2049/r\": no port in the URL: give port=2049 in the options"},
		{"bad host", head + "root = nfs://a_b/r\n", `f:4: root: "nfs://a_b/r": server "a_b": want a host name or an IP address`},
		{"version 5", head + "root = nfs://192.0.2.1/r\nlower-nfs = vers=5\n", "f:5: lower-nfs: vers=5: want one of 4, 4.1, 4.2, 3"},
		{"mount option", head + "root = nfs://192.0.2.1/r\nlower-nfs = rw,vers=3\n", "f:5: lower-nfs: \"rw\": want key=value"},
		{"not allowed", head + "root = nfs://192.0.2.1/r\nlower-nfs = sec=krb5p\n", "f:5: lower-nfs: \"sec=krb5p\": not an option overboot passes on"},
		{"lower-nfs without nfs", head + "root = r\nlower-nfs = vers=3\n", "f:5: profile p: lower-nfs needs root = nfs://HOST/EXPORT"},
		{"lower-mode", head + "root = nfs://192.0.2.1/r\nlower-mode = lazy\n", "f:5: profile p: lower-mode does not apply to root = nfs://"},
		{"lower-cache", head + "lower-cache = 128M\nroot = nfs://192.0.2.1/r\n", "f:4: profile p: lower-cache does not apply to root = nfs://"},
		{"lower-tls", head + "root = nfs://192.0.2.1/r\nlower-tls = yes\n", "f:5: profile p: lower-tls does not apply to root = nfs://"},
		{"sanboot", "[profile p]\nsanboot = /srv/disk.img\nenroll = approve\nroot = nfs://192.0.2.1/r\n", "f:4: profile p: sanboot boots a whole disk; root do not apply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant one with %s", err, tc.want)
			}
		})
	}
}

// TestKernelImageWithNFSRoot: kernel = image needs a root image; an NFS
// root has no kernel of its own.
func TestKernelImageWithNFSRoot(t *testing.T) {
	_, err := Parse("f", strings.NewReader("[profile default]\nkernel = image\nroot = nfs://192.0.2.1/srv/root\n"))
	if err == nil || !strings.Contains(err.Error(), "an NFS root has none") || !strings.Contains(err.Error(), "f:2") {
		t.Errorf("kernel = image with an NFS root: %v", err)
	}
}
