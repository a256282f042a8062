package boot

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every overboot kernel command-line parameter.
const Prefix = "overboot."

// Defaults for zero-valued Params fields. The zero value of a field always
// means "the default"; defaults are never written back into a Params.
const (
	DefaultInit          = "/sbin/init"
	DefaultLinkTimeout   = 10 * time.Second
	DefaultDHCPTimeout   = 5 * time.Second
	DefaultDHCPAttempts  = 4
	DefaultFetchTimeout  = 30 * time.Second
	DefaultFetchAttempts = 6
	DefaultFailAction    = ActionReboot
	DefaultFailDelay     = 30 * time.Second
	// DefaultISCSIRecovery is how long the kernel holds an iSCSI
	// session's I/O while its connection is down (iscsid's
	// replacement_timeout has the same default): the keeper logs in
	// again meanwhile, so a server restart or a cut shorter than this
	// fails no I/O.
	DefaultISCSIRecovery = 120 * time.Second
)

// DefaultUpperSize is the tmpfs upper's limit when none is given.
var DefaultUpperSize = Size{Percent: 50}

// Params are the overboot.* kernel command-line parameters. The zero value of
// each field means its documented default. There are two modes:
//
//   - static: Lower and Digest name the image directly (any HTTP server works,
//     no overboot server needed);
//   - document: Doc names a boot document on the overboot server, which then
//     decides the layers; Lower, Digest, Size, UpperSize and Init must be unset;
//   - login: Login names the server's console login (the agent asks for a
//     username and password on the console and POSTs them there; the
//     answer is the user's boot document); otherwise as document mode;
//   - disk: Root names a partition of the iSCSI disk the firmware booted
//     from (iPXE's sanboot, described by the iBFT), mounted read-write as
//     the root with no overlay; Doc, Lower, Digest, Size and UpperSize must
//     be unset.
//
// Report (overboot.report) goes with every mode. Its token only lets the
// machine post phase reports; a server that hands out a boot document
// should rather put the report URL there (Document.Report), which wins.
type Params struct {
	Doc string // overboot.doc: URL of the boot document (may carry a single-use token)
	// Attest (overboot.attest) is, instead of Doc, where the machine's TPM
	// proves what booted before the document comes, sealed to that TPM
	// (attest.go; a single-use token, nothing secret).
	Attest string
	// Login (overboot.login) is the URL of the server's console login
	// (with a single-use token): the agent POSTs the username and
	// password typed on the console there, and gets the boot document.
	// The URL carries nothing secret: the password comes after.
	Login  string
	Report string // overboot.report: URL the agent POSTs phase reports to (may carry a token); the document's report overrides it
	Root   Root   // overboot.root: ibft:N, partition N of the firmware's iSCSI disk
	Lower  string // overboot.lower: http(s) URL of the squashfs image, or nfs://HOST/EXPORT
	// LowerNFS (overboot.lower.nfs) are the options of an NFS lower,
	// comma-separated: vers=3 (default 4; 4.1, 4.2) and the few of
	// NFSOptionKeys (ParseNFSOptions).
	LowerNFS string
	Digest   Digest // overboot.digest: sha256:HEX of the image; required with Lower
	Size     int64  // overboot.size: image size in bytes, checked when given
	// LowerMode (overboot.lower.mode: ram, lazy or fill) and the image's
	// dm-verity tree for lazy and fill: overboot.verity (its URL),
	// overboot.verity.size and overboot.verity.root (the root hash, the
	// trust anchor); overboot.verity.digest (the tree file's) is optional,
	// as dm-verity checks each tree block read against the root hash.
	// Static command lines only.
	LowerMode LowerMode
	// LowerMirrors (overboot.lower.mirrors, comma-separated) and
	// VerityMirrors (overboot.verity.mirrors) are other URLs of the same
	// image and tree, tried in order when the first fails (at most
	// MaxMirrors each; see HTTPSource.Mirrors). Static command lines only.
	LowerMirrors  []string
	VerityMirrors []string
	VerityURL     string
	VerityDigest  Digest
	VeritySize    int64
	VerityRoot    string
	UpperSize     Size // overboot.upper.size: tmpfs upper limit (default 50% of RAM)
	// LowerCache bounds the RAM the keeper caches a lazy image's blocks in
	// (overboot.lower.cache, bytes; default DefaultLowerCache). Fill mode
	// keeps the whole image regardless.
	LowerCache int64
	Init       string // overboot.init: the image's init (default /sbin/init)
	// ISCSIRecovery is an iSCSI session's recovery timeout
	// (overboot.iscsi.recovery, whole seconds, default
	// DefaultISCSIRecovery): while its connection is down the kernel
	// queues the session's I/O this long, and fails it after.
	ISCSIRecovery time.Duration

	Iface         string        // overboot.iface: interface to configure (default: first with a link)
	LinkTimeout   time.Duration // overboot.link.timeout: wait for a carrier (default 10s)
	DHCPTimeout   time.Duration // overboot.dhcp.timeout: per DHCP attempt (default 5s)
	DHCPAttempts  int           // overboot.dhcp.attempts: DHCP attempts (default 4)
	DHCP          int           // overboot.dhcp: 4 (DHCPv4) or 6 (DHCPv6); default 6 when the server's URL is an IPv6 literal, else 4
	FetchTimeout  time.Duration // overboot.fetch.timeout: a download attempt may stall this long (default 30s)
	FetchAttempts int           // overboot.fetch.attempts: download attempts, resumed with Range (default 6)
	Modules       []string      // overboot.modules: extra kernel modules to load, comma-separated

	OnFail    Action        // overboot.onfail: reboot, shell or poweroff (default reboot)
	FailDelay time.Duration // overboot.onfail.delay: wait before reboot or poweroff (default 30s)
}

