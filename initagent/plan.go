package initagent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/initiator"
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
	PhaseAttest     Phase = boot.PhaseAttest     // the TPM proves what booted (overboot.attest)
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
	// ModulesDir holds the module files and modules.dep by kernel release.
	ModulesDir = "/" + boot.InitramfsModulesDir
	// ExtraModulesDir holds the lists of the server's driver segments.
	ExtraModulesDir = "/" + boot.InitramfsExtraModulesDir
	LowerDevice     = RunDir + "/lower.dev" // symlink to the lower's block device (iSCSI)
	UpperDevice     = RunDir + "/upper.dev" // symlink to the upper's block device (iSCSI)
	RootDevice      = RunDir + "/root.dev"  // symlink to the root partition (overboot.root)
	// SecurityFS is where the kernel shows the firmware's TPM event log
	// (tpm0/binary_bios_measurements), mounted for overboot.attest.
	SecurityFS = "/sys/kernel/security"
)

// Plan returns the steps of the boot the command line p describes, in
// order. It is the one place that decides what a boot does: the agent runs
// what it returns and overboot-init -dry-run prints it.
//
// Every boot starts with the early steps: the kernel's filesystems, the
// modules, the network. Then:
//   - a static command line (overboot.lower=): the root's layers, the
//     overlay and the hand-over, from the document the command line makes
//     (boot.Params.Document);
//   - a disk root (overboot.root=ibft:N): the firmware's iSCSI disk;
//   - document mode (overboot.doc=): the FetchDocument step, then what
//     the document decides. With doc nil the plan ends after FetchDocument;
//     once that step has run, Plan with its document returns the whole
//     plan, which begins with the same steps;
//   - attested document mode (overboot.attest=): the same with the Attest
//     step in FetchDocument's place: the TPM proves what booted, and the
//     document it opens plans the rest.
//   - console login (overboot.login=): the same with the ConsoleLogin
//     step in FetchDocument's place.
//
// doc is ignored outside the document modes. An invalid document is an
// error.
func Plan(p boot.Params, doc *boot.Document) ([]Step, error) {
	steps := earlySteps(p)
	switch {
	case !p.Root.IsZero():
		return append(steps, diskSteps(p)...), nil
	case p.Attest != "":
		steps = append(steps, Attest{URL: p.Attest, Attempts: p.FetchTries(), Stall: p.FetchStall()})
		if doc == nil {
			return steps, nil
		}
	case p.Login != "":
		steps = append(steps, ConsoleLogin{URL: p.Login, Attempts: p.FetchTries(), Stall: p.FetchStall()})
		if doc == nil {
			return steps, nil
		}
	case p.Doc == "":
		d := p.Document()
		doc = &d
	default:
		steps = append(steps, FetchDocument{URL: p.Doc, Attempts: p.FetchTries(), Stall: p.FetchStall()})
		if doc == nil {
			return steps, nil
		}
	}
	root, err := rootSteps(p, *doc)
	if err != nil {
		return nil, err
	}
	return append(steps, root...), nil
}

// NeedsDocument reports whether a plan stops at its FetchDocument,
// Attest or ConsoleLogin step: the rest depends on the document.
func NeedsDocument(steps []Step) bool {
	if len(steps) == 0 {
		return false
	}
	switch steps[len(steps)-1].(type) {
	case FetchDocument, Attest, ConsoleLogin:
		return true
	}
	return false
}

// earlySteps run before anything is known of the root.
func earlySteps(p boot.Params) []Step {
	steps := []Step{
		Mount{Source: "proc", Target: "/proc", FSType: "proc", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly},
		Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly},
	}
	if p.Attest != "" {
		// The firmware's TPM event log: TPMEventLog, securityfs.
		steps = append(steps, Mount{Source: "securityfs", Target: SecurityFS, FSType: "securityfs", Options: []string{"nosuid", "nodev", "noexec"}, PhaseOf: PhaseEarly})
	}
	return append(steps,
		Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Options: []string{"nosuid", "mode=0755"}, PhaseOf: PhaseEarly},
		Mount{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Options: []string{"nosuid", "nodev", "mode=0755"}, PhaseOf: PhaseEarly},
		Mkdir{Paths: []string{RunDir}, PhaseOf: PhaseEarly},
		LoadModules{ListFile: ModulesList, Extra: earlyModules(p), Skip: earlySkip(p), SegmentDir: ExtraModulesDir, Background: true},
		Network{Iface: p.Iface, Family: p.DHCPFamily(), Server: p.ServerAddr(), LinkTimeout: p.LinkWait(), DHCPTimeout: p.DHCPWait(), Attempts: p.DHCPTries()},
	)
}

