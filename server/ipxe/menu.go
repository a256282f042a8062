package ipxe

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// NoticeSetting is the iPXE setting a script leaves a message in for the
// next menu to show (e.g. after a wrong password): iPXE keeps settings
// across chained scripts, so the server keeps no state for it.
const NoticeSetting = "overboot-notice"

// MenuItem is one entry of a boot menu: chosen, it chains URL.
type MenuItem struct {
	Key   string // [a-z0-9-], unique in the menu
	Label string // shown; one line, no ${ or #
	URL   string
}

// MenuScript is a boot menu: optional login item (iPXE's login form, then
// the credentials in the query of a single-use URL), entries that chain
// other URLs, a timeout and a default. The last item exits non-zero so the
// firmware tries its next boot device.
type MenuScript struct {
	Title    string
	LoginURL string // "" = no login item; the form's username and password are appended as a query, in hex
	Items    []MenuItem
	Default  string        // "login" or an item key; "" = the first item
	Timeout  time.Duration // 0 = wait for a choice
}

var menuKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Render returns the script text.
func (m MenuScript) Render() (string, error) {
	var errs []error
	keys := map[string]bool{"exit": true}
	if m.LoginURL != "" {
		keys["login"] = true
		if err := scriptURL("login", m.LoginURL); err != nil {
			errs = append(errs, err)
		} else if strings.Contains(m.LoginURL, "?") {
			errs = append(errs, errors.New("ipxe menu: login URL has a query already"))
		}
	}
	for _, it := range m.Items {
		if !menuKeyRE.MatchString(it.Key) || keys[it.Key] {
			errs = append(errs, fmt.Errorf("ipxe menu: item key %q: want a unique [a-z0-9-] word (not login or exit)", it.Key))
		}
		keys[it.Key] = true
		if err := scriptURL("item "+it.Key, it.URL); err != nil {
			errs = append(errs, err)
		}
		if err := checkText(it.Label); err != nil {
			errs = append(errs, fmt.Errorf("ipxe menu: item %s label: %w", it.Key, err))
		}
	}
	if err := checkText(m.Title); err != nil {
		errs = append(errs, fmt.Errorf("ipxe menu: title: %w", err))
	}
	if m.LoginURL == "" && len(m.Items) == 0 {
		errs = append(errs, errors.New("ipxe menu: no items"))
	}
	def := m.Default
	if def == "" {
		def = "login"
		if m.LoginURL == "" {
			def = m.Items[0].Key
		}
	}
	if !keys[def] || def == "exit" {
		errs = append(errs, fmt.Errorf("ipxe menu: default %q is not an item", def))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString(":overboot-menu\n")
	fmt.Fprintf(&b, "menu %s\n", m.Title)
	// The notice a previous script left (a wrong password), shown once.
	fmt.Fprintf(&b, "item --gap -- ${%s}\n", NoticeSetting)
	if m.LoginURL != "" {
		b.WriteString("item login Log in (your own root)\n")
	}
	for _, it := range m.Items {
		fmt.Fprintf(&b, "item %s %s\n", it.Key, it.Label)
	}
	b.WriteString("item --gap --\n")
	b.WriteString("item exit Exit (next boot device)\n")
	timeout := ""
	if m.Timeout > 0 {
		timeout = fmt.Sprintf("--timeout %d ", m.Timeout.Milliseconds())
	}
	fmt.Fprintf(&b, "choose %s--default %s overboot-choice || goto overboot-exit\n", timeout, def)
	fmt.Fprintf(&b, "clear %s ||\n", NoticeSetting)
	b.WriteString("goto overboot-${overboot-choice}\n")
	if m.LoginURL != "" {
		b.WriteString(":overboot-login\n")
		b.WriteString("login || goto overboot-menu\n")
		// hexraw: every byte of a password survives the query. uristring
		// does not: Debian's iPXE (2019) leaves '&', '+' and ';' raw.
		fmt.Fprintf(&b, "chain --autofree %s?username=${username:hexraw}&password=${password:hexraw} || goto overboot-menu\n", m.LoginURL)
	}
	for _, it := range m.Items {
		fmt.Fprintf(&b, ":overboot-%s\n", it.Key)
		fmt.Fprintf(&b, "chain --autofree %s || goto overboot-menu\n", it.URL)
	}
	b.WriteString(":overboot-exit\n")
	b.WriteString("echo overboot: leaving the menu, falling through to the next boot device\n")
	b.WriteString("exit 1\n")
	return b.String(), nil
}

// checkText accepts one line of text for iPXE to show: no control
// characters, no ${ (expansion), no # (a comment to the tokenizer).
func checkText(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: control character", s)
		}
	}
	if strings.Contains(s, "$") || strings.Contains(s, "#") {
		return fmt.Errorf("%q: no $ or #", s)
	}
	return nil
}

// ScriptQueryURL is the URL of a machine's own script on server, as the
// bootstrap asks for it (the settings iPXE fills in identify the machine).
func ScriptQueryURL(server string) string {
	var q []string
	for _, k := range queryKeys {
		q = append(q, k.name+"="+k.ipxe)
	}
	return strings.TrimSuffix(server, "/") + ScriptPath + "?" + strings.Join(q, "&")
}

// AgainScript shows a message, waits, and asks the server for the
// machine's script again: a machine waiting for approval, or back to the
// menu after a wrong password (Notice is then shown in the menu).
type AgainScript struct {
	Server  string // base URL
	Message string // shown now
	Notice  string // left for the next menu; "" = none
	Wait    time.Duration
}

// Render returns the script text.
func (a AgainScript) Render() (string, error) {
	if err := scriptURL("server", a.Server); err != nil {
		return "", err
	}
	if err := checkText(a.Message); err != nil {
		return "", fmt.Errorf("ipxe again: message: %w", err)
	}
	if a.Notice != "" {
		if err := checkText(a.Notice); err != nil {
			return "", fmt.Errorf("ipxe again: notice: %w", err)
		}
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	// A login's password must not linger in iPXE's settings.
	b.WriteString("clear password ||\n")
	fmt.Fprintf(&b, "echo overboot: %s\n", a.Message)
	if a.Notice != "" {
		fmt.Fprintf(&b, "set %s %s\n", NoticeSetting, a.Notice)
	}
	if s := int(a.Wait.Round(time.Second) / time.Second); s > 0 {
		fmt.Fprintf(&b, "sleep %d ||\n", s)
	}
	fmt.Fprintf(&b, "chain --autofree %s || exit 1\n", ScriptQueryURL(a.Server))
	return b.String(), nil
}
