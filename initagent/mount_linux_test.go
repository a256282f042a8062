package initagent

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountFlags(t *testing.T) {
	flags, data := mountFlags([]string{"ro", "nosuid", "lowerdir=/a", "nodev", "noexec", "size=50%"})
	if flags != unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC || data != "lowerdir=/a,size=50%" {
		t.Errorf("mountFlags = %#x, %q", flags, data)
	}
}

func TestMountFlagsAtime(t *testing.T) {
	// ext4 refuses "noatime" as data ("Unknown parameter"): it is a flag.
	flags, data := mountFlags([]string{"noatime", "relatime", "errors=remount-ro"})
	if flags&unix.MS_NOATIME == 0 || flags&unix.MS_RELATIME == 0 || data != "errors=remount-ro" {
		t.Errorf("mountFlags = %#x, %q", flags, data)
	}
}
