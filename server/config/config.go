package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
)

// Defaults.
const (
	DefaultISCSI   = "127.0.0.1:3260"
	DefaultListen  = "127.0.0.1:8080"
	DefaultData    = "/var/lib/overboot"
	DefaultProfile = "default" // the profile of machines the file does not name
	// DefaultTFTPRoot is where Debian's ipxe package puts undionly.kpxe,
	// ipxe.efi and snponly.efi.
	DefaultTFTPRoot = "/usr/lib/ipxe"
	// DefaultShim is Debian's Microsoft-signed shim (package
	// shim-signed), DefaultGRUBNet Debian's signed GRUB netboot image
	// (grub-efi-amd64-signed): the Secure Boot path serves them as they
	// are.
	DefaultShim    = "/usr/lib/shim/shimx64.efi.signed"
	DefaultGRUBNet = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	// DefaultMokManager is shim's signed MokManager (shim-signed).
	DefaultMokManager = "/usr/lib/shim/mmx64.efi.signed"
)

// Config is a parsed, validated configuration.
type Config struct {
	File   string
	Name   string // this server among those sharing the store; "" = the host's name
	Listen string // host:port
	Data   string // store directory
	URL    string // base URL machines reach the server at; "" = from each request's Host
	ISCSI  string // iSCSI listen address (host:port)
	Portal string // iSCSI address machines use; "" = the HTTP host with ISCSI's port
	// Store is the PostgreSQL store's connection string, without a
	// password ("" = SQLite in Data); StorePasswordFile the file with
	// its password ("" = the PG environment).
	Store             string
	StorePasswordFile string
	// ISCSILoginTimeout, ISCSIPerAddress and ISCSIConnections bound what
	// peers that have not logged in can hold: how long, how many
	// connections per address, how many in all (0 = the target's
	// defaults: 5s, 8, 1024).
	ISCSILoginTimeout time.Duration
	ISCSIPerAddress   int
	ISCSIConnections  int
	// TFTP is where the TFTP server for the iPXE binaries listens
	// ("" = none); TFTPRoot the directory it serves (copied into
	// DATA/tftp at start: Debian's ipxe.efi is a symlink out of it).
	TFTP     string
	TFTPRoot string
	// Shim and GRUBNet are the signed shim and GRUB netboot image of
	// the Secure Boot path (shim, grub-net; defaults DefaultShim and
	// DefaultGRUBNet), copied into DATA/tftp as shimx64.efi and
	// grubx64.efi when a profile has secure-boot.
	Shim    string
	GRUBNet string
	// MokManager is shim's MokManager (mok-manager; default
	// DefaultMokManager, "" for none), copied as mmx64.efi beside them:
	// shim starts it when a machine owner key waits to be enrolled.
	MokManager string
	// ProxyDHCP names the interface overboot answers PXE clients on
	// (ProxyDHCP: it never hands out addresses; the site's DHCP server
	// does). "" = none.
	ProxyDHCP string
	// QuietRA names the interface overboot answers IPv6 router
	// solicitations on with an advertisement that configures nothing
	// (package server/ra); "" none.
	QuietRA string
	// DHCP names the interface overboot's own DHCP server gives
	// addresses on, for isolated networks (one or the other per
	// interface); its pool, router, DNS and lease time.
	DHCP       string
	DHCPStart  netip.Addr
	DHCPEnd    netip.Addr
	DHCPRouter netip.Addr
	DHCPDNS    []netip.Addr
	DHCPLease  time.Duration
	// PendingTTL is how long a request for approval that is not
	// repeated is kept (pending-ttl, default DefaultPendingTTL);
	// ForgetAfter how long an admission a request granted itself (open,
	// open-insecure, login) is kept after its machine last booted, when
	// the machine holds no disk of that profile (forget-after, default
	// DefaultForgetAfter; Never keeps them).
	PendingTTL  time.Duration
	ForgetAfter time.Duration
	// Status says who may read the status page: StatusToken (default:
	// an admin token of any scope, or a session signed in with one) or
	// StatusPublic (anyone who reaches the server).
	Status string
	// DHCPv6 names the interface overboot's DHCPv6 server (RFC 8415, boot
	// URL option 59 of RFC 5970) answers on; its pool within one /64,
	// lease time and DNS; URL6 the server's address over IPv6 for the
	// URLs it hands out (default url).
	DHCPv6      string
	DHCPv6Start netip.Addr
	DHCPv6End   netip.Addr
	DHCPv6Lease time.Duration
	DHCPv6DNS   []netip.Addr
	URL6        string
	// Peers are other servers' base URLs, asked in order for a blob this
	// one lacks; Origin one more asked after them ("" = none).
	Peers  []string
	Origin string
	// Mirrors are the base URLs of other servers or HTTP caches serving
	// the same /blobs/sha256/ and /verity/sha256/ paths: boot documents
	// and scripts list each artifact at this server, then at each mirror,
	// in this order (at most boot.MaxMirrors).
	Mirrors []string
	// Cache is the base URL of an HTTP cache in front of the servers,
	// listed before this server for what is named by digest ("" = none).
	Cache string
	// TLSListen is where HTTPS is served ("" = none); TLSURL how machines
	// reach it ("" = url's host, or the request's, with TLSListen's
	// port). TLSCert and TLSKey are the site's own certificate and key
	// (files; the key 0600); without them the server's site CA in
	// DATA/tls signs one for TLSNames and the hosts of url and tls-url.
	TLSListen string
	TLSURL    string
	TLSCert   string
	TLSKey    string
	TLSNames  []string
	// Lines are the lines [server] keys are set at.
	Lines map[string]int

	Profiles map[string]*Profile
	Machines map[string]*Machine // by MAC in canonical form (aa:bb:cc:dd:ee:ff)
	UUIDs    map[string]*Machine // [machine UUID] sections, by lowercase SMBIOS UUID
	Subnets  []*Subnet           // [subnet CIDR] sections, in file order
	Selects  []*Select           // [select NAME] sections, in file order
}

