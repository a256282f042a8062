package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/overboot/overboot/vmtest"
)

// The boot section's anchors: the initramfs generators Debian users boot
// a squashfs root over HTTP with today (dracut's livenet, live-boot),
// built from Debian's own packages in debootstrap chroots kept in the
// bench work dir. Installing dracut or live-boot on the host would replace
// its initramfs-tools, so they never go there. The chroots use the host's
// /lib/modules/RELEASE (bind-mounted read-only for the build only), so
// every initramfs matches the one kernel all boots share.

// anchorChroot is one debootstrap minbase tree with packages installed.
// dracut conflicts with initramfs-tools, hence two.
type anchorChroot struct {
	Name     string   // the tree is WorkDir/anchors/chroot-NAME
	Packages []string // apt-get install, Recommends included as apt does by default
}

var (
	// procps: pgrep, which dracut's network-legacy module needs;
	// systemd: dracut includes it in an initramfs only when installed;
	// curl: livenet's downloader (url-lib).
	dracutChroot   = anchorChroot{Name: "dracut", Packages: []string{"dracut", "dracut-network", "dracut-live", "systemd", "curl", "procps"}}
	liveBootChroot = anchorChroot{Name: "live-boot", Packages: []string{"live-boot", "initramfs-tools"}}
)

// anchor is one reference initramfs: how it is built inside its chroot,
// and its kernel arguments for an image at url (beside the section's
// common ones).
type anchor struct {
	Name   string // dracut-lean, dracut-generic, live-boot
	Ref    string // the table's "ref tool" column (11 characters)
	Chroot anchorChroot
	Build  func(release, out string) []string
	Args   func(url string) []string
	Big    bool // also boots the 4x image
}

// anchors are the references of the boot section, in boot order.
func anchors() []anchor {
	// dracut: livenet fetches root=live:URL with curl once the network
	// is up (rd.neednet=1 ip=dhcp); dmsquash-live loop-mounts it and,
	// since the squashfs is a root tree (it has /proc) rather than
	// LiveOS/rootfs.img, mounts an overlayfs over it, which the mount
	// hook only does with rd.live.overlay.overlayfs=1.
	dracutArgs := func(url string) []string {
		return []string{"root=live:" + url, "rd.live.overlay.overlayfs=1", "rd.neednet=1", "ip=dhcp"}
	}
	return []anchor{
		{
			// The smallest set that boots: dracut's shell init (no
			// systemd), dhclient (network-legacy), and the one driver
			// the network modules leave out: virtio_pci, the NIC's bus
			// (kernel-network-modules adds virtio_net itself).
			Name: "dracut-lean", Ref: "dracut-lean", Chroot: dracutChroot, Big: true,
			Build: func(release, out string) []string {
				return []string{"dracut", "--no-hostonly", "--force", "--kver", release,
					"-m", "base network-legacy livenet dmsquash-live", "--add-drivers", "virtio_pci", out}
			},
			Args: dracutArgs,
		},
		{
			// Every default module (systemd as the initramfs's init, all
			// kernel drivers), plus livenet and dmsquash-live, which no
			// default build includes. network-legacy: with dracut 059
			// the systemd-networkd handler brings the link up but never
			// runs the network-root hook, and the boot waits forever
			// (tried here).
			Name: "dracut-generic", Ref: "dracut-gen", Chroot: dracutChroot,
			Build: func(release, out string) []string {
				return []string{"dracut", "--no-hostonly", "--force", "--kver", release,
					"--add", "network-legacy livenet dmsquash-live", out}
			},
			Args: dracutArgs,
		},
		{
			// Debian's initramfs-tools defaults (MODULES=most, zstd) with
			// live-boot's hooks. fetch= downloads the squashfs (busybox
			// wget) into a ramfs and mounts it under an overlay; the
			// image needs nothing of live-boot inside.
			Name: "live-boot", Ref: "live-boot", Chroot: liveBootChroot, Big: true,
			Build: func(release, out string) []string {
				return []string{"mkinitramfs", "-o", out, release}
			},
			Args: func(url string) []string {
				return []string{"boot=live", "fetch=" + url, "ip=dhcp"}
			},
		},
	}
}

