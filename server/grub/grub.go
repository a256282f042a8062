package grub

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
)

// Path is where the server answers a machine's own GRUB config (the
// bootstrap's query) and the base of its menus' entries
// (/grub/entry/TOKEN/NAME); ConfigPath is the bootstrap, where GRUB's
// prefix (/grub) puts it.
const (
	Path       = "/grub"
	ConfigPath = "/grub/grub.cfg"
)

// Defaults of the kernel config's retries.
const (
	DefaultAttempts   = 3
	DefaultRetryDelay = 3 * time.Second
)

// ErrNoGRUBForm is the error of an answer GRUB cannot carry out.
var ErrNoGRUBForm = errors.New("no GRUB form")

// Render is an answer as a GRUB config.
func Render(a answer.Answer) (string, error) {
	switch a := a.(type) {
	case answer.Kernel:
		return kernel(a)
	case answer.Menu:
		return menu(a)
	case answer.Wait:
		return wait(a)
	case answer.Refusal:
		return Refusal(a.Message), nil
	case answer.Bootstrap:
		return Bootstrap(a.Server)
	case answer.SanChain, answer.San:
		return "", fmt.Errorf("grub: %T: %w: sanboot needs iPXE, which the Secure Boot path does not run", a, ErrNoGRUBForm)
	}
	return "", fmt.Errorf("grub: %T: %w", a, ErrNoGRUBForm)
}

// Quote is s as one GRUB word that GRUB takes literally: single quotes,
// each ' written '\”. It refuses control characters, which would end a
// line (and a command) or reach the terminal.
func Quote(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%q: control character", s)
		}
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// text is a message as a quoted word for echo: control characters
// become spaces; "overboot: " first, so it never reads as an option.
func text(m string) string {
	m = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, m)
	q, _ := Quote("overboot: " + m) // no control character left
	return q
}

// File is a URL of this server as a GRUB file name: its path and query,
// quoted, read from GRUB's root, the TFTP server GRUB was loaded from.
// Debian's signed netboot image has tftp but no http module (asked for
// http.mod, it finds none, and under Secure Boot could load none), so
// everything GRUB reads comes from that server's TFTP, which answers
// these names as its HTTP does (the server's TFTP files).
func File(u string) (string, error) {
	if err := boot.CheckURL(u); err != nil {
		return "", err
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	if p.User != nil || p.Fragment != "" {
		return "", fmt.Errorf("%s: no user or fragment in a URL for GRUB", u)
	}
	path := cmp.Or(p.EscapedPath(), "/")
	if p.RawQuery != "" {
		path += "?" + p.RawQuery
	}
	return Quote(path)
}

// Bootstrap is the static grub.cfg of the server at base: it asks for
// the machine's own config with what GRUB knows of it (the MAC it
// booted from, its CPU and platform), and falls through to the
// firmware's next boot device when none comes. The query is in double
// quotes: GRUB expands the variables there, and & would end the command
// outside quotes.
func Bootstrap(base string) (string, error) {
	f, err := queryFile(base)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# overboot bootstrap: fetch this machine's config from the server\n")
	fmt.Fprintf(&b, "for overboot_try in %s; do\n", tries(DefaultAttempts))
	fmt.Fprintf(&b, "\tconfigfile %s\n", f)
	b.WriteString("\tsleep 3\n")
	b.WriteString("done\n")
	fmt.Fprintf(&b, "echo %s\n", text("no config from the server, falling through to the next boot device"))
	b.WriteString("sleep 5\n")
	b.WriteString("exit\n")
	return b.String(), nil
}

// queryFile is the machine's own config on the server at base, the
// query filled in by GRUB (its variables in double quotes, the rest
// single-quoted).
func queryFile(base string) (string, error) {
	f, err := File(strings.TrimSuffix(base, "/") + Path)
	if err != nil {
		return "", err
	}
	// Over TFTP, as every file GRUB reads (File).
	return f + `"?mac=${net_default_mac}&buildarch=${grub_cpu}&platform=${grub_platform}"`, nil
}

// tries is 1 2 ... n, the words of a loop over n attempts.
func tries(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fmt.Sprint(i + 1)
	}
	return strings.Join(w, " ")
}

// Refusal says why the machine cannot boot and gives up: GRUB's exit
// returns to the firmware, which tries its next boot device.
func Refusal(why string) string {
	return "echo " + text(why) + "\nsleep 10\nexit\n"
}

func comment(c string) (string, error) {
	if strings.ContainsAny(c, "\r\n") {
		return "", fmt.Errorf("grub: comment %q: must be one line", c)
	}
	if c == "" {
		return "", nil
	}
	return "# overboot: " + c + "\n", nil
}