// Sources are the base URLs a missing blob is fetched from, in order:
// Peers, then Origin.
func (c *Config) Sources() []string {
	if c.Origin == "" {
		return c.Peers
	}
	return append(slices.Clip(c.Peers), c.Origin)
}

// Subnet gives the machines of an IP prefix a profile.
type Subnet struct {
	Prefix  netip.Prefix
	Line    int
	Profile string
}

// Select gives a profile to the machines that match all of its keys (a
// key lists values, any of which matches).
type Select struct {
	Name     string
	Line     int
	Profile  string
	Arch     []string // iPXE's ${buildarch}: i386, x86_64, arm64, ...
	Platform []string // iPXE's ${platform}: pcbios, efi
	Hostname []string // shell patterns (path.Match): lab-*
	Label    []string // labels of the machine's [machine] section
}

// Profile says how a machine boots.
type Profile struct {
	Name string
	Line int
	// Lines are the lines its keys are set at, for errors about a key.
	Lines map[string]int

	// Artifacts: a store name, sha256:HEX, or an absolute file path.
	Kernel, Initramfs, Root string
	// RootNFS is root = nfs://HOST/EXPORT instead of Root: an NFS export
	// as the lower, with NFSVersion and NFSOptions from lower-nfs (use
	// NFSLower, which joins them).
	RootNFS    *boot.NFSSource
	NFSVersion string
	NFSOptions []string

	UpperSize  boot.Size
	LowerMode  boot.LowerMode // lower-mode: ram (default), lazy or fill
	LowerCache int64          // lower-cache: the keeper's RAM cache in lazy mode (bytes)
	// ISCSIRecovery (iscsi-recovery) is how long the kernel holds an
	// iSCSI session's I/O while the keeper logs a failed connection in
	// again (overboot.iscsi.recovery; 0: the agent's default, 120s).
	ISCSIRecovery time.Duration
	Init          string
	// LowerTLS (lower-tls): the image and its tree come from this
	// server over HTTPS (the server's tls-listen); HTTP caches and
	// mirrors are not listed, https mirrors are.
	LowerTLS      bool
	OnFail        boot.Action
	OnFailDelay   time.Duration
	FetchAttempts int
	Cmdline       []string // extra kernel arguments (never overboot.*)

	// Upper is "tmpfs" (default) or "iscsi": the machine's private disk,
	// created (UpperDiskSize, ext4) on its first boot and kept.
	Upper         string
	UpperDiskSize int64

	// Sanboot, when set, is a raw disk image (absolute path) that machines
	// of this profile boot whole with iPXE's sanboot: each machine gets a
	// private copy-on-write view of it over iSCSI. Such a profile has none
	// of the keys above.
	Sanboot string

	// Enroll says who may boot the profile (default open; a profile with
	// a private disk must say).
	Enroll Enroll
	// Quotas: machines (admitted to the profile or asking for it), disks
	// and their total bytes. 0 = the default (DefaultMaxMachines,
	// DefaultMaxDisks, no bound on bytes: max-disks bounds them),
	// Unlimited = no bound, said aloud.
	MaxMachines  int
	MaxDisks     int
	MaxDiskBytes int64

	// Files is a directory of templates rendered per machine into its
	// root (server/identity), e.g. DIR/etc/motd.d/lab.
	Files string

	// Menu lists other profiles offered as entries of this profile's boot
	// menu (a login profile always has a menu, with a login item first).
	Menu        []string
	MenuTimeout time.Duration // default DefaultMenuTimeout; then MenuDefault boots
	MenuDefault string        // "login" or one of Menu; default the first item
	// Login (login = ipxe | console) says where a login profile asks for
	// the username and password: iPXE's form at the boot menu (the
	// default), or the agent on the console (LoginConsole). The Secure
	// Boot path, which runs no iPXE, always asks on the console.
	Login string
	// SecureBoot (secure-boot = yes): its x86-64 UEFI machines boot
	// Debian's signed chain, shim then GRUB then a signed kernel,
	// instead of iPXE.
	SecureBoot bool
	// TPMFirstUse (tpm-first-use = yes): under enroll = tpm, the first
	// TPM (EK) a machine shows is pinned without an administrator (trust
	// on first use); default no: each EK waits for approval.
	TPMFirstUse bool
}

