package boot

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// iPXE scripts. iPXE splits a script line on whitespace, with no quoting (the
// Debian 2019 build; src/core/exec.c split_command), treats a token starting
// with '#' as a comment, "||", "&&" and ";" as command separators, and expands
// "${...}" repeatedly until none is left. There is no escape, so values that
// would be misread are refused rather than mangled.

// Defaults for script rendering.
const (
	DefaultScriptAttempts   = 3
	DefaultScriptRetryDelay = 3 * time.Second
)

// KernelScript is an iPXE script that loads a kernel and its initrds over
// HTTP and boots them. Every download is retried; when all attempts fail the
// script exits non-zero so the firmware falls through to its next boot device.
type KernelScript struct {
	Comment    string        // one line shown at the top, e.g. the machine and profile
	Kernel     string        // kernel URL
	Initrds    []string      // initrd URLs, in order
	Args       []string      // kernel command-line arguments
	Attempts   int           // default 3
	RetryDelay time.Duration // whole seconds; default 3s
	// ForgetLogin clears the password iPXE's login form left in its
	// settings (the script answers a login).
	ForgetLogin bool
}

// Render returns the script text.
func (k KernelScript) Render() (string, error) {
	var errs []error
	if err := scriptURL("kernel", k.Kernel); err != nil {
		errs = append(errs, err)
	}
	if len(k.Initrds) == 0 {
		errs = append(errs, errors.New("ipxe script: no initrd"))
	}
	for i, u := range k.Initrds {
		if err := scriptURL(fmt.Sprintf("initrd %d", i), u); err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range k.Args {
		if err := scriptToken(a); err != nil {
			errs = append(errs, fmt.Errorf("ipxe script: kernel argument %q: %w", a, err))
		}
	}
	if err := checkComment(k.Comment); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	attempts := orInt(k.Attempts, DefaultScriptAttempts)
	delay := int(orDur(k.RetryDelay, DefaultScriptRetryDelay).Round(time.Second) / time.Second)

	var b strings.Builder
	b.WriteString("#!ipxe\n")
	if k.Comment != "" {
		fmt.Fprintf(&b, "# overboot: %s\n", k.Comment)
	}
	if k.ForgetLogin {
		b.WriteString("clear password ||\n")
	}
	b.WriteString("set overboot-try:int32 0\n")
	b.WriteString(":overboot-retry\n")
	fmt.Fprintf(&b, "iseq ${overboot-try} %d && goto overboot-failed ||\n", attempts)
	b.WriteString("inc overboot-try\n")
	fmt.Fprintf(&b, "echo overboot: loading kernel and initrd, attempt ${overboot-try} of %d\n", attempts)
	b.WriteString("imgfree overboot-kernel ||\n")
	names := make([]string, len(k.Initrds))
	for i := range k.Initrds {
		names[i] = fmt.Sprintf("overboot-initrd%d", i)
		fmt.Fprintf(&b, "imgfree %s ||\n", names[i])
	}
	// initrd=NAME tells an EFI-stub kernel which images are its initrds;
	// BIOS kernels get every loaded initrd and ignore it.
	kargs := []string{"kernel", "--name", "overboot-kernel", k.Kernel}
	for _, n := range names {
		kargs = append(kargs, "initrd="+n)
	}
	kargs = append(kargs, k.Args...)
	fmt.Fprintf(&b, "%s || goto overboot-again\n", strings.Join(kargs, " "))
	for i, u := range k.Initrds {
		fmt.Fprintf(&b, "initrd --name %s %s || goto overboot-again\n", names[i], u)
	}
	b.WriteString("echo overboot: booting\n")
	b.WriteString("boot || goto overboot-again\n")
	b.WriteString(":overboot-again\n")
	fmt.Fprintf(&b, "sleep %d ||\n", delay)
	b.WriteString("goto overboot-retry\n")
	b.WriteString(":overboot-failed\n")
	fmt.Fprintf(&b, "echo overboot: boot failed after %d attempts, falling through to the next boot device\n", attempts)
	b.WriteString("exit 1\n")
	return b.String(), nil
}

// ChainScript is the bootstrap script a client runs first (from TFTP, or
// embedded in iPXE): it asks the server for this machine's own script,
// identifying the machine with the settings named in QueryKeys.
type ChainScript struct {
	Server     string // base URL of the overboot server, e.g. http://10.0.2.100
	Attempts   int
	RetryDelay time.Duration
}

// ScriptPath is where the server answers the bootstrap's query.
const ScriptPath = "/ipxe"

// Render returns the script text.
func (c ChainScript) Render() (string, error) {
	if err := scriptURL("server", c.Server); err != nil {
		return "", err
	}
	attempts := orInt(c.Attempts, DefaultScriptAttempts)
	delay := int(orDur(c.RetryDelay, DefaultScriptRetryDelay).Round(time.Second) / time.Second)
	target := ScriptQueryURL(c.Server)

	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# overboot bootstrap: fetch this machine's script from the server\n")
	b.WriteString("set overboot-try:int32 0\n")
	b.WriteString(":overboot-retry\n")
	fmt.Fprintf(&b, "iseq ${overboot-try} %d && goto overboot-failed ||\n", attempts)
	b.WriteString("inc overboot-try\n")
	b.WriteString("isset ${net0/ip} || dhcp || goto overboot-again\n")
	fmt.Fprintf(&b, "imgfetch --name overboot-script %s || goto overboot-again\n", target)
	b.WriteString("imgexec overboot-script || goto overboot-failed\n")
	b.WriteString(":overboot-again\n")
	fmt.Fprintf(&b, "sleep %d ||\n", delay)
	b.WriteString("goto overboot-retry\n")
	b.WriteString(":overboot-failed\n")
	b.WriteString("echo overboot: no boot script from the server, falling through to the next boot device\n")
	b.WriteString("exit 1\n")
	return b.String(), nil
}

// FailScript is served when the server knows the machine cannot boot (no
// profile, missing image): it says why and exits non-zero.
func FailScript(reason string) string {
	clean := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '$' || r == '#' {
			return ' '
		}
		return r
	}, reason)
	return "#!ipxe\necho overboot: " + clean + "\nexit 1\n"
}

