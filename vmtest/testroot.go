package vmtest

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Console markers printed by the test root's init.
const (
	MarkerPass = "OVERBOOT-TEST-PASS"
	MarkerFail = "OVERBOOT-TEST-FAIL"
	MarkerInit = "OVERBOOT-TEST-INIT" // first line of the root's init, with the uptime

	MarkerPersistNew   = "OVERBOOT-TEST-PERSIST-NEW"   // no /persist from an earlier boot
	MarkerPersistFound = "OVERBOOT-TEST-PERSIST-FOUND" // /persist survived a reboot

	// MarkerID reports the identity the server gave the machine:
	// "OVERBOOT-TEST-ID host=H machine-id=M key=FPR mode=600".
	MarkerID = "OVERBOOT-TEST-ID"

	// MarkerLazyReading is printed before the root's reads in a loop
	// (OVERBOOT_TEST=lazyread), each round of which prints MarkerLazyRound
	// N: every round drops the page cache and checks /pad again, so its
	// blocks come from the device, through the keeper, each time.
	MarkerLazyReading = "OVERBOOT-TEST-LAZY-READING"
	MarkerLazyRound   = "OVERBOOT-TEST-LAZY-ROUND"

	// MarkerCounterFound is printed before the root's writes in a loop
	// (OVERBOOT_TEST=writeloop; sanwriteloop on a sanbooted disk), with
	// the counter an earlier boot left
	// in /counter ("n=0" when none) and the iSCSI sessions' recovery
	// timeouts in seconds ("recovery=[120 ]"); each round of the loop writes the
	// next value, fsyncs it, drops the page cache, reads it back from
	// the device and prints MarkerCounter n=VALUE; a failed write, sync
	// or read fails the root.
	MarkerCounterFound = "OVERBOOT-TEST-COUNTER-FOUND"
	MarkerCounter      = "OVERBOOT-TEST-COUNTER"

	// MarkerSan starts the line a sanbooted root prints (OVERBOOT_TEST=san):
	// "OVERBOOT-TEST-SAN me=MAC saw=[MAC ...]", the machines whose files it
	// found before writing its own.
	MarkerSan = "OVERBOOT-TEST-SAN"
)