// Enroll is a profile's enrolment policy.
type Enroll string

// Enrolment policies.
const (
	// EnrollOpen: any machine that matches boots the profile. Refused for
	// a profile with a private disk: naming a MAC would hand out its disk.
	EnrollOpen Enroll = "open"
	// EnrollOpenInsecure: open, with private disks, said explicitly (a
	// test rig on a trusted network); the server warns at start.
	EnrollOpenInsecure Enroll = "open-insecure"
	// EnrollApprove: an unknown machine waits, pending, until an
	// administrator approves it; the approval pins the address it asked
	// from.
	EnrollApprove Enroll = "approve"
	// EnrollLogin: a boot menu asks for a username and a password; the
	// user's own disk is attached with a CHAP secret new at every login.
	EnrollLogin Enroll = "login"
	// EnrollTPM: the machine proves, with its TPM, what it booted (the
	// Secure Boot path measures it) before its document, sealed to that
	// TPM, is handed out; the TPM's EK is approved by an administrator
	// (or pinned at first use, TPMFirstUse).
	EnrollTPM Enroll = "tpm"
)

// Where a login profile asks for the credentials (Profile.Login).
const (
	// LoginIPXE: iPXE's login form, at the boot menu (the default).
	LoginIPXE = "ipxe"
	// LoginConsole: the profile's kernel boots first, and the agent
	// asks on the console, then POSTs them to the server.
	LoginConsole = "console"
)

// ConsoleLogin reports whether the profile's machines asking through
// iPXE log in on the console (login = console) rather than in iPXE's form.
func (p *Profile) ConsoleLogin() bool { return p.Login == LoginConsole }

// Default quotas: every profile that records machines or makes disks is
// bounded unless its section says unlimited, so made-up MACs cannot grow
// the store or the disks without end.
const (
	DefaultMaxMachines = 1000
	DefaultMaxDisks    = 1000
	Unlimited          = -1
)

// MachinesQuota, DisksQuota and DiskBytesQuota are the profile's quotas
// with their defaults: 0 means no bound.
func (p *Profile) MachinesQuota() int { return quota(p.MaxMachines, DefaultMaxMachines) }

// DisksQuota: see MachinesQuota.
func (p *Profile) DisksQuota() int { return quota(p.MaxDisks, DefaultMaxDisks) }

// DiskBytesQuota: see MachinesQuota.
func (p *Profile) DiskBytesQuota() int64 { return int64(quota(int(p.MaxDiskBytes), 0)) }

func quota(n, def int) int {
	switch n {
	case 0:
		return def
	case Unlimited:
		return 0
	}
	return n
}

// DefaultMenuTimeout is how long a menu waits before its default.
const DefaultMenuTimeout = 10 * time.Second

// LineOf is the line key is set at in the profile's section, else the
// section's header line.
func (p *Profile) LineOf(key string) int {
	if n := p.Lines[key]; n > 0 {
		return n
	}
	return p.Line
}