// rootSteps are what the document (or the static command line) decides:
// the lower and upper layers, the overlay and the hand-over. A new kind of
// lower or upper is one more case in lowerSteps or upperSteps.
func rootSteps(p boot.Params, d boot.Document) ([]Step, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	lower, err := lowerSteps(p, d.Lower, d.Report)
	if err != nil {
		return nil, err
	}
	upper, err := upperSteps(p, d.Upper)
	if err != nil {
		return nil, err
	}
	steps := append([]Step{AwaitModules{PhaseOf: PhaseLower}}, lower...)
	steps = append(steps, upper...)
	init := d.InitPath()
	steps = append(steps,
		Mkdir{Paths: []string{NewRoot}, PhaseOf: PhaseOverlay},
		Mount{Source: "overlay", Target: NewRoot, FSType: "overlay",
			Options: overlayOptions(d.Lower), PhaseOf: PhaseOverlay},
	)
	if files := IdentityFiles(d.Identity); len(files) > 0 {
		steps = append(steps, WriteFiles{Root: NewRoot, Files: files})
	}
	steps = append(steps, HandOverNetwork{Keep: d.Lower.NFS != nil || d.Lower.ISCSI != nil || d.Upper.ISCSI != nil || d.Lower.HTTP != nil && d.Lower.HTTP.Mode.OnDemand()})
	var kept []string
	if d.Lower.ISCSI != nil {
		kept = append(kept, LowerDevice)
	}
	if d.Upper.ISCSI != nil {
		kept = append(kept, UpperDevice)
	}
	if len(kept) > 0 {
		steps = append(steps, Keep{Links: kept})
	}
	return append(steps,
		CheckInit{Root: NewRoot, Init: init},
		SwitchRoot{Root: NewRoot, Init: init},
	), nil
}