// param describes one overboot.* key: how to read it and how to write it.
type param struct {
	key    string
	parse  func(p *Params, v string) error
	format func(p *Params) string // "" means unset: not written
}

// params lists every key in the order Format writes them.
var params = []param{
	{"doc", func(p *Params, v string) error { return setURL(&p.Doc, v) }, func(p *Params) string { return p.Doc }},
	{"attest", func(p *Params, v string) error { return setURL(&p.Attest, v) }, func(p *Params) string { return p.Attest }},
	{"login", func(p *Params, v string) error { return setURL(&p.Login, v) }, func(p *Params) string { return p.Login }},
	{"report", func(p *Params, v string) error { return setURL(&p.Report, v) }, func(p *Params) string { return p.Report }},
	{"root", func(p *Params, v string) (err error) { p.Root, err = ParseRoot(v); return err }, func(p *Params) string { return p.Root.String() }},
	{"lower", setLower, func(p *Params) string { return p.Lower }},
	{"lower.nfs", setLowerNFS, func(p *Params) string { return p.LowerNFS }},
	{"lower.mirrors", func(p *Params, v string) (err error) { p.LowerMirrors, err = parseMirrors(v); return err }, func(p *Params) string { return strings.Join(p.LowerMirrors, ",") }},
	{"digest", func(p *Params, v string) (err error) { p.Digest, err = ParseDigest(v); return err }, func(p *Params) string { return string(p.Digest) }},
	{"size", func(p *Params, v string) error { return setPositive64(&p.Size, v) }, func(p *Params) string { return itoa64(p.Size) }},
	{"lower.mode", func(p *Params, v string) (err error) { p.LowerMode, err = ParseLowerMode(v); return err }, func(p *Params) string { return string(p.LowerMode) }},
	{"verity", func(p *Params, v string) error { return setURL(&p.VerityURL, v) }, func(p *Params) string { return p.VerityURL }},
	{"verity.mirrors", func(p *Params, v string) (err error) { p.VerityMirrors, err = parseMirrors(v); return err }, func(p *Params) string { return strings.Join(p.VerityMirrors, ",") }},
	{"verity.digest", func(p *Params, v string) (err error) { p.VerityDigest, err = ParseDigest(v); return err }, func(p *Params) string { return string(p.VerityDigest) }},
	{"verity.size", func(p *Params, v string) error { return setPositive64(&p.VeritySize, v) }, func(p *Params) string { return itoa64(p.VeritySize) }},
	{"verity.root", setVerityRoot, func(p *Params) string { return p.VerityRoot }},
	{"upper.size", func(p *Params, v string) (err error) { p.UpperSize, err = ParseSize(v); return err }, func(p *Params) string { return p.UpperSize.String() }},
	{"lower.cache", setLowerCache, func(p *Params) string { return itoa64(p.LowerCache) }},
	{"init", setInit, func(p *Params) string { return p.Init }},
	{"iscsi.recovery", setISCSIRecovery, func(p *Params) string { return fmtDuration(p.ISCSIRecovery) }},
	{"iface", setIface, func(p *Params) string { return p.Iface }},
	{"link.timeout", func(p *Params, v string) error { return setDuration(&p.LinkTimeout, v) }, func(p *Params) string { return fmtDuration(p.LinkTimeout) }},
	{"dhcp.timeout", func(p *Params, v string) error { return setDuration(&p.DHCPTimeout, v) }, func(p *Params) string { return fmtDuration(p.DHCPTimeout) }},
	{"dhcp.attempts", func(p *Params, v string) error { return setPositive(&p.DHCPAttempts, v) }, func(p *Params) string { return itoa(p.DHCPAttempts) }},
	{"dhcp", setDHCP, func(p *Params) string { return itoa(p.DHCP) }},
	{"fetch.timeout", func(p *Params, v string) error { return setDuration(&p.FetchTimeout, v) }, func(p *Params) string { return fmtDuration(p.FetchTimeout) }},
	{"fetch.attempts", func(p *Params, v string) error { return setPositive(&p.FetchAttempts, v) }, func(p *Params) string { return itoa(p.FetchAttempts) }},
	{"modules", setModules, func(p *Params) string { return strings.Join(p.Modules, ",") }},
	{"onfail", func(p *Params, v string) (err error) { p.OnFail, err = ParseAction(v); return err }, func(p *Params) string { return string(p.OnFail) }},
	{"onfail.delay", func(p *Params, v string) error { return setDuration(&p.FailDelay, v) }, func(p *Params) string { return fmtDuration(p.FailDelay) }},
}