// PrivateDisk reports whether the profile gives each machine or user a
// disk of its own.
func (p *Profile) PrivateDisk() bool { return p.Upper == "iscsi" || p.Sanboot != "" }

// Policy is the profile's enrolment policy with its default.
func (p *Profile) Policy() Enroll {
	if p.Enroll == "" {
		return EnrollOpen
	}
	return p.Enroll
}

// HasMenu reports whether the profile's script is a menu.
func (p *Profile) HasMenu() bool { return p.Policy() == EnrollLogin || len(p.Menu) > 0 }

// Machine is a known machine, named by MAC or by SMBIOS UUID.
type Machine struct {
	MAC      net.HardwareAddr // nil for a [machine UUID] section
	UUID     string
	Line     int
	Profile  string // "" = chosen by the other rules (subnet, select, default)
	Hostname string
	Labels   []string
	IP       netip.Addr // reserved by overboot's own DHCP server (full mode); [machine MAC] only
	// Lines are the lines its keys are set at.
	Lines map[string]int
}

// Name is how the config names the machine.
func (m *Machine) Name() string {
	if m.MAC != nil {
		return m.MAC.String()
	}
	return m.UUID
}

// Error is a configuration error at a line ("FILE:LINE: reason").
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}
func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(path, f)
}

// Default is the configuration without a file.
func Default() *Config {
	return &Config{File: "(defaults)", Listen: DefaultListen, ISCSI: DefaultISCSI, Data: DefaultData, TFTPRoot: DefaultTFTPRoot, Shim: DefaultShim, GRUBNet: DefaultGRUBNet, MokManager: DefaultMokManager, Lines: map[string]int{}, Profiles: map[string]*Profile{}, Machines: map[string]*Machine{}, UUIDs: map[string]*Machine{}}
}