// chrootArgv runs argv inside the chroot dir, in a mount namespace of its
// own (unshare) holding /proc, /sys, /dev and the host's modules of
// release (read-only; none when release is ""): whatever happens to the
// bench, the mounts end with the command.
func chrootArgv(dir, release string, argv []string) []string {
	const script = `set -e
d=$1; k=$2; shift 2
mount -t proc proc "$d/proc"
mount -t sysfs sysfs "$d/sys"
mount --rbind /dev "$d/dev"
if [ -n "$k" ]; then
	mkdir -p "$d/lib/modules/$k"
	mount --bind -o ro "/lib/modules/$k" "$d/lib/modules/$k"
fi
exec chroot "$d" "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", dir, release}, argv...)
}

// chrootEnv is the environment of commands in a chroot: the host's PATH
// and locale are not the chroot's.
var chrootEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}

// runLogged runs argv with its output in logPath; a failure names what
// failed, the log, and its last lines.
func runLogged(ctx context.Context, what, logPath string, env []string, argv []string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if env != nil {
		cmd.Env = env
	}
	err := cmd.Run()
	if werr := os.WriteFile(logPath, out.Bytes(), 0o644); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("%s: %w (log %s):\n%s", what, err, logPath, tail(out.String(), 15))
	}
	return nil
}

// prepareChroot makes (once) the chroot c for kernel release: debootstrap
// minbase from Debian's mirror, then its packages. A stamp with the
// package list marks a finished chroot; anything else is redone.
func prepareChroot(ctx context.Context, env *Env, c anchorChroot, release string) (string, error) {
	base := filepath.Join(env.WorkDir, "anchors")
	dir := filepath.Join(base, "chroot-"+c.Name)
	stamp := filepath.Join(dir, ".overboot-bench-packages")
	want := strings.Join(c.Packages, " ") + "\n"
	if got, err := os.ReadFile(stamp); err != nil || string(got) != want {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join(dir, "usr/bin/apt-get")); err != nil {
			fmt.Fprintf(env.Out, "anchors: debootstrap --variant=minbase bookworm %s (once)\n", dir)
			if err := os.RemoveAll(dir); err != nil {
				return "", err
			}
			if err := runLogged(ctx, "debootstrap for the "+c.Name+" chroot (apt-get install debootstrap)", filepath.Join(base, c.Name+"-debootstrap.log"), nil,
				[]string{"debootstrap", "--variant=minbase", "bookworm", dir, "http://deb.debian.org/debian"}); err != nil {
				return "", err
			}
		}
		// No daemons start in the chroot (policy-rc.d 101), and apt
		// resolves names as the host does.
		if err := os.WriteFile(filepath.Join(dir, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return "", err
		}
		if err := copyFile("/etc/resolv.conf", filepath.Join(dir, "etc/resolv.conf"), 0o644); err != nil {
			return "", err
		}
		fmt.Fprintf(env.Out, "anchors: apt-get install %s in %s (once)\n", strings.Join(c.Packages, " "), dir)
		install := "apt-get update -q && apt-get install -y -q " + strings.Join(c.Packages, " ") + " && apt-get clean"
		if err := runLogged(ctx, "apt-get install "+strings.Join(c.Packages, " ")+" in the "+c.Name+" chroot", filepath.Join(base, c.Name+"-apt.log"), chrootEnv,
			chrootArgv(dir, "", []string{"sh", "-c", install})); err != nil {
			return "", err
		}
		if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
			return "", err
		}
	}
	// mkinitramfs reads the kernel's config for the compressions it
	// supports.
	if err := copyFile("/boot/config-"+release, filepath.Join(dir, "boot/config-"+release), 0o644); err != nil {
		return "", fmt.Errorf("kernel config for mkinitramfs: %w", err)
	}
	return dir, nil
}

// buildAnchor returns a's initramfs for kernel release, built once and
// kept in WorkDir/anchors/initramfs/RELEASE/NAME.img beside the command
// that made it (a changed command or package list rebuilds it).
func buildAnchor(ctx context.Context, env *Env, a anchor, release string) (string, error) {
	dir := filepath.Join(env.WorkDir, "anchors", "initramfs", release)
	img := filepath.Join(dir, a.Name+".img")
	inside := "/tmp/overboot-bench-" + a.Name + ".img"
	argv := a.Build(release, inside)
	key := shellJoin(argv) + "\npackages: " + strings.Join(a.Chroot.Packages, " ") + "\n"
	if got, err := os.ReadFile(img + ".cmd"); err == nil && string(got) == key {
		if _, err := os.Stat(img); err == nil {
			return img, nil
		}
	}
	root, err := prepareChroot(ctx, env, a.Chroot, release)
	if err != nil {
		return "", fmt.Errorf("anchor %s: %w", a.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(env.Out, "anchors: %s: %s (in %s)\n", a.Name, shellJoin(argv), root)
	t0 := time.Now()
	if err := runLogged(ctx, "anchor "+a.Name+": "+argv[0]+" in "+root, filepath.Join(dir, a.Name+".log"), chrootEnv, chrootArgv(root, release, argv)); err != nil {
		return "", err
	}
	built := filepath.Join(root, inside)
	if fi, err := os.Stat(built); err != nil || fi.Size() == 0 {
		return "", fmt.Errorf("anchor %s: %s made no initramfs at %s (log %s)", a.Name, argv[0], built, filepath.Join(dir, a.Name+".log"))
	}
	if err := os.Rename(built, img); err != nil {
		return "", err
	}
	fmt.Fprintf(env.Out, "anchors: %s: %.1f MB in %.0fs\n", a.Name, float64(fileSize(img))/1e6, time.Since(t0).Seconds())
	return img, os.WriteFile(img+".cmd", []byte(key), 0o644)
}

// anchorContenders builds every anchor's initramfs; an anchor that fails
// to build is left out with its error, and the others run.
func anchorContenders(ctx context.Context, env *Env, release, server string) ([]contender, []error) {
	var cs []contender
	var errs []error
	for _, a := range anchors() {
		img, err := buildAnchor(ctx, env, a, release)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, contender{
			Name: a.Name, Ref: a.Ref, Initrd: img, Server: server, Big: a.Big,
			Args: func(im benchImage) []string {
				return a.Args("http://" + vmtest.GuestServer + "/" + im.File)
			},
		})
	}
	return cs, errs
}

// shellJoin writes argv as a shell would read it back, for logs.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?;&|<>()") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