// Keys returns every accepted key, with the prefix, in canonical order.
func Keys() []string {
	keys := make([]string, len(params))
	for i, p := range params {
		keys[i] = Prefix + p.key
	}
	return keys
}

// ParamError is a problem with one kernel command-line parameter.
type ParamError struct {
	Key string // the full key, e.g. "overboot.dhcp.timeout"
	Err error
}

func (e *ParamError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *ParamError) Unwrap() error { return e.Err }

// ErrUnknownKey is wrapped by the error for an overboot.* key that does not exist.
var ErrUnknownKey = errors.New("unknown parameter")

// Parse reads the overboot.* parameters from a kernel command line (the
// contents of /proc/cmdline). Other parameters belong to the kernel or to the
// image and are ignored; so is everything after "--", which the kernel hands to
// init. Every problem is reported, each naming its key.
func Parse(cmdline string) (Params, error) {
	var p Params
	var errs []error
	seen := map[string]bool{}
	for _, arg := range SplitCmdline(cmdline) {
		if arg.Key == "--" && !arg.HasValue {
			break
		}
		name, ok := strings.CutPrefix(arg.Key, Prefix)
		if !ok {
			continue
		}
		def := lookup(name)
		if def == nil {
			errs = append(errs, &ParamError{arg.Key, fmt.Errorf("%w (known: %s)", ErrUnknownKey, strings.Join(Keys(), " "))})
			continue
		}
		if seen[name] {
			errs = append(errs, &ParamError{arg.Key, errors.New("given more than once")})
			continue
		}
		seen[name] = true
		if !arg.HasValue || arg.Value == "" {
			errs = append(errs, &ParamError{arg.Key, errors.New("needs a value (key=value)")})
			continue
		}
		if err := def.parse(&p, arg.Value); err != nil {
			errs = append(errs, &ParamError{arg.Key, err})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Params{}, err
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

func lookup(name string) *param {
	for i := range params {
		if params[i].key == name {
			return &params[i]
		}
	}
	return nil
}

// Validate checks the combination of parameters: each value on its own and
// the two modes (static or document).
func (p Params) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, &ParamError{Prefix + key, fmt.Errorf(format, args...)})
	}
	for _, def := range params {
		v := def.format(&p)
		if v == "" {
			continue
		}
		if why := CheckToken(v); why != "" {
			bad(def.key, "value %q %s", v, why)
			continue
		}
		var q Params
		if err := def.parse(&q, v); err != nil {
			errs = append(errs, &ParamError{Prefix + def.key, err})
		}
	}
	if !p.Root.IsZero() {
		for _, k := range []struct {
			key string
			set bool
		}{{"doc", p.Doc != ""}, {"attest", p.Attest != ""}, {"login", p.Login != ""}, {"lower", p.Lower != ""}, {"digest", p.Digest != ""}, {"size", p.Size != 0}, {"upper.size", !p.UpperSize.IsZero()}} {
			if k.set {
				bad(k.key, "cannot be combined with overboot.root: the root is a disk partition, no image and no overlay")
			}
		}
		return errors.Join(errs...)
	}
	var srcs []string // the keys that bring a document
	for _, k := range []struct {
		key string
		set bool
	}{{"doc", p.Doc != ""}, {"attest", p.Attest != ""}, {"login", p.Login != ""}} {
		if k.set {
			srcs = append(srcs, k.key)
		}
	}
	switch {
	case len(srcs) > 1:
		bad(srcs[1], "cannot be combined with overboot.%s: one of overboot.doc, overboot.attest and overboot.login brings the document", srcs[0])
	case len(srcs) == 1 && p.Lower != "":
		bad("lower", "cannot be combined with overboot.%s: the document names the image", srcs[0])
	case len(srcs) == 0 && p.Lower == "":
		errs = append(errs, &ParamError{Prefix + "lower", errors.New("missing: give overboot.lower=URL with overboot.digest=sha256:HEX, overboot.doc=URL, overboot.attest=URL, overboot.login=URL, or overboot.root=ibft:N")})
	case p.Lower != "" && p.Digest == "" && !p.lowerIsNFS():
		bad("digest", "missing: overboot.lower needs overboot.digest=sha256:HEX so the image can be verified")
	}
	if p.LowerNFS != "" && !p.lowerIsNFS() {
		bad("lower.nfs", "only with overboot.lower=nfs://HOST/EXPORT")
	}
	if p.lowerIsNFS() {
		// An NFS tree has no digest, size or tree: what the NFS server
		// answers is not verified.
		for _, k := range []struct {
			key string
			set bool
		}{{"digest", p.Digest != ""}, {"size", p.Size != 0}, {"lower.mode", p.LowerMode != ""}, {"lower.mirrors", len(p.LowerMirrors) > 0}, {"lower.cache", p.LowerCache != 0}, {"verity", p.VerityURL != ""}, {"verity.mirrors", len(p.VerityMirrors) > 0}, {"verity.digest", p.VerityDigest != ""}, {"verity.size", p.VeritySize != 0}, {"verity.root", p.VerityRoot != ""}} {
			if k.set {
				bad(k.key, "cannot be combined with an NFS lower (overboot.lower=nfs://...): an NFS tree is mounted as it is, with no image to check")
			}
		}
		return errors.Join(errs...)
	}
	if len(p.LowerMirrors) > 0 {
		if p.Lower == "" {
			bad("lower.mirrors", "only with overboot.lower: they are other places of the same image")
		} else if err := CheckMirrors(p.Lower, p.LowerMirrors); err != nil {
			bad("lower.mirrors", "%v", err)
		}
	}
	if len(p.VerityMirrors) > 0 {
		if p.VerityURL == "" {
			bad("verity.mirrors", "only with overboot.verity: they are other places of the same tree")
		} else if err := CheckMirrors(p.VerityURL, p.VerityMirrors); err != nil {
			bad("verity.mirrors", "%v", err)
		}
	}
	verity := []struct {
		key string
		set bool
		opt bool // optional with lazy and fill
	}{{"verity", p.VerityURL != "", false}, {"verity.digest", p.VerityDigest != "", true}, {"verity.size", p.VeritySize != 0, false}, {"verity.root", p.VerityRoot != "", false}}
	if p.Lower != "" && p.LowerMode.OnDemand() {
		for _, k := range verity {
			if !k.set && !k.opt {
				bad(k.key, "missing: overboot.lower.mode=%s reads the image on demand, each block checked against its dm-verity tree (overboot mkimage verity IMAGE prints these parameters)", p.LowerMode)
			}
		}
		if p.Size == 0 {
			bad("size", "missing: overboot.lower.mode=%s needs the image's size", p.LowerMode)
		}
	} else if p.Lower != "" {
		for _, k := range verity {
			if k.set {
				bad(k.key, "only with overboot.lower.mode=lazy or fill")
			}
		}
	}
	if by := p.documentKey(); by != "" {
		for _, k := range append([]struct {
			key string
			set bool
			opt bool
		}{{"digest", p.Digest != "", false}, {"size", p.Size != 0, false}, {"upper.size", !p.UpperSize.IsZero(), false}, {"init", p.Init != "", false}, {"lower.mode", p.LowerMode != "", false}}, verity...) {
			if k.set {
				bad(k.key, "cannot be combined with overboot.%s: the document decides it", by)
			}
		}
	}
	return errors.Join(errs...)
}

