package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// MarkerSystemd starts the line the systemd test root prints once systemd
// has finished starting: "OVERBOOT-TEST-SYSTEMD boots=N pid1=... state=...
// sessions=[...] upper=[...] keeper=[PID ...]".
const MarkerSystemd = "OVERBOOT-TEST-SYSTEMD"

// systemdTest runs as a service once the system is up: it reports on the
// console and powers off through systemd. The boot counter is written
// without sync: only systemd's shutdown flushes it to the iSCSI upper, so
// the next boot sees it only if the session outlived all of systemd.
const systemdTest = `#!/bin/sh
state=$(systemctl is-system-running --wait)
n=$(cat /var/lib/overboot-test/boots 2>/dev/null || echo 0)
n=$((n + 1))
mkdir -p /var/lib/overboot-test
echo $n > /var/lib/overboot-test/boots
sessions=$(ls /sys/class/iscsi_session 2>/dev/null | tr '\n' ' ')
upper=$(awk '$2 == "/run/overboot/rw" { print $1 " " $3 }' /proc/mounts)
keeper=$(grep -las '^@overboot-keeper' /proc/[0-9]*/cmdline | cut -d/ -f3 | tr '\n' ' ')
echo "` + MarkerSystemd + ` boots=$n pid1=$(cat /proc/1/comm) state=$state sessions=[$sessions] upper=[$upper] keeper=[$keeper]" > /dev/ttyS0
if grep -qw overboot_test=failover /proc/cmdline; then
	/usr/local/sbin/overboot-failover-test
fi
systemctl poweroff
`

// MarkerFailover starts the lines of the systemd test root's failover
// routine (kernel argument overboot_test=failover): "MARKER ready" once
// systemd is up, as it starts reading every file of /usr/share and
// /usr/lib (or of the directories of overboot_test_read=DIR,DIR) in
// batches of 40, then "MARKER done files=N bytes=B errors=E
// batches=K longest_ms=X median_ms=Y total_ms=Z": X is the longest time
// one batch took, an upper bound on the longest stall of the root; each
// batch slower than 2 s also prints "MARKER slow batch=I ms=X bytes=B
// uptime=S" (big files, or a wait for the root's server).
const MarkerFailover = "OVERBOOT-TEST-FAILOVER"

const failoverTest = `#!/bin/bash
echo "` + MarkerFailover + ` ready" > /dev/ttyS0
start=$EPOCHREALTIME
last=$start
dirs="/usr/share /usr/lib"
for a in $(cat /proc/cmdline); do
	case $a in overboot_test_read=*) dirs=${a#overboot_test_read=} dirs=${dirs//,/ } ;; esac
done
mapfile -t files < <(find $dirs -type f)
n=${#files[@]} bytes=0 errors=0 longest=0 gaps=()
for ((i = 0; i < n; i += 40)); do
	b=$(cat -- "${files[@]:i:40}" 2>/dev/null | wc -c)
	[ "${PIPESTATUS[0]}" = 0 ] || errors=$((errors + 1))
	bytes=$((bytes + b))
	now=$EPOCHREALTIME
	gap=$(( (10#${now/./} - 10#${last/./}) / 1000 ))
	last=$now
	gaps+=($gap)
	[ $gap -gt $longest ] && longest=$gap
	[ $gap -gt 2000 ] && echo "` + MarkerFailover + ` slow batch=$((i / 40)) ms=$gap bytes=$b uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
done
median=$(printf '%s\n' "${gaps[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
total=$(( (10#${last/./} - 10#${start/./}) / 1000 ))
echo "` + MarkerFailover + ` done files=$n bytes=$bytes errors=$errors batches=${#gaps[@]} longest_ms=$longest median_ms=$median total_ms=$total" > /dev/ttyS0
`

const systemdUnit = `[Unit]
Description=overboot test: report and power off
After=basic.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/overboot-test

[Install]
WantedBy=multi-user.target
`

// SystemdRoot returns a Debian bookworm tree with systemd as its init
// (debootstrap --variant=minbase --include=systemd-sysv,udev from Debian's
// mirror, made once and kept in cacheDir) with the test service added.
// Tests running in parallel share the tree: it is made and written once
// per process, never while another test builds an image from it.
func SystemdRoot(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	systemdRootMu.Lock()
	defer systemdRootMu.Unlock()
	if p, ok := systemdRootDone[cacheDir]; ok {
		return p, nil
	}
	p, err := systemdRoot(ctx, cacheDir, log)
	if err == nil {
		systemdRootDone[cacheDir] = p
	}
	return p, err
}

var (
	systemdRootMu   sync.Mutex
	systemdRootDone = map[string]string{}
)

func systemdRoot(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	tree := filepath.Join(cacheDir, "systemd-root")
	// udev is part of any real systemd install (and what renames NICs
	// under the agent's feet, which the hand-over has to survive).
	if _, err := os.Stat(filepath.Join(tree, "lib/systemd/systemd-udevd")); err != nil {
		t0 := time.Now()
		fmt.Fprintf(log, "vmtest: debootstrap --variant=minbase --include=systemd-sysv,udev bookworm %s (once)\n", tree)
		tmp := tree + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return "", err
		}
		cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include=systemd-sysv,udev", "bookworm", tmp, "http://deb.debian.org/debian")
		if out, err := cmd.CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return "", fmt.Errorf("debootstrap (apt-get install debootstrap): %w\n%s", err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "var/cache/apt/archives/*.deb"))
		for _, d := range debs {
			os.Remove(d)
		}
		os.RemoveAll(tree)
		if err := os.Rename(tmp, tree); err != nil {
			return "", err
		}
		fmt.Fprintf(log, "vmtest: debootstrap done in %.0fs\n", time.Since(t0).Seconds())
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"usr/local/sbin/overboot-test", systemdTest, 0o755},
		{"usr/local/sbin/overboot-failover-test", failoverTest, 0o755},
		{"etc/systemd/system/overboot-test.service", systemdUnit, 0o644},
		// No login prompts on the console: the test owns it.
		{"etc/systemd/system/serial-getty@ttyS0.service", "", 0},
		{"etc/hostname", "overboot-test\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(tree, f.path)
		os.Remove(p)
		if f.mode == 0 {
			if err := os.Symlink("/dev/null", p); err != nil {
				return "", err
			}
			continue
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return "", err
		}
	}
	wants := filepath.Join(tree, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(wants, "overboot-test.service")
	os.Remove(link)
	if err := os.Symlink("/etc/systemd/system/overboot-test.service", link); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(tree)
}
