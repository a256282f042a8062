package initagent

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/initagent/keeper"
)

// Step is one action of the boot plan: a value that tests inspect without
// root and whose String reads like the shell command doing the same.
type Step interface {
	fmt.Stringer
	Phase() Phase
}

// Mount mounts a filesystem.
type Mount struct {
	Source, Target, FSType string
	Options                []string // flags (ro, nosuid, nodev, noexec) and data (size=, mode=, lowerdir=...)
	PhaseOf                Phase
}

func (m Mount) String() string {
	s := "mount -t " + m.FSType
	if len(m.Options) > 0 {
		s += " -o " + strings.Join(m.Options, ",")
	}
	return s + " " + m.Source + " " + m.Target
}

// Phase implements Step.
func (m Mount) Phase() Phase { return m.PhaseOf }

// Mkdir creates directories (mkdir -p).
type Mkdir struct {
	Paths   []string
	PhaseOf Phase
}

func (m Mkdir) String() string { return "mkdir -p " + strings.Join(m.Paths, " ") }

// Phase implements Step.
func (m Mkdir) Phase() Phase { return m.PhaseOf }

// LoadModules loads the modules listed in ListFile, then Extra, each with
// its dependencies from modules.dep, except those in Skip; then the
// module files every list in SegmentDir names, in their order (a driver
// segment's list is complete: dependencies first, no modules.dep).
//
// With Background the step only starts the loading, and the next steps run
// meanwhile (the network step waits for its interface to appear; under
// emulation loading takes a good part of a second, DHCP mostly waits);
// AwaitModules waits for it to end.
type LoadModules struct {
	ListFile   string // "" = none
	Extra      []string
	Skip       []string // listed but loaded later, by the step that needs them
	SegmentDir string   // "" = none; a missing directory means no segment
	Background bool
	PhaseOf    Phase // "" = PhaseModules
}

func (l LoadModules) String() string {
	s := "modprobe -a"
	if l.ListFile != "" {
		s += " $(cat " + l.ListFile + ")"
	}
	if len(l.Extra) > 0 {
		s += " " + strings.Join(l.Extra, " ")
	}
	if l.SegmentDir != "" {
		s += "; cat " + l.SegmentDir + "/* | xargs -n1 insmod"
	}
	if l.Background {
		s = "(" + s + ") &"
	}
	if len(l.Skip) > 0 {
		s += " # except " + strings.Join(l.Skip, " ")
	}
	return s
}

// AwaitModules waits for the modules a LoadModules step loads in the
// background, and fails as it failed. Without such a step it does nothing.
type AwaitModules struct {
	PhaseOf Phase
}

func (AwaitModules) String() string { return "wait # for the modules loading in the background" }

// Phase implements Step.
func (a AwaitModules) Phase() Phase { return a.PhaseOf }

// Phase implements Step.
func (l LoadModules) Phase() Phase {
	if l.PhaseOf != "" {
		return l.PhaseOf
	}
	return PhaseModules
}

// ISCSIAttach logs in to an iSCSI target through the kernel's initiator
// and links the LUN's block device at Link. Recovery is the session's
// recovery timeout: how long the kernel holds its I/O while the keeper
// logs a failed connection in again (Keep). Its String never shows the
// CHAP secret.
type ISCSIAttach struct {
	Source   boot.ISCSISource
	Link     string
	Recovery time.Duration
	PhaseOf  Phase
}

func (a ISCSIAttach) String() string {
	s := fmt.Sprintf("iscsi login %s at %s lun %d as %s", a.Source.Target, a.Source.Portal, a.Source.LUN, a.Source.Initiator)
	if a.Source.CHAP != nil {
		s += " (chap user " + a.Source.CHAP.User
		if a.Source.CHAP.TargetUser != "" {
			s += ", mutual"
		}
		s += ")"
	}
	return s + fmt.Sprintf(" -> %s (recovery %v)", a.Link, a.Recovery)
}

// Phase implements Step.
func (a ISCSIAttach) Phase() Phase { return a.PhaseOf }

// IBFTAttach reads the iBFT (the iSCSI disk the firmware booted from, with
// its initiator name and CHAP), logs in like ISCSIAttach and links
// partition Partition of the disk at Link.
type IBFTAttach struct {
	Dir       string // /sys/firmware/ibft
	Partition int
	Link      string
	Recovery  time.Duration // as ISCSIAttach's
}

func (a IBFTAttach) String() string {
	return fmt.Sprintf("iscsi login to the iBFT's boot target (%s) -> partition %d -> %s (recovery %v)", a.Dir, a.Partition, a.Link, a.Recovery)
}