// documentKey is the key that brings p's boot document (doc, attest or
// login), or "".
func (p Params) documentKey() string {
	switch {
	case p.Doc != "":
		return "doc"
	case p.Attest != "":
		return "attest"
	case p.Login != "":
		return "login"
	}
	return ""
}

// Format writes the parameters as kernel command-line arguments in canonical
// order, leaving out unset ones. Parse(p.Format()) returns p for valid p.
func (p Params) Format() string {
	return strings.Join(p.Args(), " ")
}

// Args is Format as a list of "key=value" arguments.
func (p Params) Args() []string {
	var args []string
	for _, def := range params {
		if v := def.format(&p); v != "" {
			args = append(args, Prefix+def.key+"="+v)
		}
	}
	return args
}

// Effective accessors: each returns the field or its default.

// InitPath returns the init to run in the new root.
func (p Params) InitPath() string { return cmp.Or(p.Init, DefaultInit) }

// LinkWait returns how long to wait for a carrier.
func (p Params) LinkWait() time.Duration { return cmp.Or(p.LinkTimeout, DefaultLinkTimeout) }

// DHCPWait returns the timeout of one DHCP attempt.
func (p Params) DHCPWait() time.Duration { return cmp.Or(p.DHCPTimeout, DefaultDHCPTimeout) }