// lowerSteps mount the read-only image at LowerMount. report is the
// boot's report URL, where a lazy root's keeper reports its working set.
func lowerSteps(p boot.Params, l boot.Source, report string) ([]Step, error) {
	switch {
	case l.HTTP != nil && l.HTTP.Mode.OnDemand():
		h := l.HTTP
		v := h.Verity
		if v == nil {
			return nil, fmt.Errorf("lower.http: mode %s needs a dm-verity tree", h.Mode)
		}
		if _, err := lazyTarget(*h); err != nil {
			return nil, fmt.Errorf("lower.http: %w", err)
		}
		return []Step{
			LoadModules{Extra: slices.Clone(boot.ModulesLazyRoot), PhaseOf: PhaseLower},
			Mkdir{Paths: []string{LowerMount}, PhaseOf: PhaseLower},
			LazyAttach{Source: *h, Link: LowerDevice, CacheBytes: p.LowerCacheBytes(), Report: report},
			Mount{Source: LowerDevice, Target: LowerMount, FSType: "squashfs", Options: []string{"ro"}, PhaseOf: PhaseLower},
		}, nil
	case l.HTTP != nil:
		h := l.HTTP
		imgSize := "size=90%"
		if h.Size > 0 {
			// Room for the image and nothing else: tmpfs counts pages.
			imgSize = fmt.Sprintf("size=%d", roundUp(h.Size, 1<<20)+1<<20)
		}
		return []Step{
			Mkdir{Paths: []string{ImageDir, LowerMount}, PhaseOf: PhaseLower},
			Mount{Source: "tmpfs", Target: ImageDir, FSType: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=0700", imgSize}, PhaseOf: PhaseLower},
			Download{URL: h.URL, Mirrors: h.Mirrors, Digest: h.Digest, Size: h.Size, Dest: ImageFile, Attempts: p.FetchTries(), Stall: p.FetchStall()},
			LoopMount{File: ImageFile, Target: LowerMount, FSType: "squashfs"},
		}, nil
	case l.ISCSI != nil:
		src := l.ISCSI
		if src.Digest == "" {
			return nil, fmt.Errorf("lower.iscsi: a read-only lower needs a digest and a size to be verified")
		}
		return []Step{
			LoadModules{Extra: slices.Clone(boot.ModulesISCSI), PhaseOf: PhaseLower},
			Mkdir{Paths: []string{LowerMount}, PhaseOf: PhaseLower},
			ISCSIAttach{Source: *src, Link: LowerDevice, Recovery: p.ISCSIRecoveryTimeout(), PhaseOf: PhaseLower},
			VerifyDevice{Path: LowerDevice, Digest: src.Digest, Size: src.Size},
			Mount{Source: LowerDevice, Target: LowerMount, FSType: "squashfs", Options: []string{"ro"}, PhaseOf: PhaseLower},
		}, nil
	case l.NFS != nil:
		// No digest: what the NFS server answers is mounted as it is.
		return []Step{
			LoadModules{Extra: NFSModules(l.NFS.NFSVersion()), PhaseOf: PhaseLower},
			Mkdir{Paths: []string{LowerMount}, PhaseOf: PhaseLower},
			NFSMount{Source: *l.NFS, Target: LowerMount},
		}, nil
	}
	return nil, fmt.Errorf("lower layer: none in the boot document")
}

// overlayOptions are the overlay's mount options over the lower l. Over
// an NFS lower, overlayfs's own defaults hold (Debian 12's kernel: no
// index, no xino, no redirect_dir, no metacopy): a remote lower is
// accepted as it is, read-only; the options are spelled out so that a
// kernel built with other defaults does not try to encode NFS file
// handles into an index, or NFS's 64-bit inode numbers into xino.
func overlayOptions(l boot.Source) []string {
	opts := []string{"lowerdir=" + LowerMount, "upperdir=" + UpperDir, "workdir=" + WorkDir}
	if l.NFS != nil {
		opts = append(opts, "index=off", "xino=off")
	}
	return opts
}

// upperSteps make UpperDir and WorkDir on a writable layer at RWMount.
func upperSteps(p boot.Params, u boot.Upper) ([]Step, error) {
	switch {
	case u.Tmpfs != nil:
		size := u.Tmpfs.Size
		if size.IsZero() {
			size = boot.DefaultUpperSize
		}
		return []Step{
			Mkdir{Paths: []string{RWMount}, PhaseOf: PhaseUpper},
			Mount{Source: "tmpfs", Target: RWMount, FSType: "tmpfs", Options: []string{"mode=0755", "size=" + tmpfsSize(size)}, PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{UpperDir, WorkDir}, PhaseOf: PhaseUpper},
		}, nil
	case u.ISCSI != nil:
		return []Step{
			LoadModules{Extra: append(slices.Clone(boot.ModulesISCSI), boot.ModuleExt4), PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{RWMount}, PhaseOf: PhaseUpper},
			ISCSIAttach{Source: *u.ISCSI, Link: UpperDevice, Recovery: p.ISCSIRecoveryTimeout(), PhaseOf: PhaseUpper},
			// The overboot server formats the disks it creates; another
			// target's blank disk is formatted here.
			FormatBlank{Device: UpperDevice, Label: "overboot-upper"},
			Mount{Source: UpperDevice, Target: RWMount, FSType: "ext4", Options: []string{"noatime"}, PhaseOf: PhaseUpper},
			Mkdir{Paths: []string{UpperDir, WorkDir}, PhaseOf: PhaseUpper},
		}, nil
	}
	return nil, fmt.Errorf("upper layer: none in the boot document")
}

// diskSteps are the root for overboot.root=ibft:N: partition N of the
// iSCSI disk the firmware booted from, read-write, with no image and no
// overlay (iPXE's sanboot of a machine's copy-on-write disk gives each
// machine its own).
func diskSteps(p boot.Params) []Step {
	mods := slices.Concat([]string{boot.ModuleIBFT}, boot.ModulesISCSI, []string{boot.ModuleExt4})
	init := p.InitPath()
	return []Step{
		AwaitModules{PhaseOf: PhaseDisk},
		LoadModules{Extra: mods, PhaseOf: PhaseDisk},
		Mkdir{Paths: []string{NewRoot}, PhaseOf: PhaseDisk},
		IBFTAttach{Dir: initiator.IBFTDir, Partition: p.Root.Partition, Link: RootDevice, Recovery: p.ISCSIRecoveryTimeout()},
		Mount{Source: RootDevice, Target: NewRoot, FSType: "ext4", PhaseOf: PhaseDisk},
		HandOverNetwork{Keep: true},
		Keep{Links: []string{RootDevice}},
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

// earlyModules are the modules the early steps load besides the
// initramfs's list: those the command line asks for and, for a static
// command line that reads its image on demand, boot.ModulesLazyRoot, so
// they load while DHCP runs (a boot document says so only later; the
// server asks for them on the command line instead).
func earlyModules(p boot.Params) []string {
	mods := slices.Clone(p.Modules)
	if p.Lower != "" && p.LowerMode.OnDemand() {
		for _, m := range boot.ModulesLazyRoot {
			if !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
	}
	return mods
}

// earlySkip is what the early steps leave out of the initramfs's list:
// the deferred modules, and loop for a static command line that reads its
// image on demand (no file to loop-mount).
func earlySkip(p boot.Params) []string {
	skip := deferred(earlyModules(p))
	if p.Lower != "" && p.LowerMode.OnDemand() {
		skip = append(skip, "loop")
	}
	return skip
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