func scriptURL(what, u string) error {
	if err := checkURL(u); err != nil {
		return fmt.Errorf("ipxe script: %s URL: %w", what, err)
	}
	return scriptToken(u)
}

// scriptToken checks that s survives iPXE's tokenizer as one literal token.
func scriptToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if why := checkToken(s); why != "" {
		return errors.New(why)
	}
	if strings.HasPrefix(s, "#") {
		return errors.New("starts with #, which iPXE reads as a comment")
	}
	switch s {
	case "||", "&&", ";":
		return errors.New("is an iPXE command separator")
	}
	return nil
}

func checkComment(s string) error {
	if strings.ContainsAny(s, "\r\n") || strings.Contains(s, "${") {
		return fmt.Errorf("ipxe script: comment %q: must be one line without ${", s)
	}
	return nil
}

// Client identifies a machine asking for its script: what the bootstrap
// script's query says about it.
type Client struct {
	MAC       net.HardwareAddr // net0's MAC address
	UUID      string           // SMBIOS UUID, lowercase, or ""
	Hostname  string           // from DHCP, or ""
	BuildArch string           // iPXE's ${buildarch}: i386, x86_64, arm64, ...
	Platform  string           // iPXE's ${platform}: pcbios, efi, ...
	NIC       PCIID            // the booting NIC's PCI vendor and device; zero = unknown
}

// PCIID is a PCI function's vendor and device ID (PCI Local Bus
// Specification 3.0, section 6.2.1: configuration space offsets 0x00 and
// 0x02). The zero value means unknown: vendor 0x0000 is never assigned.
type PCIID struct {
	Vendor, Device uint16
}

// IsZero reports whether the ID is unknown.
func (p PCIID) IsZero() bool { return p == PCIID{} }

// String returns "vvvv:dddd" in lowercase hex, as lspci -n prints it.
func (p PCIID) String() string { return fmt.Sprintf("%04x:%04x", p.Vendor, p.Device) }

// parsePCIWord reads one 16-bit ID as iPXE's :hexraw type prints a PCI
// setting: exactly 4 hex digits, most significant first.
func parsePCIWord(v string) (uint16, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%q: want 4 hex digits", v)
	}
	n, err := strconv.ParseUint(v, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: want 4 hex digits", v)
	}
	return uint16(n), nil
}