// DefaultLowerCache is the keeper's RAM cache for a lazy image.
const DefaultLowerCache = 64 << 20

// LowerCacheBytes returns the keeper's cache size.
func (p Params) LowerCacheBytes() int64 {
	if p.LowerCache > 0 {
		return p.LowerCache
	}
	return DefaultLowerCache
}

// ISCSIRecoveryTimeout returns an iSCSI session's recovery timeout.
func (p Params) ISCSIRecoveryTimeout() time.Duration {
	return cmp.Or(p.ISCSIRecovery, DefaultISCSIRecovery)
}

// DHCPFamily returns 4 or 6: overboot.dhcp if given, else 6 when the
// server the agent talks to first (the document's or the image's URL) is
// named by an IPv6 literal, which only IPv6 can reach, else 4.
func (p Params) DHCPFamily() int {
	if p.DHCP != 0 {
		return p.DHCP
	}
	if ip := p.ServerAddr(); ip.IsValid() && ip.Is6() && !ip.Is4In6() {
		return 6
	}
	return 4
}

// ServerAddr returns the IP literal in the host of the first URL the agent
// fetches (the document's or the login's, else the image's), or the zero
// Addr when that host is a name or there is no URL.
func (p Params) ServerAddr() netip.Addr {
	raw := cmp.Or(p.Doc, p.Attest, p.Login, p.Lower)
	u, err := url.Parse(raw)
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return netip.Addr{}
	}
	return ip
}

// DHCPTries returns the number of DHCP attempts.
func (p Params) DHCPTries() int { return cmp.Or(p.DHCPAttempts, DefaultDHCPAttempts) }

// FetchStall returns how long a download may make no progress.
func (p Params) FetchStall() time.Duration { return cmp.Or(p.FetchTimeout, DefaultFetchTimeout) }