func kernel(k answer.Kernel) (string, error) {
	var errs []error
	kf, err := File(k.Kernel)
	if err != nil {
		errs = append(errs, fmt.Errorf("grub: kernel URL: %w", err))
	}
	if len(k.Initrds) == 0 {
		errs = append(errs, errors.New("grub: no initrd"))
	}
	if len(k.InitrdMirrors) > len(k.Initrds) {
		errs = append(errs, fmt.Errorf("grub: mirrors for %d initrds, there are %d", len(k.InitrdMirrors), len(k.Initrds)))
	}
	var initrds []string
	for i, u := range k.Initrds {
		f, err := File(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("grub: initrd %d URL: %w", i, err))
		}
		initrds = append(initrds, f)
	}
	var args []string
	for _, a := range k.Args {
		if why := boot.CheckToken(a); why != "" {
			errs = append(errs, fmt.Errorf("grub: kernel argument %q: %s", a, why))
			continue
		}
		q, err := Quote(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("grub: kernel argument: %w", err))
		}
		args = append(args, q)
	}
	c, err := comment(k.Comment)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	// Mirrors are other servers: GRUB reads only from the TFTP server it
	// was loaded from, so it has none; the agent has them (the document).
	argv := ""
	if len(args) > 0 {
		argv = " " + strings.Join(args, " ")
	}

	var b strings.Builder
	b.WriteString(c)
	fmt.Fprintf(&b, "for overboot_try in %s; do\n", tries(DefaultAttempts))
	fmt.Fprintf(&b, "\techo %s\n", text("loading kernel and initrd"))
	fmt.Fprintf(&b, "\tif linux %s%s; then\n", kf, argv)
	fmt.Fprintf(&b, "\t\tif initrd %s; then\n", strings.Join(initrds, " "))
	fmt.Fprintf(&b, "\t\t\techo %s\n", text("booting"))
	b.WriteString("\t\t\tboot\n")
	b.WriteString("\t\tfi\n")
	b.WriteString("\tfi\n")
	fmt.Fprintf(&b, "\tsleep %d\n", int(DefaultRetryDelay/time.Second))
	b.WriteString("done\n")
	fmt.Fprintf(&b, "echo %s\n", text(fmt.Sprintf("boot failed after %d attempts, falling through to the next boot device", DefaultAttempts)))
	b.WriteString("sleep 5\n")
	b.WriteString("exit\n")
	return b.String(), nil
}

// menu renders a menu's entries as GRUB menu entries, each loading its
// URL's config. iPXE's login form (LoginURL) has no GRUB form: it is
// left out here (a menu of nothing else is an error). The server gives
// GRUB the console login instead: an entry (answer.ConsoleLoginKey)
// whose config boots the kernel that asks on the console.
func menu(m answer.Menu) (string, error) {
	if len(m.Items) == 0 {
		return "", fmt.Errorf("grub: menu: %w: the login form is iPXE's, and the menu has nothing else", ErrNoGRUBForm)
	}
	var errs []error
	var b strings.Builder
	def := m.Default
	if def == "" || def == "login" {
		def = m.Items[0].Key
	}
	found := false
	for _, it := range m.Items {
		found = found || it.Key == def
	}
	if !found {
		errs = append(errs, fmt.Errorf("grub: menu: default %q is not an item", def))
	}
	b.WriteString("# overboot menu\n")
	fmt.Fprintf(&b, "set timeout=%d\n", int(m.Timeout.Round(time.Second)/time.Second))
	dq, err := Quote(def)
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(&b, "set default=%s\n", dq)
	fmt.Fprintf(&b, "echo %s\n", text(m.Title))
	for _, it := range m.Items {
		f, err := File(it.URL)
		if err != nil {
			errs = append(errs, fmt.Errorf("grub: menu item %s: %w", it.Key, err))
			continue
		}
		label, err1 := Quote(strings.TrimLeft(it.Label, "-"))
		id, err2 := Quote(it.Key)
		if err := errors.Join(err1, err2); err != nil || it.Label == "" || it.Key == "" {
			errs = append(errs, fmt.Errorf("grub: menu item %q: want a key and a one-line label: %v", it.Key, err))
			continue
		}
		fmt.Fprintf(&b, "menuentry %s --id %s {\n\tconfigfile %s\n}\n", label, id, f)
	}
	b.WriteString("menuentry 'Exit (next boot device)' --id 'exit' {\n\texit\n}\n")
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return b.String(), nil
}

// wait shows why, waits and asks for the machine's config again.
func wait(w answer.Wait) (string, error) {
	f, err := queryFile(w.Server)
	if err != nil {
		return "", fmt.Errorf("grub: wait: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "echo %s\n", text(w.Message))
	if w.Notice != "" {
		fmt.Fprintf(&b, "echo %s\n", text(w.Notice))
	}
	if s := int(w.Wait.Round(time.Second) / time.Second); s > 0 {
		fmt.Fprintf(&b, "sleep %d\n", s)
	}
	fmt.Fprintf(&b, "configfile %s\n", f)
	return b.String(), nil
}
