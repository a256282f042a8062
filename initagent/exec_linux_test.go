package initagent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestMountFlags(t *testing.T) {
	flags, data := mountFlags([]string{"ro", "nosuid", "lowerdir=/a", "nodev", "noexec", "size=50%"})
	if flags != unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC || data != "lowerdir=/a,size=50%" {
		t.Errorf("mountFlags = %#x, %q", flags, data)
	}
}

func TestReadModuleList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules")
	os.WriteFile(p, []byte("virtio_net\n# comment\n\n  squashfs  # trailing\noverlay"), 0o644)
	got, err := readModuleList(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"virtio_net", "squashfs", "overlay"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got, err := readModuleList(filepath.Join(t.TempDir(), "absent")); err != nil || got != nil {
		t.Errorf("missing file: %v, %v", got, err)
	}
}

func TestUptime(t *testing.T) {
	a, b := Uptime(), Uptime()
	if a <= 0 || b < a {
		t.Errorf("Uptime not monotonic and positive: %v then %v", a, b)
	}
}

func TestMountFlagsAtime(t *testing.T) {
	// ext4 refuses "noatime" as data ("Unknown parameter"): it is a flag.
	flags, data := mountFlags([]string{"noatime", "relatime", "errors=remount-ro"})
	if flags&unix.MS_NOATIME == 0 || flags&unix.MS_RELATIME == 0 || data != "errors=remount-ro" {
		t.Errorf("mountFlags = %#x, %q", flags, data)
	}
}