// FetchTries returns the number of download attempts.
func (p Params) FetchTries() int { return cmp.Or(p.FetchAttempts, DefaultFetchAttempts) }

// FailAction returns what to do after a failure.
func (p Params) FailAction() Action {
	if p.OnFail == "" {
		return DefaultFailAction
	}
	return p.OnFail
}

// FailWait returns the delay before rebooting or powering off.
func (p Params) FailWait() time.Duration { return cmp.Or(p.FailDelay, DefaultFailDelay) }

// ReportURL returns where the agent sends its phase reports, given the boot
// document it boots with (the zero Document when there is none yet): the
// document's report URL when it has one, else overboot.report. "" means no
// reports.
func (p Params) ReportURL(d Document) string { return cmp.Or(d.Report, p.Report) }

// UpperLimit returns the tmpfs upper's size.
func (p Params) UpperLimit() Size {
	if p.UpperSize.IsZero() {
		return DefaultUpperSize
	}
	return p.UpperSize
}

// Document returns the boot document a static command line stands for. It is
// only meaningful when p.Doc and p.Login are empty.
func (p Params) Document() Document {
	if p.lowerIsNFS() {
		// Valid p: both parse.
		n, _ := ParseNFSURL(p.Lower)
		n.Version, n.Options, _ = ParseNFSOptions(p.LowerNFS)
		return Document{
			Version: DocumentVersion,
			Lower:   Source{NFS: &n},
			Upper:   Upper{Tmpfs: &TmpfsUpper{Size: p.UpperSize}},
			Init:    p.Init,
			Report:  p.Report,
		}
	}
	h := &HTTPSource{URL: p.Lower, Mirrors: p.LowerMirrors, Digest: p.Digest, Size: p.Size, Mode: p.LowerMode}
	if p.VerityURL != "" {
		// The salt is the tree's own (its superblock, covered by the
		// tree file's digest).
		h.Verity = &Verity{HashURL: p.VerityURL, HashMirrors: p.VerityMirrors, HashDigest: p.VerityDigest, HashSize: p.VeritySize, RootHash: p.VerityRoot}
	}
	return Document{
		Version: DocumentVersion,
		Lower:   Source{HTTP: h},
		Upper:   Upper{Tmpfs: &TmpfsUpper{Size: p.UpperSize}},
		Init:    p.Init,
		Report:  p.Report,
	}
}

// Arg is one kernel command-line argument.
type Arg struct {
	Key      string
	Value    string
	HasValue bool // "key=" has an empty value; "key" has none
}

// SplitCmdline splits a kernel command line the way the kernel does
// (lib/cmdline.c next_arg): arguments are separated by whitespace outside
// double quotes, and quotes around a value are removed.
func SplitCmdline(s string) []Arg {
	var args []Arg
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return args
		}
		start := i
		inQuote := false
		for i < len(s) && (inQuote || !isSpace(s[i])) {
			if s[i] == '"' {
				inQuote = !inQuote
			}
			i++
		}
		tok := s[start:i]
		quoted := strings.HasPrefix(tok, `"`)
		if quoted {
			tok = strings.TrimSuffix(tok[1:], `"`)
		}
		key, val, has := strings.Cut(tok, "=")
		if has && !quoted && strings.HasPrefix(val, `"`) {
			val = strings.TrimSuffix(val[1:], `"`)
		}
		args = append(args, Arg{Key: key, Value: val, HasValue: has})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func setURL(dst *string, v string) error {
	if err := CheckURL(v); err != nil {
		return err
	}
	*dst = v
	return nil
}

// CheckURL accepts absolute http and https URLs with a host.
func CheckURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", v, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want an http:// or https:// URL", v)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: URL has no host", v)
	}
	if why := CheckToken(v); why != "" {
		return fmt.Errorf("%q %s", v, why)
	}
	return nil
}

// parseMirrors reads a comma-separated list of URLs (CheckMirrors checks
// them against the primary URL in Validate).
func parseMirrors(v string) ([]string, error) {
	ms := strings.Split(v, ",")
	if len(ms) > MaxMirrors {
		return nil, fmt.Errorf("%d mirrors, at most %d", len(ms), MaxMirrors)
	}
	for _, m := range ms {
		if err := CheckURL(m); err != nil {
			return nil, fmt.Errorf("want comma-separated http:// or https:// URLs: %w", err)
		}
	}
	return ms, nil
}