// testInit is the root's /sbin/init: it proves the root is what the agent
// promised, then powers off. Every check prints its own failure.
const testInit = `#!/bin/sh
export PATH=/bin
read up idle < /proc/uptime
echo "` + MarkerInit + ` uptime=$up"
fail() { echo "` + MarkerFail + `: $*"; cat /proc/mounts; poweroff -f; sleep 10; }

# writeloop writes /counter in rounds (OVERBOOT_TEST=writeloop, and
# sanwriteloop on a sanbooted disk).
writeloop() {
	n=0
	[ -f /counter ] && n=$(cat /counter)
	echo "` + MarkerCounterFound + ` n=$n recovery=[$(cat /sys/class/iscsi_session/session*/recovery_tmo 2>/dev/null | tr '\n' ' ')]"
	i=0
	while [ $i -lt "${OVERBOOT_TEST_ROUNDS:-20}" ]; do
		n=$((n + 1))
		echo $n > /counter || fail "write of $n failed"
		sync /counter || fail "sync of $n failed"
		echo 3 > /proc/sys/vm/drop_caches
		[ "$(cat /counter)" = $n ] || fail "read of $n failed or is wrong"
		i=$((i + 1))
		echo "` + MarkerCounter + ` n=$n"
		sleep 1
	done
}

# A whole disk booted with sanboot: / is its ext4 partition 2, read-write.
# san: each machine writes /san-MAC and reports the files it found first;
# sanwriteloop: writeloop on it.
case "$OVERBOOT_TEST" in
san|sanwriteloop)
	root=$(awk '$2 == "/" { r = $1 " " $3 " " $4 } END { print r }' /proc/mounts)
	case "$root" in
	/dev/sd?2\ ext4\ rw,*) ;;
	*) fail "/ is '$root', not the iSCSI disk's ext4 partition 2 read-write" ;;
	esac
	if [ "$OVERBOOT_TEST" = sanwriteloop ]; then
		writeloop
		sync
		echo "` + MarkerPass + ` root=$root"
		poweroff -f
		sleep 10
	fi
	me=$(tr -d : < /sys/class/net/eth0/address)
	saw=$(cd / && ls -d san-* 2>/dev/null | sed 's/^san-//' | tr '\n' ' ')
	echo "` + MarkerSan + ` me=$me saw=[$saw]"
	echo "$me" > /san-$me || fail "cannot write /san-$me"
	sync
	echo "` + MarkerPass + ` root=$root"
	poweroff -f
	sleep 10
	;;
esac

root=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
[ "$root" = overlay ] || fail "/ is $root, not overlay"

lower=$(awk '$2 == "/run/overboot/lower" { print $3 " " $4 }' /proc/mounts)
case "$lower" in
squashfs\ ro,*) ;;
*) fail "lower /run/overboot/lower is '$lower', not a read-only squashfs" ;;
esac
touch /run/overboot/lower/probe 2>/dev/null && fail "the lower layer accepted a write"

upper=$(awk '$2 == "/run/overboot/rw" { print $3 }' /proc/mounts)
case "${OVERBOOT_TEST_UPPER:-tmpfs}" in
tmpfs) [ "$upper" = tmpfs ] || fail "upper /run/overboot/rw is '$upper', not tmpfs" ;;
iscsi) [ "$upper" = ext4 ] || fail "upper /run/overboot/rw is '$upper', not the ext4 iSCSI disk" ;;
esac

# A persistent upper keeps /persist from one boot to the next.
persisted=
if [ -f /persist ]; then
	echo "` + MarkerPersistFound + ` $(cat /persist)"
	persisted=1
else
	echo "` + MarkerPersistNew + `"
fi
echo "boot-at-$up" > /persist || fail "cannot write /persist"

[ -n "$persisted" ] || [ "$(cat /etc/marker)" = original ] || fail "/etc/marker is not the image's"
echo changed > /etc/marker || fail "cannot write /etc/marker"
echo new > /new-file || fail "cannot create /new-file"
[ "$(cat /etc/marker)" = changed ] || fail "write to /etc/marker did not stick"
[ "$(cat /run/overboot/lower/etc/marker)" = original ] || fail "the lower layer changed"
[ -e /run/overboot/lower/new-file ] && fail "a new file reached the lower layer"
[ "$(cat /run/overboot/rw/upper/etc/marker)" = changed ] || fail "the write is not in the upper layer"
[ $$ = 1 ] || fail "init is pid $$, not 1"
if [ -f /pad ]; then
	[ "$(sha256sum /pad | cut -d' ' -f1)" = "$(cat /pad.sha256)" ] || fail "/pad is corrupted"
fi

if [ -f /etc/ssh/ssh_host_ed25519_key.pub ]; then
	echo "` + MarkerID + ` host=$(cat /etc/hostname) machine-id=$(cat /etc/machine-id) key=$(sha256sum /etc/ssh/ssh_host_ed25519_key.pub | cut -c1-16) mode=$(stat -c %a /etc/ssh/ssh_host_ed25519_key)"
fi

if [ "$OVERBOOT_TEST" = lazyread ]; then
	[ -f /pad ] || fail "lazyread needs a /pad"
	echo "` + MarkerLazyReading + `"
	i=0
	while [ $i -lt "${OVERBOOT_TEST_ROUNDS:-20}" ]; do
		echo 3 > /proc/sys/vm/drop_caches
		sum=$(sha256sum /pad | cut -d' ' -f1)
		[ "$sum" = "$(cat /pad.sha256)" ] || fail "/pad read $i is wrong or failed"
		i=$((i + 1))
		echo "` + MarkerLazyRound + ` $i"
		sleep 1
	done
fi

[ "$OVERBOOT_TEST" = writeloop ] && writeloop

sync
echo "` + MarkerPass + ` root=$root lower=squashfs-ro upper=$upper"
poweroff -f
sleep 10
`

// TestRootOptions shape the test root.
type TestRootOptions struct {
	Busybox string // static busybox (default /bin/busybox)
	// PadBytes adds an incompressible /pad of this size, so a download
	// takes long enough to be interrupted.
	PadBytes int64
}

// BuildTestRoot writes a tiny busybox root into dir whose /sbin/init
// checks the overlay and prints MarkerPass or MarkerFail.
func BuildTestRoot(dir string, o TestRootOptions) error {
	bb := o.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(bb, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("test root: %w (install busybox-static)", err)
	}
	for _, c := range []string{"sh", "awk", "cat", "cut", "echo", "touch", "poweroff", "sleep", "sha256sum", "mount", "ls", "grep", "sync", "tr", "sed", "stat"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", c)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte(testInit), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "marker"), []byte("original\n"), 0o644); err != nil {
		return err
	}
	// An fstab with a root entry: mkimage must drop it.
	fstab := "# test root\nUUID=0000 / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\nproc /proc proc defaults 0 0\n"
	if err := os.WriteFile(filepath.Join(dir, "etc", "fstab"), []byte(fstab), 0o644); err != nil {
		return err
	}
	if o.PadBytes > 0 {
		return writePad(dir, o.PadBytes)
	}
	return nil
}

func writePad(dir string, n int64) error {
	f, err := os.Create(filepath.Join(dir, "pad"))
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "pad.sha256"), []byte(fmt.Sprintf("%x\n", h.Sum(nil))), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
