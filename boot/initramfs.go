package boot

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
)

// The initramfs layout: paths inside the initramfs (relative, as cpio
// records name them) that mkimage writes and the agent reads. The agent
// sees them as absolute paths ("/" + the constant).
//
// The kernel unpacks every initrd the boot loader hands it into the same
// rootfs, in order (a later file of the same name replaces an earlier
// one). The base initramfs holds the agent and the modules it loads; a
// driver segment, an extra initrd the server adds for a machine whose NIC
// driver the base lacks, adds module files and one list in
// InitramfsExtraModulesDir, and changes nothing of the base.
const (
	// InitramfsInit is the agent: the kernel runs /init of an initramfs.
	InitramfsInit = "init"
	// InitramfsShell is the rescue shell, a link to the agent (which is a
	// shell when called sh: initagent/rescue), unless the initramfs was
	// built without; overboot.onfail=shell starts it.
	InitramfsShell = "bin/sh"
	// InitramfsNewRoot is where the agent assembles the root it hands over
	// to with switch_root.
	InitramfsNewRoot = "newroot"
	// InitramfsModulesDir holds one directory per kernel release, laid out
	// as kmod does: the module files, and modules.dep (ModulesDep),
	// modules.alias (ModulesAlias: the agent skips the PCI drivers of
	// hardware the machine lacks) and modules.builtin trimmed to them.
	InitramfsModulesDir = "lib/modules"
	// ModulesDep and ModulesAlias are kmod's file names in a release's
	// directory.
	ModulesDep   = "modules.dep"
	ModulesAlias = "modules.alias"
	// InitramfsModules lists the modules the agent loads at boot, one
	// name per line ('#' starts a comment); their files and dependencies
	// are in lib/modules/RELEASE/modules.dep.
	InitramfsModules = "etc/overboot/modules"
	// InitramfsSiteCA is the site CA certificate (PEM) the agent trusts,
	// and trusts alone, for https URLs (the document, reports, the image
	// with lower-tls); an initramfs without it fetches over HTTP only.
	InitramfsSiteCA = "etc/overboot/site-ca.pem"
	// InitramfsExtraModulesDir holds one list per driver segment, named
	// after its drivers (e.g. "8139cp+8139too"): module files in load
	// order, dependencies first (FormatModuleFiles). The agent loads them
	// after InitramfsModules, with no modules.dep: a segment's list is
	// complete in itself, whatever base it is unpacked over.
	InitramfsExtraModulesDir = "etc/overboot/modules.d"
)

// Kernel modules by what needs them, as modprobe names them (their
// dependencies come from modules.dep). mkimage's default initramfs ships
// them all; the agent loads each set when a step needs it. Callers copy
// before appending; nobody writes to them.
var (
	// ModulesHTTPRoot: an image downloaded into RAM, loop-mounted
	// squashfs under overlayfs.
	ModulesHTTPRoot = []string{"squashfs", "loop", "overlay"}
	// ModulesVirtioNIC: the virtio NIC of QEMU and most clouds.
	ModulesVirtioNIC = []string{"virtio_pci", "virtio_net"}
	// ModulesIntelNIC: the Intel NICs many lab machines have.
	ModulesIntelNIC = []string{"e1000", "e1000e", "igb"}
	// ModulesISCSI: a LUN through the kernel's iSCSI initiator (CRC32C
	// for its header and data digests).
	ModulesISCSI = []string{"iscsi_tcp", "sd_mod", "crc32c_generic"}
	// ModulesDeferred: in the initramfs for iSCSI lowers, uppers and
	// roots (ModulesISCSI, ModuleExt4 and ModuleIBFT), lazy roots and NFS
	// lowers (ModuleNFSv4, ModuleNFSv3). The agent's modules
	// phase skips them, since loading ext4 alone costs a noticeable part
	// of a second under emulation, and the iSCSI steps load what they
	// need.
	ModulesDeferred = []string{"iscsi_tcp", "sd_mod", "ext4", "crc32c_generic", "iscsi_ibft", "nbd", "dm_verity", ModuleNFSv4, ModuleNFSv3}
	// ModulesLazyRoot: an image read on demand (lower mode lazy or fill):
	// the NBD device the keeper feeds and dm-verity above it (which brings
	// dm_mod, dm_bufio and reed_solomon). Deferred like the iSCSI ones.
	ModulesLazyRoot = []string{"nbd", "dm_verity"}
)