// queryKeys lists the bootstrap query: the parameter name and the iPXE
// setting that fills it. ${net0/mac:hexhyp} avoids ':' in the query.
//
// pcivendor and pcidevice read the booting NIC's PCI configuration space
// through iPXE's pci settings (${pci/BUSLOC.OFFSET.LENGTH}, big-endian):
// with :hexraw, Debian's iPXE 1.0.0+git-20190125 prints "10ec" and "8139"
// for QEMU's rtl8139 (untyped it prints the same; :uint16 would print
// "0x8139", :hex "81:39"). When ${net0/busloc} is unset (a NIC that is not
// on PCI) the setting reads bus 0 device 0, the host bridge: the server
// only ever matches the ID against network drivers.
var queryKeys = []struct{ name, ipxe string }{
	{"mac", "${net0/mac:hexhyp}"},
	{"uuid", "${uuid}"},
	{"hostname", "${hostname}"},
	{"buildarch", "${buildarch}"},
	{"platform", "${platform}"},
	{"pcivendor", "${pci/${net0/busloc}.0.2:hexraw}"},
	{"pcidevice", "${pci/${net0/busloc}.2.2:hexraw}"},
}

var (
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	wordRE     = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
)

// ParseQuery reads the bootstrap script's query. iPXE expands unset settings
// to "", so empty values mean "unknown". Unknown parameters and malformed
// values are errors naming the parameter. pcivendor and pcidevice come
// together or not at all, and vendor 0000 and ffff (no device) are refused.
func ParseQuery(q url.Values) (Client, error) {
	var c Client
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("query parameter %s: %s", k, fmt.Sprintf(format, args...)))
	}
	for k, vs := range q {
		known := false
		for _, qk := range queryKeys {
			known = known || qk.name == k
		}
		if !known {
			bad(k, "unknown")
			continue
		}
		if len(vs) != 1 {
			bad(k, "given %d times", len(vs))
			continue
		}
		v := strings.ToLower(vs[0])
		if v == "" {
			continue
		}
		switch k {
		case "mac":
			mac, err := ParseMAC(v)
			if err != nil {
				bad(k, "%v", err)
			}
			c.MAC = mac
		case "uuid":
			if !uuidRE.MatchString(v) {
				bad(k, "%q is not a UUID", vs[0])
			}
			c.UUID = v
		case "hostname":
			if len(v) > 253 || !hostnameRE.MatchString(v) {
				bad(k, "%q is not a host name", vs[0])
			}
			c.Hostname = v
		case "buildarch":
			if !wordRE.MatchString(v) {
				bad(k, "%q is not an architecture name", vs[0])
			}
			c.BuildArch = v
		case "platform":
			if !wordRE.MatchString(v) {
				bad(k, "%q is not a platform name", vs[0])
			}
			c.Platform = v
		case "pcivendor":
			n, err := parsePCIWord(v)
			switch {
			case err != nil:
				bad(k, "%v", err)
			case n == 0 || n == 0xffff:
				bad(k, "%q is not a PCI vendor ID", vs[0])
			}
			c.NIC.Vendor = n
		case "pcidevice":
			n, err := parsePCIWord(v)
			if err != nil {
				bad(k, "%v", err)
			}
			c.NIC.Device = n
		}
	}
	vendor, device := q.Get("pcivendor") != "", q.Get("pcidevice") != ""
	switch {
	case vendor && !device:
		bad("pcidevice", "missing, and pcivendor is given")
	case device && !vendor:
		bad("pcivendor", "missing, and pcidevice is given")
	}
	if err := errors.Join(errs...); err != nil {
		return Client{}, err
	}
	return c, nil
}

// Query encodes the client as the bootstrap script would; ParseQuery reads it back.
func (c Client) Query() url.Values {
	q := url.Values{}
	if c.MAC != nil {
		q.Set("mac", strings.ReplaceAll(c.MAC.String(), ":", "-"))
	}
	for _, kv := range [][2]string{{"uuid", c.UUID}, {"hostname", c.Hostname}, {"buildarch", c.BuildArch}, {"platform", c.Platform}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	if !c.NIC.IsZero() {
		q.Set("pcivendor", fmt.Sprintf("%04x", c.NIC.Vendor))
		q.Set("pcidevice", fmt.Sprintf("%04x", c.NIC.Device))
	}
	return q
}

// ParseMAC reads a 6-byte Ethernet address written with ':' or '-' separators.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(mac) != 6 || strings.Count(s, ":")+strings.Count(s, "-") != 5 {
		return nil, fmt.Errorf("%q is not a MAC address like 52:54:00:12:34:56", s)
	}
	return mac, nil
}