// Phase implements Step.
func (IBFTAttach) Phase() Phase { return PhaseDisk }

// FormatBlank makes an ext4 filesystem on Device when the device is
// blank (its first 64 KiB are zeros), leaves an ext4 device alone, and
// refuses anything else rather than destroy data.
type FormatBlank struct {
	Device, Label string
}

func (f FormatBlank) String() string {
	return "mkfs.ext4 -L " + f.Label + " " + f.Device + " # only if blank"
}

// Phase implements Step.
func (FormatBlank) Phase() Phase { return PhaseUpper }

// VerifyDevice checks the SHA-256 of the first Size bytes of a device.
type VerifyDevice struct {
	Path   string
	Digest boot.Digest
	Size   int64
}

func (v VerifyDevice) String() string {
	return fmt.Sprintf("verify %s: first %d bytes are %s", v.Path, v.Size, v.Digest.Short())
}

// Phase implements Step.
func (VerifyDevice) Phase() Phase { return PhaseLower }

// Network brings up an interface and configures it with DHCPv4.
type Network struct {
	Iface       string     // "" = the first interface with a carrier
	Family      int        // 4: DHCPv4, 6: DHCPv6
	Server      netip.Addr // the first server's address, if a literal: DHCPv6 makes sure it has a route
	LinkTimeout time.Duration
	DHCPTimeout time.Duration // per attempt
	Attempts    int
}

func (n Network) String() string {
	iface := n.Iface
	if iface == "" {
		iface = "(first with link)"
	}
	dhcp := "dhcp"
	if n.Family == 6 {
		dhcp = "dhcpv6"
	}
	return fmt.Sprintf("%s %s (link wait %v, %d attempts of %v)", dhcp, iface, n.LinkTimeout, n.Attempts, n.DHCPTimeout)
}

// Phase implements Step.
func (Network) Phase() Phase { return PhaseNetwork }

// FetchDocument fetches and validates the boot document.
type FetchDocument struct {
	URL      string
	Attempts int
	Stall    time.Duration
}

func (f FetchDocument) String() string { return "fetch boot document " + fetch.RedactURL(f.URL) }

// Phase implements Step.
func (FetchDocument) Phase() Phase { return PhaseDocument }

// Attest has the machine's TPM prove what booted to the server at URL
// (overboot.attest, boot/attest.go's exchange) and opens the boot
// document the server seals to that TPM: the document mode's
// FetchDocument for a machine enrolled by its TPM (attest.go).
type Attest struct {
	URL      string
	Attempts int           // per request, as FetchDocument's
	Stall    time.Duration // per request
}

func (a Attest) String() string {
	return "attest with the TPM to " + fetch.RedactURL(a.URL) + "; open the boot document it seals to this TPM"
}

// Phase implements Step.
func (Attest) Phase() Phase { return PhaseAttest }

// ConsoleLogin asks for a username and a password on the console and
// POSTs them to URL (overboot.login); the answer is the boot document,
// as FetchDocument's (consolelogin.go).
type ConsoleLogin struct {
	URL      string
	Attempts int
	Stall    time.Duration
}

func (c ConsoleLogin) String() string {
	return "ask username and password on /dev/console, POST to " + fetch.RedactURL(c.URL) + " for the boot document"
}

// Phase implements Step: the login gets the document.
func (ConsoleLogin) Phase() Phase { return PhaseDocument }

// Download fetches the image over HTTP into Dest, verifying it.
type Download struct {
	URL      string
	Mirrors  []string // other URLs of the image, tried in order when URL fails
	Digest   boot.Digest
	Size     int64
	Dest     string
	Attempts int
	Stall    time.Duration
}

func (d Download) String() string {
	s := fmt.Sprintf("fetch %s -> %s (verify %s", sources(d.URL, d.Mirrors), d.Dest, d.Digest.Short())
	if d.Size > 0 {
		s += fmt.Sprintf(", %d bytes", d.Size)
	}
	return s + fmt.Sprintf(", %d attempts)", d.Attempts)
}

// Phase implements Step.
func (Download) Phase() Phase { return PhaseLower }

// LoopMount attaches File to a read-only loop device and mounts it.
type LoopMount struct {
	File, Target, FSType string
}

func (l LoopMount) String() string {
	return "mount -t " + l.FSType + " -o loop,ro " + l.File + " " + l.Target
}

// Phase implements Step.
func (LoopMount) Phase() Phase { return PhaseLower }

// CheckInit checks that Init is an executable file inside Root, resolving
// symlinks as the new root will see them.
type CheckInit struct {
	Root, Init string
}

func (c CheckInit) String() string { return "test -x " + path.Join(c.Root, c.Init) }

