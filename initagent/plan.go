package initagent

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/iscsi"
)

// Phase names a stage of the boot, as shown on the console and reported to
// the server. The names are the contract's (boot.Phases): the agent has no
// phase of its own.
type Phase string

// The phases, in order.
const (
	PhaseEarly      Phase = boot.PhaseEarly      // /proc /sys /dev /run
	PhaseModules    Phase = boot.PhaseModules    // kernel modules from the initramfs
	PhaseNetwork    Phase = boot.PhaseNetwork    // link and DHCPv4
	PhaseDocument   Phase = boot.PhaseDocument   // boot document from the server
	PhaseDisk       Phase = boot.PhaseDisk       // a root partition on the firmware's iSCSI disk
	PhaseLower      Phase = boot.PhaseLower      // the read-only image
	PhaseUpper      Phase = boot.PhaseUpper      // the writable layer
	PhaseOverlay    Phase = boot.PhaseOverlay    // overlayfs as the new root
	PhaseSwitchRoot Phase = boot.PhaseSwitchRoot // hand over to the image's init
)

// Fixed paths inside the initramfs. Everything the agent mounts lives under
// /run/overboot, so it moves into the new root with /run and stays visible
// to the booted system (e.g. /run/overboot/lower is the image, read-only).
const (
	RunDir      = "/run/overboot"
	ImageDir    = RunDir + "/image" // tmpfs holding the downloaded image
	ImageFile   = ImageDir + "/lower.squashfs"
	LowerMount  = RunDir + "/lower" // the squashfs, read-only
	RWMount     = RunDir + "/rw"    // tmpfs (or disk) for the upper layer
	UpperDir    = RWMount + "/upper"
	WorkDir     = RWMount + "/work"
	NewRoot     = "/" + boot.InitramfsNewRoot
	ModulesList = "/" + boot.InitramfsModules // written by mkimage initramfs
	// ExtraModulesDir holds the lists of the server's driver segments.
	ExtraModulesDir = "/" + boot.InitramfsExtraModulesDir
	LowerDevice     = RunDir + "/lower.dev" // symlink to the lower's block device (iSCSI)
	UpperDevice     = RunDir + "/upper.dev" // symlink to the upper's block device (iSCSI)
	RootDevice      = RunDir + "/root.dev"  // symlink to the root partition (overboot.root)
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
type LoadModules struct {
	ListFile   string // "" = none
	Extra      []string
	Skip       []string // listed but loaded later, by the step that needs them
	SegmentDir string   // "" = none; a missing directory means no segment
	PhaseOf    Phase    // "" = PhaseModules
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
	if len(l.Skip) > 0 {
		s += " # except " + strings.Join(l.Skip, " ")
	}
	return s
}

// ISCSIAttach logs in to an iSCSI target through the kernel's initiator
// and links the LUN's block device at Link. Its String never shows the
// CHAP secret.
type ISCSIAttach struct {
	Source  boot.ISCSISource
	Link    string
	PhaseOf Phase
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
	return s + " -> " + a.Link
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
}

func (a IBFTAttach) String() string {
	return fmt.Sprintf("iscsi login to the iBFT's boot target (%s) -> partition %d -> %s", a.Dir, a.Partition, a.Link)
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

// BlankCheckBytes is how much of a device must be zeros for FormatBlank
// to call it blank: partition tables, boot sectors and the superblocks
// of common filesystems all live there.
const BlankCheckBytes = 64 << 10

// DiskContent says what the start of a device holds.
type DiskContent int

// What ClassifyDisk finds.
const (
	DiskBlank DiskContent = iota // all zeros
	DiskExt4                     // an ext2/3/4 superblock
	DiskOther                    // anything else: not ours to format
)

// ClassifyDisk looks at the first BlankCheckBytes of a device.
func ClassifyDisk(head []byte) DiskContent {
	// ext2/3/4: the superblock at 1024, its magic 0xEF53 at byte 56.
	if len(head) >= 1024+58 && head[1024+56] == 0x53 && head[1024+57] == 0xef {
		return DiskExt4
	}
	for _, b := range head {
		if b != 0 {
			return DiskOther
		}
	}
	return DiskBlank
}

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

// Phase implements Step.
func (l LoadModules) Phase() Phase {
	if l.PhaseOf != "" {
		return l.PhaseOf
	}
	return PhaseModules
}

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

func (f FetchDocument) String() string { return "fetch boot document " + RedactURL(f.URL) }

// Phase implements Step.
func (FetchDocument) Phase() Phase { return PhaseDocument }

// Download fetches the image over HTTP into Dest, verifying it.
type Download struct {
	URL      string
	Digest   boot.Digest
	Size     int64
	Dest     string
	Attempts int
	Stall    time.Duration
}

func (d Download) String() string {
	s := fmt.Sprintf("fetch %s -> %s (verify %s", d.URL, d.Dest, d.Digest.Short())
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

// EarlyPlan is what runs before the boot document is known: the kernel's
// filesystems, modules, network and, in document mode, the document itself.
func EarlyPlan(p boot.Params) []Step {
	steps := []Step{
		Mount{Source: "proc", Target: "/proc", FSType: "proc", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly},
		Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly},
		Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Options: []string{"nosuid", "mode=0755"}, PhaseOf: PhaseEarly},
		Mount{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Options: []string{"nosuid", "nodev", "mode=0755"}, PhaseOf: PhaseEarly},
		Mkdir{Paths: []string{RunDir}, PhaseOf: PhaseEarly},
		LoadModules{ListFile: ModulesList, Extra: p.Modules, Skip: deferred(p.Modules), SegmentDir: ExtraModulesDir},
		Network{Iface: p.Iface, Family: p.DHCPFamily(), Server: p.ServerAddr(), LinkTimeout: p.LinkWait(), DHCPTimeout: p.DHCPWait(), Attempts: p.DHCPTries()},
	}
	if p.Doc != "" {
		steps = append(steps, FetchDocument{URL: p.Doc, Attempts: p.FetchTries(), Stall: p.FetchStall()})
	}
	return steps
}

// RootPlan is what the document (or the static command line) decides: the
// lower and upper layers, the overlay and the hand-over.
func RootPlan(p boot.Params, d boot.Document) ([]Step, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var steps []Step
	switch {
	case d.Lower.HTTP != nil:
		h := d.Lower.HTTP
		imgSize := "size=90%"
		if h.Size > 0 {
			// Room for the image and nothing else: tmpfs counts pages.
			imgSize = fmt.Sprintf("size=%d", roundUp(h.Size, 1<<20)+1<<20)
		}
		steps = append(steps,
			Mkdir{Paths: []string{ImageDir, LowerMount}, PhaseOf: PhaseLower},
			Mount{Source: "tmpfs", Target: ImageDir, FSType: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=0700", imgSize}, PhaseOf: PhaseLower},
			Download{URL: h.URL, Digest: h.Digest, Size: h.Size, Dest: ImageFile, Attempts: p.FetchTries(), Stall: p.FetchStall()},
			LoopMount{File: ImageFile, Target: LowerMount, FSType: "squashfs"},
		)
	case d.Lower.ISCSI != nil:
		src := d.Lower.ISCSI
		if src.Digest == "" {
			return nil, fmt.Errorf("lower.iscsi: a read-only lower needs a digest and a size to be verified")
		}
		steps = append(steps,
			LoadModules{Extra: slices.Clone(boot.ModulesISCSI), PhaseOf: PhaseLower},
			Mkdir{Paths: []string{LowerMount}, PhaseOf: PhaseLower},
			ISCSIAttach{Source: *src, Link: LowerDevice, PhaseOf: PhaseLower},
			VerifyDevice{Path: LowerDevice, Digest: src.Digest, Size: src.Size},
			Mount{Source: LowerDevice, Target: LowerMount, FSType: "squashfs", Options: []string{"ro"}, PhaseOf: PhaseLower},
		)
	default:
		return nil, fmt.Errorf("lower layer: none in the boot document")
	}
	switch {
	case d.Upper.Tmpfs != nil:
		size := d.Upper.Tmpfs.Size
		if size.IsZero() {
			size = boot.DefaultUpperSize
		}
		steps = append(steps,
			Mkdir{Paths: []string{RWMount}, PhaseOf: PhaseUpper},
			Mount{Source: "tmpfs", Target: RWMount, FSType: "tmpfs", Options: []string{"mode=0755", "size=" + tmpfsSize(size)}, PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{UpperDir, WorkDir}, PhaseOf: PhaseUpper},
		)
	case d.Upper.ISCSI != nil:
		mods := append(slices.Clone(boot.ModulesISCSI), boot.ModuleExt4)
		steps = append(steps,
			LoadModules{Extra: mods, PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{RWMount}, PhaseOf: PhaseUpper},
			ISCSIAttach{Source: *d.Upper.ISCSI, Link: UpperDevice, PhaseOf: PhaseUpper},
			// The overboot server formats the disks it creates; another
			// target's blank disk is formatted here.
			FormatBlank{Device: UpperDevice, Label: "overboot-upper"},
			Mount{Source: UpperDevice, Target: RWMount, FSType: "ext4", Options: []string{"noatime"}, PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{UpperDir, WorkDir}, PhaseOf: PhaseUpper},
		)
	default:
		return nil, fmt.Errorf("upper layer: none in the boot document")
	}
	init := d.InitPath()
	steps = append(steps,
		Mkdir{Paths: []string{NewRoot}, PhaseOf: PhaseOverlay},
		Mount{Source: "overlay", Target: NewRoot, FSType: "overlay",
			Options: []string{"lowerdir=" + LowerMount, "upperdir=" + UpperDir, "workdir=" + WorkDir}, PhaseOf: PhaseOverlay},
	)
	if files := IdentityFiles(d.Identity); len(files) > 0 {
		steps = append(steps, WriteFiles{Root: NewRoot, Files: files})
	}
	steps = append(steps,
		HandOverNetwork{Keep: d.Lower.ISCSI != nil || d.Upper.ISCSI != nil},
		CheckInit{Root: NewRoot, Init: init},
		SwitchRoot{Root: NewRoot, Init: init},
	)
	return steps, nil
}

// DiskPlan is the plan after EarlyPlan for overboot.root=ibft:N: the root
// is partition N of the iSCSI disk the firmware booted from, read-write,
// with no image and no overlay (iPXE's sanboot of a machine's
// copy-on-write disk gives each machine its own).
func DiskPlan(p boot.Params) []Step {
	mods := slices.Concat([]string{boot.ModuleIBFT}, boot.ModulesISCSI, []string{boot.ModuleExt4})
	init := p.InitPath()
	return []Step{
		LoadModules{Extra: mods, PhaseOf: PhaseDisk},
		Mkdir{Paths: []string{NewRoot}, PhaseOf: PhaseDisk},
		IBFTAttach{Dir: iscsi.IBFTDir, Partition: p.Root.Partition, Link: RootDevice},
		Mount{Source: RootDevice, Target: NewRoot, FSType: "ext4", PhaseOf: PhaseDisk},
		HandOverNetwork{Keep: true},
		CheckInit{Root: NewRoot, Init: init},
		SwitchRoot{Root: NewRoot, Init: init},
	}
}

// tmpfsSize writes a boot.Size the way tmpfs's size= option reads it.
func tmpfsSize(s boot.Size) string {
	if s.Percent != 0 {
		return fmt.Sprintf("%d%%", s.Percent)
	}
	return fmt.Sprintf("%d", s.Bytes)
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// RedactURL hides a URL's last path element, which for a boot document or
// a report URL is a token, any query, and any user name and password. It
// is the agent's one redactor for URLs it shows or reports.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if i := strings.LastIndex(u.Path, "/"); i >= 0 && i < len(u.Path)-1 {
		u.Path = u.Path[:i+1] + "..."
	}
	u.RawPath = ""
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}

// FormatPlan prints steps one per line, grouped by phase, for -dry-run.
func FormatPlan(steps []Step) string {
	var b strings.Builder
	var last Phase
	for _, s := range steps {
		if s.Phase() != last {
			fmt.Fprintf(&b, "# %s\n", s.Phase())
			last = s.Phase()
		}
		fmt.Fprintf(&b, "%s\n", s)
	}
	return b.String()
}

// deferred is boot.ModulesDeferred minus those the command line asks for:
// the modules phase skips them (loading ext4 alone costs a noticeable part
// of a second under emulation) and the iSCSI steps load them when needed.
func deferred(asked []string) []string {
	var out []string
	for _, m := range boot.ModulesDeferred {
		if !slices.Contains(asked, m) {
			out = append(out, m)
		}
	}
	return out
}
