package answer

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
)

// Answer is what a machine gets for a script request, whatever its
// firmware speaks: one of Kernel, Menu, Wait, Refusal, SanChain, San,
// Bootstrap. Package server/ipxe renders it for iPXE.
type Answer interface{ answer() }

// Kernel boots a kernel and its initrds with its command line.
type Kernel struct {
	Comment string   // one line: the machine and its profile
	Kernel  string   // URL
	Initrds []string // URLs, in order
	// KernelMirrors and InitrdMirrors (one list per initrd) are other
	// URLs of the same files, tried in order when the first fails.
	KernelMirrors []string
	InitrdMirrors [][]string
	Args          []string // the kernel command line
	// ForgetLogin: the answer follows a login, whose password the
	// firmware must not keep.
	ForgetLogin bool
}

// MenuItem is one choice of a menu: chosen, it chains URL.
type MenuItem struct {
	Key, Label, URL string
}

// Menu is a boot menu: a login item (LoginURL, the credentials go in its
// query) and entries for other profiles; after Timeout, Default.
type Menu struct {
	Title    string
	LoginURL string // "" = no login item
	Items    []MenuItem
	Default  string // "login" or an item's key; "" = the first item
	Timeout  time.Duration
}

// Wait shows Message, waits, and asks again; Notice is left for the next
// menu (after a wrong password).
type Wait struct {
	Server  string // base URL to ask again
	Message string
	Notice  string
	Wait    time.Duration
}

// Refusal says why the machine cannot boot and gives up (the firmware
// tries its next boot device).
type Refusal struct {
	Message string
}

// SanChain chains the single-use URL whose answer is the San (it carries
// secrets: served once, to the machine it was made for).
type SanChain struct {
	Comment string
	URL     string
}

// San boots a whole disk over iSCSI with the firmware's initiator.
type San struct {
	Comment   string
	Portal    string // host:port
	Target    string
	Initiator string
	CHAP      boot.CHAP // mutual: the target proves itself too
}

// Bootstrap is the first script: it asks the server for the machine's
// own answer, saying what the firmware knows of the machine.
type Bootstrap struct {
	Server string // base URL
}

func (Kernel) answer()    {}
func (Menu) answer()      {}
func (Wait) answer()      {}
func (Refusal) answer()   {}
func (SanChain) answer()  {}
func (San) answer()       {}
func (Bootstrap) answer() {}

// Machine is what is known of the machine a request is for.
type Machine struct {
	MAC      string // aa:bb:cc:dd:ee:ff
	Hostname string // as configured or as it said; "" unknown
	User     string // who logged in; "" none
}

// Comment names the machine, its user and its profile on one line.
func Comment(m Machine, profile string) string {
	who := m.MAC
	if m.Hostname != "" {
		who = fmt.Sprintf("%s (%s)", m.Hostname, m.MAC)
	}
	if m.User != "" {
		who += " user " + m.User
	}
	return fmt.Sprintf("%s, profile %s", who, profile)
}

// Text makes any message safe for a firmware to show: control
// characters, $ and # become spaces (a script would expand or cut them).
func Text(m string) string {
	m = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '$' || r == '#' {
			return ' '
		}
		return r
	}, m)
	if m == "" {
		return "-"
	}
	return m
}

// WaitForApproval is how long a machine that waits for approval waits
// before it asks again.
const WaitForApproval = 30 * time.Second

// Waiting is the answer to a machine that must wait (for approval, or
// refused as approved elsewhere): why, shown, and the request again.
func Waiting(base, why string) Wait {
	return Wait{Server: base, Message: Text(why), Wait: WaitForApproval}
}