// ModuleOptions are the parameters the agent loads a module with. nbd
// makes no devices up front (16 by default, each a disk with its queues:
// a tenth of a second under emulation); the agent has the kernel make the
// one it needs when it connects it over netlink.
var ModuleOptions = map[string]string{"nbd": "nbds_max=0"}

// Single modules the agent names.
const (
	// ModuleExt4 is the filesystem of an iSCSI upper or root disk.
	ModuleExt4 = "ext4"
	// ModuleIBFT exposes the iSCSI disk the firmware booted from
	// (overboot.root=ibft:N) in /sys/firmware/ibft.
	ModuleIBFT = "iscsi_ibft"
	// ModuleNFSv4 and ModuleNFSv3 are the kernel's NFS client for an NFS
	// lower (nfs://): NFSv4 (4.1 and 4.2 too) and NFSv3. The nfs module
	// loads them on demand with request_module, which an initramfs
	// without modprobe cannot answer, so the agent loads the one it
	// needs first. modules.dep brings nfs, sunrpc, lockd, grace, netfs,
	// fscache and dns_resolver (Debian 12's 6.1 kernel). Deferred.
	ModuleNFSv4 = "nfsv4"
	ModuleNFSv3 = "nfsv3"
)

// DefaultInitramfsModules returns what an initramfs loads when its builder
// is not told otherwise: an HTTP root, the iSCSI modules (deferred by the
// agent) and the common NICs, in a fixed order.
func DefaultInitramfsModules() []string {
	var out []string
	for _, set := range [][]string{ModulesHTTPRoot, ModulesVirtioNIC, ModulesDeferred, ModulesIntelNIC} {
		out = append(out, set...)
	}
	return out
}

// Module file names end in one of these (the kernel's module compressions).
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// CheckModuleFile checks one entry of a segment's list: a clean relative
// path under lib/modules/RELEASE/ naming a module file.
func CheckModuleFile(p string) error {
	rest, ok := strings.CutPrefix(p, InitramfsModulesDir+"/")
	release, _, _ := strings.Cut(rest, "/")
	switch {
	case !ok || release == "" || strings.Count(rest, "/") < 1:
		return fmt.Errorf("module file %q: want lib/modules/RELEASE/...", p)
	case path.Clean(p) != p || strings.Contains(p, "/../") || strings.ContainsAny(p, " \t\r\n#\x00"):
		return fmt.Errorf("module file %q: want a clean path without spaces or '#'", p)
	}
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s) && len(path.Base(p)) > len(s) {
			return nil
		}
	}
	return fmt.Errorf("module file %q: want a name ending in %s", p, strings.Join(moduleSuffixes, ", "))
}

// FormatModuleFiles writes a segment's list: a comment naming what it is
// for, then one module file per line, in load order.
func FormatModuleFiles(comment string, files []string) ([]byte, error) {
	var b bytes.Buffer
	if strings.ContainsAny(comment, "\r\n") {
		return nil, fmt.Errorf("module list comment %q: want one line", comment)
	}
	if comment != "" {
		fmt.Fprintf(&b, "# %s\n", comment)
	}
	for _, f := range files {
		if err := CheckModuleFile(f); err != nil {
			return nil, err
		}
		b.WriteString(f + "\n")
	}
	return b.Bytes(), nil
}

// MaxModuleList bounds a list the agent reads.
const MaxModuleList = 64 << 10

// ParseModuleFiles reads a segment's list. Blank lines and '#' comments
// are skipped; any other line must pass CheckModuleFile (errors name the
// line).
func ParseModuleFiles(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxModuleList))
	var out []string
	for n := 1; sc.Scan(); n++ {
		l, _, _ := strings.Cut(sc.Text(), "#")
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if err := CheckModuleFile(l); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}