// Parse reads a configuration; name is used in error messages.
func Parse(name string, r io.Reader) (*Config, error) {
	c := Default()
	c.File = name
	blocks, errs := lex(name, r)
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &Error{name, line, fmt.Errorf(format, args...)})
	}
	for _, b := range blocks {
		var set func(k, v string) error
		var lines map[string]int
		switch {
		case b.kind == "server" && b.arg == "":
			set, lines = c.setServer, c.Lines
		case b.kind == "profile" && b.arg != "":
			if !validName(b.arg) {
				fail(b.line, "profile name %q: use letters, digits, '.', '_' and '-'", b.arg)
				continue
			}
			prof := &Profile{Name: b.arg, Line: b.line, Lines: map[string]int{}}
			c.Profiles[b.arg] = prof
			set, lines = prof.set, prof.Lines
		case b.kind == "machine" && uuidRE.MatchString(strings.ToLower(b.arg)):
			u := strings.ToLower(b.arg)
			if m, dup := c.UUIDs[u]; dup {
				fail(b.line, "machine %s again (first at line %d)", u, m.Line)
				continue
			}
			mach := &Machine{UUID: u, Line: b.line, Lines: map[string]int{}}
			c.UUIDs[u] = mach
			set, lines = mach.set, mach.Lines
		case b.kind == "machine" && b.arg != "":
			mac, err := boot.ParseMAC(b.arg)
			if err != nil {
				fail(b.line, "machine %q: want a MAC address like 52:54:00:12:34:56 or an SMBIOS UUID", b.arg)
				continue
			}
			if m, dup := c.Machines[mac.String()]; dup {
				fail(b.line, "machine %s again (first at line %d)", mac, m.Line)
				continue
			}
			mach := &Machine{MAC: mac, Line: b.line, Lines: map[string]int{}}
			c.Machines[mac.String()] = mach
			set, lines = mach.set, mach.Lines
		case b.kind == "subnet" && b.arg != "":
			pfx, err := netip.ParsePrefix(b.arg)
			if err != nil || pfx != pfx.Masked() {
				fail(b.line, "subnet %q: want a network like 192.0.2.0/24 (host bits zero)", b.arg)
				continue
			}
			for _, o := range c.Subnets {
				if o.Prefix == pfx {
					fail(b.line, "subnet %s again (first at line %d)", pfx, o.Line)
				}
			}
			sub := &Subnet{Prefix: pfx, Line: b.line}
			c.Subnets = append(c.Subnets, sub)
			set = sub.set
		case b.kind == "select" && b.arg != "":
			if !validName(b.arg) {
				fail(b.line, "select name %q: use letters, digits, '.', '_' and '-'", b.arg)
				continue
			}
			sel := &Select{Name: b.arg, Line: b.line}
			c.Selects = append(c.Selects, sel)
			set = sel.set
		default:
			fail(b.line, "unknown section [%s]: want [server], [profile NAME], [machine MAC|UUID], [subnet CIDR] or [select NAME]", strings.TrimSpace(b.kind+" "+b.arg))
			continue
		}
		for _, e := range b.entries {
			if err := set(e.key, e.value); err != nil {
				fail(e.line, "%s: %v", e.key, err)
			}
			if lines != nil {
				lines[e.key] = e.line
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, c.validate()...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// nameList reads "a, b, c" of names.
func nameList(v string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if !validName(e) {
			return nil, fmt.Errorf("%q: want names (letters, digits, '.', '_', '-') separated by commas", v)
		}
		out = append(out, strings.ToLower(e))
	}
	return out, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// validate checks what spans sections.
func (c *Config) validate() []error {
	var errs []error
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.Profiles[n]
		if p.PrivateDisk() && p.Policy() == EnrollOpen {
			what, key := "upper = iscsi", "upper"
			if p.Sanboot != "" {
				what, key = "sanboot", "sanboot"
			}
			errs = append(errs, &Error{c.File, p.LineOf(key), fmt.Errorf("profile %s: %s gives each machine a private disk, and enroll = open would hand it to anyone who names a MAC address: set enroll = login or approve (or open-insecure on a network you trust)", n, what)})
		}
		for _, e := range p.Menu {
			q, ok := c.Profiles[e]
			switch {
			case !ok:
				errs = append(errs, &Error{c.File, p.LineOf("menu"), fmt.Errorf("profile %s: menu entry %s: no [profile %s]", n, e, e)})
			case e == n:
				errs = append(errs, &Error{c.File, p.LineOf("menu"), fmt.Errorf("profile %s: menu entry %s: a profile cannot be its own entry", n, e)})
			case q.HasMenu():
				errs = append(errs, &Error{c.File, p.LineOf("menu"), fmt.Errorf("profile %s: menu entry %s has a menu itself: menus do not nest", n, e)})
			}
		}
		if p.MenuDefault != "" {
			ok := (p.MenuDefault == "login" && p.Policy() == EnrollLogin) || slices.Contains(p.Menu, p.MenuDefault)
			if !ok {
				errs = append(errs, &Error{c.File, p.LineOf("menu-default"), fmt.Errorf("profile %s: menu-default %s is not an item of its menu", n, p.MenuDefault)})
			}
		}
		if (p.MenuTimeout != 0 || p.MenuDefault != "") && !p.HasMenu() {
			menuKey := "menu-default"
			if p.MenuTimeout != 0 {
				menuKey = "menu-timeout"
			}
			errs = append(errs, &Error{c.File, p.LineOf(menuKey), fmt.Errorf("profile %s: menu-timeout and menu-default need a menu (menu = ... or enroll = login)", n)})
		}
		if p.Policy() == EnrollTPM && !p.SecureBoot {
			errs = append(errs, &Error{c.File, p.LineOf("enroll"), fmt.Errorf("profile %s: enroll = tpm needs secure-boot = yes: only the Secure Boot path (shim, GRUB) measures the kernel, initramfs and command line the TPM attests", n)})
		}
		if p.TPMFirstUse && p.Policy() != EnrollTPM {
			errs = append(errs, &Error{c.File, p.LineOf("tpm-first-use"), fmt.Errorf("profile %s: tpm-first-use applies to enroll = tpm only", n)})
		}
		if p.Login != "" && p.Policy() != EnrollLogin {
			errs = append(errs, &Error{c.File, p.LineOf("login"), fmt.Errorf("profile %s: login = %s needs enroll = login", n, p.Login)})
		}
		if p.Sanboot != "" && p.ConsoleLogin() {
			errs = append(errs, &Error{c.File, p.LineOf("login"), fmt.Errorf("profile %s: login = console asks in the agent, which a sanboot does not run: sanboot profiles log in with iPXE's form (login = ipxe)", n)})
		}
		if p.Sanboot != "" && p.SecureBoot {
			errs = append(errs, &Error{c.File, p.LineOf("secure-boot"), fmt.Errorf("profile %s: sanboot needs iPXE, which is unsigned: it cannot take the Secure Boot path (secure-boot = yes)", n)})
		}
		if p.Sanboot != "" {
			if extra := p.notForSanboot(); len(extra) > 0 {
				errs = append(errs, &Error{c.File, p.LineOf(extra[0]), fmt.Errorf("profile %s: sanboot boots a whole disk; %s do not apply", n, strings.Join(extra, ", "))})
			}
			continue
		}
		errs = append(errs, c.validateNFS(p)...)
		if p.Kernel == ImageRef && p.Initramfs == "" {
			p.Initramfs = ImageRef // the initramfs of the image's own modules
		}
		if err := p.checkImageRefs(); err != nil {
			errs = append(errs, &Error{c.File, p.LineOf("kernel"), fmt.Errorf("profile %s: %w", n, err)})
		}
		var missing []string
		for _, kv := range [][2]string{{"kernel", p.Kernel}, {"initramfs", p.Initramfs}, {"root", p.Root}} {
			if kv[1] == "" && (kv[0] != "root" || p.RootNFS == nil) {
				missing = append(missing, kv[0])
			}
		}
		if len(missing) > 0 {
			errs = append(errs, &Error{c.File, p.Line, fmt.Errorf("profile %s: missing %s", n, strings.Join(missing, ", "))})
		}
	}
	errs = append(errs, c.validateTLS()...)
	if c.StorePasswordFile != "" && c.Store == "" {
		errs = append(errs, &Error{c.File, 0, errors.New("store-password-file without store in [server]: the password is for a PostgreSQL store; SQLite needs none")})
	}
	if c.Cache != "" && (c.Cache == c.URL || slices.Contains(c.Mirrors, c.Cache)) {
		errs = append(errs, &Error{c.File, 0, fmt.Errorf("cache: %s is also this server's url or a mirror: list it once", c.Cache)})
	}
	if c.URL != "" && slices.Contains(c.Mirrors, c.URL) {
		errs = append(errs, &Error{c.File, 0, fmt.Errorf("mirrors: %s is this server's url: list the others", c.URL)})
	}
	if c.ProxyDHCP != "" && c.URL == "" {
		errs = append(errs, &Error{c.File, 0, errors.New("proxy-dhcp needs url in [server]: the address iPXE is sent to")})
	}
	if c.QuietRA != "" && c.QuietRA == c.DHCPv6 {
		errs = append(errs, &Error{c.File, 0, fmt.Errorf("quiet-ra and dhcpv6 on the same interface %s: dhcpv6 needs the network's router advertisements with the M flag, and quiet-ra's say there is no DHCPv6", c.QuietRA)})
	}
	switch {
	case c.DHCP != "" && c.DHCP == c.ProxyDHCP:
		errs = append(errs, &Error{c.File, 0, fmt.Errorf("dhcp and proxy-dhcp on the same interface %s: one or the other", c.DHCP)})
	case c.DHCP != "" && (c.URL == "" || !c.DHCPStart.IsValid()):
		errs = append(errs, &Error{c.File, 0, errors.New("dhcp needs url and dhcp-range in [server]")})
	case c.DHCP == "" && (c.DHCPStart.IsValid() || c.DHCPRouter.IsValid() || len(c.DHCPDNS) > 0 || c.DHCPLease != 0):
		errs = append(errs, &Error{c.File, 0, errors.New("dhcp-range, dhcp-router, dhcp-dns and dhcp-lease need dhcp = IFACE in [server]")})
	}
	switch {
	case c.DHCPv6 != "" && (!c.DHCPv6Start.IsValid() || (c.URL == "" && c.URL6 == "")):
		errs = append(errs, &Error{c.File, 0, errors.New("dhcpv6 needs dhcpv6-range and url6 (or url) in [server]")})
	case c.DHCPv6 == "" && (c.DHCPv6Start.IsValid() || c.DHCPv6Lease != 0 || len(c.DHCPv6DNS) > 0):
		errs = append(errs, &Error{c.File, 0, errors.New("dhcpv6-range, dhcpv6-lease and dhcpv6-dns need dhcpv6 = IFACE in [server]")})
	}
	macs := make([]string, 0, len(c.Machines))
	for m := range c.Machines {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	ms := make([]*Machine, 0, len(macs)+len(c.UUIDs))
	for _, mac := range macs {
		ms = append(ms, c.Machines[mac])
	}
	for _, u := range slices.Sorted(maps.Keys(c.UUIDs)) {
		ms = append(ms, c.UUIDs[u])
	}
	for _, m := range ms {
		if _, ok := c.Profiles[m.Profile]; m.Profile != "" && !ok {
			errs = append(errs, &Error{c.File, cmp.Or(m.Lines["profile"], m.Line), fmt.Errorf("machine %s: no [profile %s]", m.Name(), m.Profile)})
		}
	}
	for _, sn := range c.Subnets {
		if _, ok := c.Profiles[sn.Profile]; !ok {
			errs = append(errs, &Error{c.File, sn.Line, fmt.Errorf("subnet %s: no [profile %s]", sn.Prefix, cmp.Or(sn.Profile, "(profile = missing)"))})
		}
	}
	for _, sl := range c.Selects {
		if _, ok := c.Profiles[sl.Profile]; !ok {
			errs = append(errs, &Error{c.File, sl.Line, fmt.Errorf("select %s: no [profile %s]", sl.Name, cmp.Or(sl.Profile, "(profile = missing)"))})
		}
		if len(sl.Arch)+len(sl.Platform)+len(sl.Hostname)+len(sl.Label) == 0 {
			errs = append(errs, &Error{c.File, sl.Line, fmt.Errorf("select %s: matches every machine: give arch, platform, hostname or label (the default profile is for everyone else)", sl.Name)})
		}
	}
	return errs
}

// NFSLower is the profile's NFS lower (root = nfs://... with lower-nfs's
// options), or nil.
func (p *Profile) NFSLower() *boot.NFSSource {
	if p.RootNFS == nil {
		return nil
	}
	n := *p.RootNFS
	n.Version, n.Options = p.NFSVersion, slices.Clone(p.NFSOptions)
	return &n
}

// validateNFS checks the keys that go with an NFS root, or not.
func (c *Config) validateNFS(p *Profile) []error {
	var errs []error
	if p.RootNFS == nil {
		if p.NFSVersion != "" || len(p.NFSOptions) > 0 {
			errs = append(errs, &Error{c.File, p.LineOf("lower-nfs"), fmt.Errorf("profile %s: lower-nfs needs root = nfs://HOST/EXPORT", p.Name)})
		}
		return errs
	}
	// An NFS tree has no digest and no dm-verity tree: the server cannot
	// check what an NFS server answers, nor read it on demand.
	for _, k := range []struct {
		key string
		set bool
	}{{"lower-mode", p.LowerMode != ""}, {"lower-cache", p.LowerCache != 0}, {"lower-tls", p.LowerTLS}} {
		if k.set {
			errs = append(errs, &Error{c.File, p.LineOf(k.key), fmt.Errorf("profile %s: %s does not apply to root = nfs://...: the NFS tree is mounted as it is, with no image to download, verify or read through dm-verity", p.Name, k.key)})
		}
	}
	if err := p.NFSLower().Validate(); err != nil {
		errs = append(errs, &Error{c.File, p.LineOf("root"), fmt.Errorf("profile %s: root: %w", p.Name, err)})
	}
	return errs
}

// ImageRef, as a profile's kernel or initramfs, names the root image's
// own (see mkimage/imagekernel): resolved from the root's name when a
// machine boots.
const ImageRef = "image"

// checkImageRefs checks kernel = image and initramfs = image: the root
// must be a name (a path or a digest carries no kernel), and an image's
// initramfs goes only with its kernel.
func (p *Profile) checkImageRefs() error {
	if p.Kernel != ImageRef && p.Initramfs != ImageRef {
		return nil
	}
	if p.Root == ImageRef {
		return errors.New("root = image: the root is the image; name it (a store name)")
	}
	if p.RootNFS != nil {
		return errors.New("kernel = image takes the kernel published with a root image: an NFS root has none")
	}
	if p.Kernel != ImageRef {
		return errors.New("initramfs = image goes with kernel = image: the image's initramfs holds the modules of its own kernel")
	}
	if p.Root != "" && (strings.HasPrefix(p.Root, "/") || strings.HasPrefix(p.Root, "sha256:")) {
		return fmt.Errorf("kernel = image takes the kernel published with the root image: root %s must be a store name (overboot image import, mkimage root --store DIR --name NAME)", p.Root)
	}
	return nil
}

// notForSanboot lists the keys a sanboot profile has set but cannot use.
func (p *Profile) notForSanboot() []string {
	var set []string
	for _, kv := range []struct {
		key string
		set bool
	}{
		{"kernel", p.Kernel != ""}, {"initramfs", p.Initramfs != ""}, {"root", p.Root != "" || p.RootNFS != nil}, {"lower-nfs", p.NFSVersion != "" || len(p.NFSOptions) > 0},
		{"upper", p.Upper != ""}, {"lower-mode", p.LowerMode != ""}, {"lower-cache", p.LowerCache != 0}, {"iscsi-recovery", p.ISCSIRecovery != 0}, {"upper-size", !p.UpperSize.IsZero()}, {"upper-disk-size", p.UpperDiskSize != 0},
		{"init", p.Init != ""}, {"onfail", p.OnFail != ""}, {"onfail-delay", p.OnFailDelay != 0},
		{"fetch-attempts", p.FetchAttempts != 0}, {"cmdline", len(p.Cmdline) > 0},
		{"menu", len(p.Menu) > 0}, {"files", p.Files != ""},
	} {
		if kv.set {
			set = append(set, kv.key)
		}
	}
	return set
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Defaults of [server] keys.
const (
	DefaultPendingTTL  = 24 * time.Hour
	DefaultForgetAfter = 30 * 24 * time.Hour
	// Never is forget-after = never.
	Never = time.Duration(-1)
	// StatusToken and StatusPublic are the values of status.
	StatusToken  = "token"
	StatusPublic = "public"
)

// parseDays reads a duration that may also be whole days: 30d.
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 || d > 100*365 {
			return 0, fmt.Errorf("%q: not a number of days", v)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// parseLease reads a DHCP lease time: 1m to 720h.
func parseLease(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute || d > 30*24*time.Hour {
		return 0, fmt.Errorf("%q: want a duration from 1m to 720h", v)
	}
	return d, nil
}

// parseAddrs reads a comma-separated list of IPv4 (or, with v6, IPv6)
// addresses.
func parseAddrs(v string, v6 bool) ([]netip.Addr, error) {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil || a.Is6() != v6 || a.Is4In6() {
			return nil, fmt.Errorf("%q: want %s addresses separated by commas", v, family)
		}
		out = append(out, a)
	}
	return out, nil
}

// LineOf is the line a [server] key is set at (0 when it is not).
func (c *Config) LineOf(key string) int { return c.Lines[key] }

// validateTLS checks the tls-* keys together.
func (c *Config) validateTLS() []error {
	var errs []error
	at := func(key string, format string, args ...any) {
		errs = append(errs, &Error{c.File, c.LineOf(key), fmt.Errorf(format, args...)})
	}
	if c.TLSListen == "" {
		for _, k := range []string{"tls-url", "tls-cert", "tls-key", "tls-names"} {
			if c.LineOf(k) > 0 {
				at(k, "%s without tls-listen in [server]: set tls-listen = HOST:PORT to serve HTTPS", k)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(c.Profiles)) {
			if p := c.Profiles[n]; p.LowerTLS {
				errs = append(errs, &Error{c.File, p.LineOf("lower-tls"), fmt.Errorf("profile %s: lower-tls = yes needs tls-listen in [server]", n)})
			}
		}
		return errs
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		k := "tls-cert"
		if c.TLSCert == "" {
			k = "tls-key"
		}
		at(k, "tls-cert and tls-key go together: the site's own certificate and its key, or neither (the server's site CA)")
	}
	if _, port, _ := net.SplitHostPort(c.TLSListen); c.TLSListen == c.Listen && port != "0" {
		at("tls-listen", "tls-listen %s is also listen: HTTPS needs an address of its own (firmware and boot loaders keep HTTP)", c.TLSListen)
	}
	if c.TLSCert == "" && len(c.CertNames()) == 0 {
		at("tls-listen", "tls-listen with the site CA needs the names machines reach the server at, for its certificate: set url, tls-url or tls-names")
	}
	return errs
}

// CertNames are what the site CA's server certificate is for: the hosts
// of tls-url, url and url6, then tls-names, each once.
func (c *Config) CertNames() []string {
	var names []string
	for _, u := range []string{c.TLSURL, c.URL, c.URL6} {
		if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
			names = append(names, pu.Hostname())
		}
	}
	var out []string
	for _, n := range append(names, c.TLSNames...) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// SecureBoot reports whether a profile takes the Secure Boot path, so
// the server serves the signed shim and GRUB.
func (c *Config) SecureBoot() bool {
	for _, p := range c.Profiles {
		if p.SecureBoot {
			return true
		}
	}
	return false
}