// Phase implements Step.
func (CheckInit) Phase() Phase { return PhaseOverlay }

// WriteFiles writes the machine's identity into Root (the overlay, so
// into the upper layer): its host name, machine-id and files such as SSH
// host keys. Paths are resolved inside Root: a symlink in the image cannot
// send a write outside it. The plan shows paths, modes and sizes only.
type WriteFiles struct {
	Root  string
	Files []boot.IdentityFile
}

func (w WriteFiles) String() string {
	parts := make([]string, len(w.Files))
	for i, f := range w.Files {
		parts[i] = fmt.Sprintf("%s (%04o, %d bytes)", f.Path, f.Mode, len(f.Data))
	}
	return fmt.Sprintf("write into %s: %s", w.Root, strings.Join(parts, ", "))
}

// Phase implements Step.
func (WriteFiles) Phase() Phase { return PhaseOverlay }

// IdentityFiles lists what an identity writes: /etc/hostname (0644) and
// /etc/machine-id (0444, as systemd makes it) when given, then its files.
func IdentityFiles(id *boot.Identity) []boot.IdentityFile {
	if id == nil {
		return nil
	}
	var out []boot.IdentityFile
	if id.Hostname != "" {
		out = append(out, boot.IdentityFile{Path: "/etc/hostname", Mode: 0o644, Data: id.Hostname + "\n"})
	}
	if id.MachineID != "" {
		out = append(out, boot.IdentityFile{Path: "/etc/machine-id", Mode: 0o444, Data: id.MachineID + "\n"})
	}
	return append(out, id.Files...)
}

// SwitchRoot moves /dev /proc /sys /run into Root, deletes the initramfs,
// makes Root the new / and executes Init.
type SwitchRoot struct {
	Root, Init string
}

func (s SwitchRoot) String() string { return "switch_root " + s.Root + " " + s.Init }

// Phase implements Step.
func (SwitchRoot) Phase() Phase { return PhaseSwitchRoot }

// LazyAttach makes the image at Source readable on demand: the keeper
// (initagent/keeper) serves it to the kernel as an NBD device from HTTP
// Range reads, its dm-verity tree behind it on the same device, read the
// same way, and dm-verity checks every block read against Source's root
// hash. Link points to the verity device, which holds the squashfs.
type LazyAttach struct {
	Source     boot.HTTPSource
	Link       string
	CacheBytes int64 // the keeper's RAM cache (lazy mode)
	// Report is the boot's report URL (it carries a token: never
	// shown): the keeper reports there what the machine read in its
	// first minute (boot.WorkingSetReport). "": no report.
	Report string
}

func (l LazyAttach) String() string {
	mode := "on demand"
	if l.Source.Mode == boot.LowerFill {
		mode = "on demand, filling RAM in the background"
	}
	root, tree := "?", "?"
	if v := l.Source.Verity; v != nil {
		root = v.RootHash
		if len(root) > 12 {
			root = root[:12]
		}
		tree = fmt.Sprintf("%s (%d bytes)", sources(v.HashURL, v.HashMirrors), v.HashSize)
	}
	if ws := l.Source.WorkingSet; ws != nil {
		mode += fmt.Sprintf(", prefetching a working set of %d chunks of %d bytes", ws.Count(), ws.ChunkSize)
	}
	if l.Report != "" {
		mode += ", reporting its working set"
	}
	return fmt.Sprintf("nbd <- keeper <- %s (%s, %d bytes) + tree %s; dm-verity root %s -> %s", sources(l.Source.URL, l.Source.Mirrors), mode, l.Source.Size, tree, root, l.Link)
}

// Phase implements Step.
func (LazyAttach) Phase() Phase { return PhaseLower }

// sources shows a URL and its mirrors, redacted, in the order they are
// tried: "A or B or C".
func sources(url string, mirrors []string) string {
	s := fetch.RedactImageURL(url)
	for _, m := range mirrors {
		s += " or " + fetch.RedactImageURL(m)
	}
	return s
}

// Keep has the keeper (initagent/keeper, "@overboot-keeper", which lives
// on after switch_root) watch the iSCSI sessions attached at Links, and
// log a connection that fails in again, as iscsid would: the kernel holds
// the session's I/O meanwhile (its recovery timeout, ISCSIAttach's), so a
// server restart or a network cut fails none. One keeper per machine: a
// lazy root's, or one started here.
type Keep struct {
	Links []string
}

func (k Keep) String() string {
	return keeper.Argv0 + ": log in again the iSCSI sessions of " + strings.Join(k.Links, " ") + " when their connection fails"
}

// Phase implements Step.
func (Keep) Phase() Phase { return PhaseOverlay }