// MenuKey is the menu item key of an entry for profile name.
func MenuKey(name string) string {
	return "p-" + strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// MenuFor is profile p's menu for machine m: a login item when p takes
// logins, an entry per profile of its menu, each URL behind the menu's
// single-use token (issued for this machine and address). With console,
// the login item is not iPXE's form but an entry like the others, whose
// answer boots the kernel that asks on the console (ConsoleLoginFor,
// under ConsoleLoginPath).
func MenuFor(base string, m Machine, p *config.Profile, token string, console bool) Menu {
	menu := Menu{Title: Text("overboot: " + Comment(m, p.Name)), Timeout: p.MenuTimeout}
	if menu.Timeout == 0 {
		menu.Timeout = config.DefaultMenuTimeout
	}
	switch {
	case p.Policy() != config.EnrollLogin:
	case console:
		menu.Items = append(menu.Items, MenuItem{Key: ConsoleLoginKey, Label: "Log in on the console (your own root)", URL: base + ConsoleLoginPath + token})
	default:
		menu.LoginURL = base + LoginPath + token
	}
	for _, e := range p.Menu {
		menu.Items = append(menu.Items, MenuItem{Key: MenuKey(e), Label: "Boot " + e, URL: base + "/entry/" + token + "/" + e})
	}
	switch d := p.MenuDefault; {
	case d == "login" && console:
		menu.Default = ConsoleLoginKey
	case d == "login":
		menu.Default = "login"
	case d != "":
		menu.Default = MenuKey(d)
	}
	return menu
}

// Where the server answers logins: LoginPath+TOKEN is iPXE's form (GET,
// a menu token) and the agent's console login (POST, a console-login
// token, the URL of overboot.login); ConsoleLoginPath+TOKEN is the menu
// item that boots the kernel asking on the console (GET, a menu token).
const (
	LoginPath        = "/login/"
	ConsoleLoginPath = "/console-login/"
)

// ConsoleLoginKey is the key of a menu's console login item.
const ConsoleLoginKey = "console-login"

// Artifacts are the digests a kernel boot downloads.
type Artifacts struct {
	Kernel, Initramfs boot.Digest
	// Driver is the second initrd with the booting NIC's driver, when
	// the initramfs lacks it (package server/drivers); zero: none.
	Driver boot.Digest
	// Mirrors are the base URLs of other servers or caches serving the
	// same blobs ([server] mirrors), tried in order after this server.
	Mirrors []string
	// Cache is the base URL of an HTTP cache in front of the servers
	// ([server] cache), tried before this server; "" = none.
	Cache string
	// Secure is the server's HTTPS base URL ([server] tls-listen) the
	// document is fetched from; "" = none: the document is at base,
	// over HTTP.
	Secure string
}

// BlobPrefix is where the server serves artifacts by digest.
const BlobPrefix = "/blobs/sha256/"

// BlobURL is where base serves the artifact d.
func BlobURL(base string, d boot.Digest) string { return base + BlobPrefix + d.Hex() }

// imageBases are where a machine reads what is named by digest, in
// order: the cache when there is one (it keeps one copy for every
// server's machines), this server, then the mirrors. It returns the
// first and the others.
func imageBases(base, cache string, mirrors []string) (string, []string) {
	if cache == "" {
		return base, mirrors
	}
	return cache, append([]string{base}, mirrors...)
}

// mirrorURLs is path at each of the mirrors' bases, in order; nil for none.
func mirrorURLs(mirrors []string, path string) []string {
	var urls []string
	for _, m := range mirrors {
		urls = append(urls, m+path)
	}
	return urls
}

// Purpose is the purpose of the single-use token a profile's boot
// answer carries: its sanboot script, or its boot document.
func Purpose(p *config.Profile) string {
	switch {
	case p.Sanboot != "":
		return "san"
	case p.Policy() == config.EnrollTPM:
		// The machine's TPM proves what it booted first (overboot.attest).
		return "attest"
	}
	return "doc"
}

// BootFor is profile p's boot answer for machine m, whose single-use
// token (of Purpose(p)) is token: for a sanboot profile, the chain to
// its sanboot script; else the kernel, the initramfs (and driver
// segment) and a command line whose only overboot.* secret-free pointer
// is the document's URL. Secrets never go on the command line, which
// every user of the booted system can read.
func BootFor(base string, m Machine, p *config.Profile, a Artifacts, token string) (Answer, error) {
	if p.Sanboot != "" {
		return SanChain{Comment: Comment(m, p.Name), URL: base + "/san/" + token}, nil
	}
	if Purpose(p) == "attest" {
		return kernelFor(base, m, p, a, boot.Params{Attest: docBase(base, a) + "/attest/" + token})
	}
	return kernelFor(base, m, p, a, boot.Params{Doc: docBase(base, a) + "/doc/" + token})
}

// ConsoleLoginFor is login profile p's boot for a machine whose user
// logs in on the console (the Secure Boot path, which runs no iPXE, or
// login = console): the kernel and initramfs as BootFor's, whose command
// line points the agent at the console login (overboot.login, a token
// of purpose enroll.PurposeConsoleLogin) instead of a document. Nothing
// on it is secret: the agent asks for the password, POSTs it there, and
// the answer is the user's document.
func ConsoleLoginFor(base string, m Machine, p *config.Profile, a Artifacts, token string) (Answer, error) {
	if p.Sanboot != "" {
		return nil, fmt.Errorf("profile %s: a console login needs the agent, which a sanboot does not run", p.Name)
	}
	return kernelFor(base, m, p, a, boot.Params{Login: ConsoleLoginURL(docBase(base, a), token, p.Name)})
}

// ConsoleLoginURL is the console login's URL at base for token: the
// profile's name in its query, for the agent's prompt to show (the token
// decides the profile; the server reads nothing else of the query).
func ConsoleLoginURL(base, token, profile string) string {
	return base + LoginPath + token + "?" + url.Values{"profile": {profile}}.Encode()
}

// docBase is where the agent fetches its document (or logs in): what
// firmware and boot loaders fetch stays HTTP (checked by digest); the
// document, with its secrets, and the password go over HTTPS when the
// server has it.
func docBase(base string, a Artifacts) string { return cmp.Or(a.Secure, base) }

// kernelFor is p's kernel boot whose command line carries params (the
// document's or the login's URL) and the profile's agent settings.
func kernelFor(base string, m Machine, p *config.Profile, a Artifacts, params boot.Params) (Answer, error) {
	params.OnFail, params.FailDelay, params.FetchAttempts, params.LowerCache, params.ISCSIRecovery = p.OnFail, p.OnFailDelay, p.FetchAttempts, p.LowerCache, p.ISCSIRecovery
	if p.LowerMode.OnDemand() {
		// The agent loads them while DHCP runs, before the document
		// says it needs them.
		params.Modules = slices.Clone(boot.ModulesLazyRoot)
	}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	// This server first (after a cache in front of the servers): it has
	// just answered this machine, so it is up and reachable from it, and
	// the document's URL is its own anyway.
	first, others := imageBases(base, a.Cache, a.Mirrors)
	k := Kernel{
		Comment:       Comment(m, p.Name),
		Kernel:        BlobURL(first, a.Kernel),
		KernelMirrors: mirrorURLs(others, BlobPrefix+a.Kernel.Hex()),
		Initrds:       []string{BlobURL(first, a.Initramfs)},
		Args:          append(slices.Clone(p.Cmdline), params.Args()...),
		ForgetLogin:   m.User != "",
	}
	if len(others) > 0 {
		k.InitrdMirrors = [][]string{mirrorURLs(others, BlobPrefix+a.Initramfs.Hex())}
	}
	if a.Driver != "" {
		k.Initrds = append(k.Initrds, BlobURL(first, a.Driver))
		if len(others) > 0 {
			k.InitrdMirrors = append(k.InitrdMirrors, mirrorURLs(others, BlobPrefix+a.Driver.Hex()))
		}
	}
	return k, nil
}

// SanFor is the sanboot answer: the firmware logs in to the disk's
// target with the machine's initiator name and both CHAP secrets.
func SanFor(m Machine, profile, portal, target, initiator string, chap boot.CHAP) San {
	return San{Comment: Comment(Machine{MAC: m.MAC, User: m.User}, profile), Portal: portal, Target: target, Initiator: initiator, CHAP: chap}
}