// lowerIsNFS reports whether overboot.lower is an nfs:// URL.
func (p Params) lowerIsNFS() bool { return strings.HasPrefix(p.Lower, "nfs://") }

// setLower reads overboot.lower: an http(s) URL of an image, or an NFS
// export (ParseNFSURL).
func setLower(p *Params, v string) error {
	if strings.HasPrefix(v, "nfs://") {
		if _, err := ParseNFSURL(v); err != nil {
			return err
		}
		p.Lower = v
		return nil
	}
	return setURL(&p.Lower, v)
}

func setLowerNFS(p *Params, v string) error {
	if _, _, err := ParseNFSOptions(v); err != nil {
		return err
	}
	p.LowerNFS = v
	return nil
}

func setInit(p *Params, v string) error {
	if !path.IsAbs(v) || path.Clean(v) != v {
		return fmt.Errorf("%q: want a clean absolute path like /sbin/init", v)
	}
	p.Init = v
	return nil
}

func setVerityRoot(p *Params, v string) error {
	if !isHex(v, 64) {
		return fmt.Errorf("%q: want the root hash, 64 lower-case hex digits (sha256)", v)
	}
	p.VerityRoot = v
	return nil
}

func setLowerCache(p *Params, v string) (err error) {
	p.LowerCache, err = ParseLowerCache(v)
	return err
}

// ParseLowerCache reads the keeper's cache size: bytes, at least 4M (the
// read-ahead of one stream must fit).
func ParseLowerCache(v string) (int64, error) {
	sz, err := ParseSize(v)
	if err != nil {
		return 0, err
	}
	if sz.Percent != 0 || sz.Bytes < 4<<20 {
		return 0, fmt.Errorf("%q: want a size in bytes of at least 4M, like 64M", v)
	}
	return sz.Bytes, nil
}

func setISCSIRecovery(p *Params, v string) (err error) {
	p.ISCSIRecovery, err = ParseISCSIRecovery(v)
	return err
}

// ParseISCSIRecovery reads an iSCSI session's recovery timeout: whole
// seconds, as the kernel takes it (ISCSI_PARAM_SESS_RECOVERY_TMO), from 1s
// up to a day.
func ParseISCSIRecovery(v string) (time.Duration, error) {
	d, err := parseDuration(v)
	if err != nil {
		return 0, err
	}
	if d%time.Second != 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("%q: want whole seconds up to 24h, like 120s or 5m", v)
	}
	return d, nil
}

func setDHCP(p *Params, v string) error {
	switch v {
	case "4":
		p.DHCP = 4
	case "6":
		p.DHCP = 6
	default:
		return fmt.Errorf("%q: want 4 (DHCPv4) or 6 (DHCPv6)", v)
	}
	return nil
}

func setIface(p *Params, v string) error {
	// Linux interface names: at most 15 bytes, no '/', no whitespace, not "." or "..".
	if len(v) > 15 || v == "." || v == ".." || strings.ContainsAny(v, "/:") || CheckToken(v) != "" {
		return fmt.Errorf("%q is not a valid interface name", v)
	}
	p.Iface = v
	return nil
}

func setModules(p *Params, v string) error {
	mods := strings.Split(v, ",")
	for _, m := range mods {
		if m == "" || strings.ContainsAny(m, "/.") || CheckToken(m) != "" {
			return fmt.Errorf("%q: want comma-separated module names like virtio_net,e1000", v)
		}
	}
	p.Modules = mods
	return nil
}

func setDuration(dst *time.Duration, v string) error {
	d, err := parseDuration(v)
	if err != nil {
		return err
	}
	*dst = d
	return nil
}

func setPositive(dst *int, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || v != strconv.Itoa(n) {
		return fmt.Errorf("%q: want a positive whole number", v)
	}
	*dst = n
	return nil
}

func setPositive64(dst *int64, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || v != strconv.FormatInt(n, 10) {
		return fmt.Errorf("%q: want a positive number of bytes", v)
	}
	*dst = n
	return nil
}

func fmtDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func itoa64(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}
