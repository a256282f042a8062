package ipxe

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
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
	Comment string   // one line shown at the top, e.g. the machine and profile
	Kernel  string   // kernel URL
	Initrds []string // initrd URLs, in order
	// KernelMirrors and InitrdMirrors (a list per initrd, or none) are
	// other URLs of the same files: each download falls back to them in
	// order ("kernel A || kernel B || goto retry").
	KernelMirrors []string
	InitrdMirrors [][]string
	Args          []string      // kernel command-line arguments
	Attempts      int           // default 3
	RetryDelay    time.Duration // whole seconds; default 3s
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
	for _, u := range k.KernelMirrors {
		if err := scriptURL("kernel mirror", u); err != nil {
			errs = append(errs, err)
		}
	}
	if len(k.InitrdMirrors) > len(k.Initrds) {
		errs = append(errs, fmt.Errorf("ipxe script: mirrors for %d initrds, there are %d", len(k.InitrdMirrors), len(k.Initrds)))
	}
	for i, ms := range k.InitrdMirrors {
		for _, u := range ms {
			if err := scriptURL(fmt.Sprintf("initrd %d mirror", i), u); err != nil {
				errs = append(errs, err)
			}
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
	attempts := cmp.Or(k.Attempts, DefaultScriptAttempts)
	delay := int(cmp.Or(k.RetryDelay, DefaultScriptRetryDelay).Round(time.Second) / time.Second)

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
	// iPXE runs the command after "||" only when the one before failed
	// (src/core/exec.c), so "kernel A || kernel B || goto" tries B only
	// when A failed, and gives up only when both did.
	var kcmds []string
	for _, u := range append([]string{k.Kernel}, k.KernelMirrors...) {
		kargs := []string{"kernel", "--name", "overboot-kernel", u}
		for _, n := range names {
			kargs = append(kargs, "initrd="+n)
		}
		kcmds = append(kcmds, strings.Join(append(kargs, k.Args...), " "))
	}
	fmt.Fprintf(&b, "%s || goto overboot-again\n", strings.Join(kcmds, " || "))
	for i, u := range k.Initrds {
		var icmds []string
		urls := []string{u}
		if i < len(k.InitrdMirrors) {
			urls = append(urls, k.InitrdMirrors[i]...)
		}
		for _, u := range urls {
			icmds = append(icmds, fmt.Sprintf("initrd --name %s %s", names[i], u))
		}
		fmt.Fprintf(&b, "%s || goto overboot-again\n", strings.Join(icmds, " || "))
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
	attempts := cmp.Or(c.Attempts, DefaultScriptAttempts)
	delay := int(cmp.Or(c.RetryDelay, DefaultScriptRetryDelay).Round(time.Second) / time.Second)
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
	if err := boot.CheckURL(u); err != nil {
		return fmt.Errorf("ipxe script: %s URL: %w", what, err)
	}
	return scriptToken(u)
}

// scriptToken checks that s survives iPXE's tokenizer as one literal token.
func scriptToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if why := boot.CheckToken(s); why != "" {
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
	Initiator string    // initiator IQN, which the target's ACL names
	CHAP      boot.CHAP // User and Secret required; TargetUser/TargetSecret for mutual CHAP
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