// URLPath joins a base URL and a path, for scripts and documents.
func URLPath(base string, elem ...string) string {
	u := strings.TrimSuffix(base, "/")
	for _, e := range elem {
		u += "/" + url.PathEscape(e)
	}
	return u
}

// SANScript boots a whole disk with iPXE's sanboot over iSCSI. It carries
// the machine's CHAP secret, so the server serves it once, behind a
// single-use URL. iPXE also publishes the target, the initiator name and
// the credentials in the iBFT, where the booted system finds its disk
// (overboot.root=ibft:N, or open-iscsi's iBFT support).
type SANScript struct {
	Comment   string
	Portal    string // host:port of the target; host is an IPv4 address or a DNS name
	Target    string // target IQN
	LUN       int
	Initiator string // initiator IQN, which the target's ACL names
	CHAP      CHAP   // User and Secret required; TargetUser/TargetSecret for mutual CHAP
}

// Render returns the script text.
func (s SANScript) Render() (string, error) {
	var errs []error
	host, port, err := net.SplitHostPort(s.Portal)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("ipxe sanboot: portal %q: want host:port", s.Portal))
	case strings.Contains(host, ":") || host == "":
		errs = append(errs, fmt.Errorf("ipxe sanboot: portal %q: iPXE's iscsi: URI takes an IPv4 address or a host name", s.Portal))
	}
	if s.LUN < 0 || s.LUN > 255 {
		errs = append(errs, fmt.Errorf("ipxe sanboot: LUN %d: want 0 to 255", s.LUN))
	}
	for _, f := range []struct{ name, val string }{
		{"target", s.Target}, {"initiator", s.Initiator}, {"chap user", s.CHAP.User}, {"chap secret", s.CHAP.Secret},
	} {
		if err := scriptToken(f.val); err != nil {
			errs = append(errs, fmt.Errorf("ipxe sanboot: %s: %w", f.name, err))
		}
	}
	mutual := s.CHAP.TargetUser != "" || s.CHAP.TargetSecret != ""
	if mutual {
		for _, f := range []struct{ name, val string }{{"target chap user", s.CHAP.TargetUser}, {"target chap secret", s.CHAP.TargetSecret}} {
			if err := scriptToken(f.val); err != nil {
				errs = append(errs, fmt.Errorf("ipxe sanboot: %s: %w", f.name, err))
			}
		}
	}
	if err := checkComment(s.Comment); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	if s.Comment != "" {
		fmt.Fprintf(&b, "# overboot: %s\n", s.Comment)
	}
	fmt.Fprintf(&b, "set initiator-iqn %s\n", s.Initiator)
	fmt.Fprintf(&b, "set username %s\n", s.CHAP.User)
	fmt.Fprintf(&b, "set password %s\n", s.CHAP.Secret)
	if mutual {
		fmt.Fprintf(&b, "set reverse-username %s\n", s.CHAP.TargetUser)
		fmt.Fprintf(&b, "set reverse-password %s\n", s.CHAP.TargetSecret)
	}
	// iscsi:<server>:<protocol>:<port>:<LUN>:<target>; an empty protocol is TCP.
	fmt.Fprintf(&b, "echo overboot: sanboot %s at %s\n", s.Target, s.Portal)
	fmt.Fprintf(&b, "sanboot iscsi:%s::%s:%d:%s || goto overboot-failed\n", host, port, s.LUN, s.Target)
	b.WriteString(":overboot-failed\n")
	b.WriteString("echo overboot: sanboot failed, falling through to the next boot device\n")
	b.WriteString("exit 1\n")
	return b.String(), nil
}

// ChainOnceScript fetches and runs one script from a single-use URL (which
// a retry could not fetch again): on failure it exits non-zero, and the
// next boot asks the server for a new URL.
type ChainOnceScript struct {
	Comment string
	URL     string
}

// Render returns the script text.
func (c ChainOnceScript) Render() (string, error) {
	if err := scriptURL("chain", c.URL); err != nil {
		return "", err
	}
	if err := checkComment(c.Comment); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	if c.Comment != "" {
		fmt.Fprintf(&b, "# overboot: %s\n", c.Comment)
	}
	fmt.Fprintf(&b, "chain --autofree %s || goto overboot-failed\n", c.URL)
	b.WriteString(":overboot-failed\n")
	b.WriteString("echo overboot: no sanboot script from the server, falling through to the next boot device\n")
	b.WriteString("exit 1\n")
	return b.String(), nil
}
