package grub

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "'plain'",
		"":              "''",
		"it's":          `'it'\''s'`,
		"$x ${y} `z`":   "'$x ${y} `z`'",
		`a\b"c;d|e&f`:   `'a\b"c;d|e&f'`,
		"'":             `''\'''`,
		"# not comment": "'# not comment'",
	} {
		got, err := Quote(in)
		if err != nil || got != want {
			t.Errorf("Quote(%q) = %s, %v; want %s", in, got, err, want)
		}
		if w := words(t, "x "+got); len(w) != 1 || len(w[0]) != 2 || w[0][1].text != in || w[0][1].expands {
			t.Errorf("Quote(%q) lexes as %+v", in, w)
		}
	}
	for _, bad := range []string{"a\nb", "a\rb", "\x00", "tab\there", "\x7f"} {
		if _, err := Quote(bad); err == nil {
			t.Errorf("Quote(%q) accepted a control character", bad)
		}
	}
}

func TestFile(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.2.100/blobs/sha256/ab":       "'/blobs/sha256/ab'",
		"https://10.0.2.100:8443/doc":             "'/doc'",
		"http://boot.example:8080/grub?mac=1&x=2": "'/grub?mac=1&x=2'",
		"http://10.0.2.100":                       "'/'",
	} {
		if got, err := File(in); err != nil || got != want {
			t.Errorf("File(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"http://u:p@h/x", "ftp://h/x", "http://h/a b", "http://h/x#f"} {
		if got, err := File(bad); err == nil {
			t.Errorf("File(%q) = %s, want an error", bad, got)
		}
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    answer.Answer
		want string
	}{
		{"kernel", answer.Kernel{
			Comment:       "lab-01 (52:54:00:12:34:56), profile sb",
			Kernel:        "http://10.0.2.100/blobs/sha256/kk",
			KernelMirrors: []string{"http://192.0.2.2:8080/blobs/sha256/kk"},
			Initrds:       []string{"http://10.0.2.100/blobs/sha256/ii", "http://10.0.2.100/blobs/sha256/dd"},
			InitrdMirrors: [][]string{{"http://192.0.2.2:8080/blobs/sha256/ii"}, {"http://192.0.2.2:8080/blobs/sha256/dd"}},
			Args:          []string{"console=ttyS0", "overboot.doc=http://10.0.2.100/doc/tok"},
		}, `# overboot: lab-01 (52:54:00:12:34:56), profile sb
for overboot_try in 1 2 3; do
	echo 'overboot: loading kernel and initrd'
	if linux '/blobs/sha256/kk' 'console=ttyS0' 'overboot.doc=http://10.0.2.100/doc/tok'; then
		if initrd '/blobs/sha256/ii' '/blobs/sha256/dd'; then
			echo 'overboot: booting'
			boot
		fi
	fi
	sleep 3
done
echo 'overboot: boot failed after 3 attempts, falling through to the next boot device'
sleep 5
exit
`},
		{"menu", answer.Menu{Title: "overboot: lab-01, profile m", LoginURL: "http://10.0.2.100/login/t", Timeout: 10 * time.Second, Default: "p-b",
			Items: []answer.MenuItem{{Key: "p-a", Label: "Boot a", URL: "http://10.0.2.100/grub/entry/t/a"}, {Key: "p-b", Label: "Boot b's", URL: "http://10.0.2.100/grub/entry/t/b"}}},
			`# overboot menu
set timeout=10
set default='p-b'
echo 'overboot: overboot: lab-01, profile m'
menuentry 'Boot a' --id 'p-a' {
	configfile '/grub/entry/t/a'
}
menuentry 'Boot b'\''s' --id 'p-b' {
	configfile '/grub/entry/t/b'
}
menuentry 'Exit (next boot device)' --id 'exit' {
	exit
}
`},
		{"wait", answer.Wait{Server: "http://10.0.2.100:8080", Message: "waiting for approval: $(reboot)", Wait: 30 * time.Second},
			`echo 'overboot: waiting for approval: $(reboot)'
sleep 30
configfile '/grub'"?mac=${net_default_mac}&buildarch=${grub_cpu}&platform=${grub_platform}"
`},
		{"refusal", answer.Refusal{Message: "no profile for 52:54:00:12:34:56\nexit"},
			"echo 'overboot: no profile for 52:54:00:12:34:56 exit'\nsleep 10\nexit\n"},
		{"bootstrap", answer.Bootstrap{Server: "http://10.0.2.100"},
			`# overboot bootstrap: fetch this machine's config from the server
for overboot_try in 1 2 3; do
	configfile '/grub'"?mac=${net_default_mac}&buildarch=${grub_cpu}&platform=${grub_platform}"
	sleep 3
done
echo 'overboot: no config from the server, falling through to the next boot device'
sleep 5
exit
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
			words(t, got) // lexes
			grubCheck(t, got)
		})
	}
}

// grubCheck runs GRUB's own parser (grub-script-check, package
// grub-common) on a config: a syntax error fails the test.
func grubCheck(t *testing.T, cfg string) {
	t.Helper()
	tool := testneed.Tool(t, "grub-script-check")
	cmd := exec.Command(tool)
	cmd.Stdin = strings.NewReader(cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("grub-script-check: %v\n%s\nconfig:\n%s", err, out, cfg)
	}
}

// TestGRUBParsesHostile: GRUB's own parser accepts what the renderer
// writes from hostile messages, arguments and labels (the model lexer
// of the fuzz tests says each is one literal word).
func TestGRUBParsesHostile(t *testing.T) {
	for _, s := range []string{"it's", "x'; reboot; echo '", "a & b | c > d < e", "$(x) ${prefix} `y`", "\\'\\", "{ }", "#x", "\"q\""} {
		grubCheck(t, Refusal(s))
		for _, a := range []answer.Answer{
			answer.Kernel{Comment: s, Kernel: "http://10.0.2.100/k", Initrds: []string{"http://10.0.2.100/i"}, Args: []string{"console=ttyS0", "x=" + strings.ReplaceAll(s, " ", "")}},
			answer.Menu{Title: s, Items: []answer.MenuItem{{Key: "p-a", Label: s, URL: "http://10.0.2.100/grub/entry/t/a"}}},
			answer.Wait{Server: "http://10.0.2.100", Message: s, Notice: s},
		} {
			out, err := Render(a)
			if err != nil {
				continue
			}
			grubCheck(t, out)
		}
	}
}

// TestNoGRUBForm: what GRUB cannot do is an error the server answers
// as a refusal, never a config that half works.
func TestNoGRUBForm(t *testing.T) {
	for _, a := range []answer.Answer{
		answer.SanChain{URL: "http://10.0.2.100/san/t"},
		answer.San{Portal: "10.0.2.100:3260", Target: "iqn.x"},
		answer.Menu{LoginURL: "http://10.0.2.100/login/t"}, // a login item alone
	} {
		if got, err := Render(a); !errors.Is(err, ErrNoGRUBForm) {
			t.Errorf("Render(%T) = %q, %v; want ErrNoGRUBForm", a, got, err)
		}
	}
	for _, k := range []answer.Kernel{
		{Kernel: "http://10.0.2.100/k k", Initrds: []string{"http://10.0.2.100/i"}},
		{Kernel: "http://10.0.2.100/k"},
		{Kernel: "http://10.0.2.100/k", Initrds: []string{"http://10.0.2.100/i"}, Args: []string{"a\nb"}},
		{Kernel: "http://10.0.2.100/k", Initrds: []string{"http://10.0.2.100/i"}, Comment: "two\nlines"},
	} {
		if got, err := Render(k); err == nil {
			t.Errorf("Render(%+v) = %q, want an error", k, got)
		}
	}
}

// word is one word of a GRUB command: its text after quote removal, and
// whether GRUB would expand a variable in it.
type word struct {
	text    string
	expands bool
}

// words splits a config into commands and words as GRUB's lexer does
// (grub-core/script/yylex.l): single quotes literal, double quotes and
// bare words expand $, \ escapes one character outside single quotes,
// ';' and newlines end a command, '#' at a word's start comments to the
// end of the line; '{' and '}' alone are words. It fails the test on an
// unterminated quote and on | & < >, which GRUB refuses outside quotes.
func words(t *testing.T, s string) [][]word {
	t.Helper()
	var cmds [][]word
	var cmd []word
	var w word
	inWord := false
	end := func() {
		if inWord {
			cmd = append(cmd, w)
		}
		w, inWord = word{}, false
	}
	endCmd := func() {
		end()
		if len(cmd) > 0 {
			cmds = append(cmds, cmd)
		}
		cmd = nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unterminated ' in %q", s)
			}
			w.text += s[i+1 : i+1+j]
			inWord, i = true, i+1+j
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s):
					i++
					w.text += string(s[i])
				case s[i] == '$':
					w.expands = true
					w.text += "$"
				default:
					w.text += string(s[i])
				}
			}
			if i >= len(s) {
				t.Fatalf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.text += string(s[i])
			inWord = true
		case c == '#' && !inWord:
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			i += j - 1
		case c == ' ' || c == '\t':
			end()
		case c == '\n' || c == ';':
			endCmd()
		case strings.IndexByte("|&<>", c) >= 0:
			t.Fatalf("%q outside quotes in %q", c, s)
		case c < 0x20 || c == 0x7f:
			t.Fatalf("control character %q in %q", c, s)
		default:
			if c == '$' {
				w.expands = true
			}
			w.text += string(c)
			inWord = true
		}
	}
	endCmd()
	return cmds
}

// FuzzRefusal: whatever the message (a host name, a profile, an error
// text), the refusal is three commands and the message reaches echo as
// one literal word: nothing injected, nothing expanded.
func FuzzRefusal(f *testing.F) {
	for _, s := range []string{"no profile", "it's", "x'; reboot; echo '", "$(x) ${prefix}", "a\nreboot", "\\'", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		cmds := words(t, Refusal(msg))
		if len(cmds) != 3 || len(cmds[0]) != 2 || cmds[0][0].text != "echo" || cmds[1][0].text != "sleep" || cmds[2][0].text != "exit" || len(cmds[2]) != 1 {
			t.Fatalf("Refusal(%q) lexes as %+v", msg, cmds)
		}
		if cmds[0][1].expands || !strings.HasPrefix(cmds[0][1].text, "overboot: ") {
			t.Fatalf("Refusal(%q): echo's word %+v", msg, cmds[0][1])
		}
	})
}

// FuzzKernel: a kernel argument or a URL path from anywhere either is
// refused or reaches linux as exactly one literal word.
func FuzzKernel(f *testing.F) {
	for _, s := range []string{"quiet", "a'b", "x;reboot", "${root}", "p?q=1&r=2", "'", "#c"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, arg, path string) {
		k := answer.Kernel{Comment: "m", Kernel: "http://10.0.2.100/" + path, Initrds: []string{"http://10.0.2.100/i"}, Args: []string{arg, "console=ttyS0"}}
		out, err := Render(k)
		if err != nil {
			return
		}
		var linux []word
		for _, c := range words(t, out) {
			if len(c) > 1 && c[0].text == "if" && c[1].text == "linux" {
				linux = c[2:]
			}
		}
		if len(linux) != 3 || linux[1].text != arg || linux[2].text != "console=ttyS0" {
			t.Fatalf("arg %q path %q: linux words %+v", arg, path, linux)
		}
		for _, w := range linux {
			if w.expands {
				t.Fatalf("arg %q path %q: %+v expands", arg, path, w)
			}
		}
		if !strings.HasPrefix(linux[0].text, "/") {
			t.Fatalf("path %q: kernel %q", path, linux[0].text)
		}
	})
}

// FuzzMenu: a label or key from anywhere either is refused or is one
// literal word of its menuentry.
func FuzzMenu(f *testing.F) {
	for _, s := range []string{"Boot a", "b's", "}\nreboot\n{", "--id x", "$x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		m := answer.Menu{Title: label, Items: []answer.MenuItem{{Key: "p-a", Label: label, URL: "http://10.0.2.100/grub/entry/t/a"}}}
		out, err := Render(m)
		if err != nil {
			return
		}
		var entries [][]word
		for _, c := range words(t, out) {
			if c[0].text == "menuentry" {
				entries = append(entries, c)
			}
			if c[0].text == "echo" && (len(c) != 2 || c[1].expands) {
				t.Fatalf("title %q: echo %+v", label, c)
			}
		}
		if len(entries) != 2 || len(entries[0]) != 5 || entries[0][1].expands || entries[0][1].text != strings.TrimLeft(label, "-") || entries[0][3].text != "p-a" {
			t.Fatalf("label %q: entries %+v", label, entries)
		}
	})
}

// TestRenderLoginProfile: a login profile on the Secure Boot path, as the
// server makes its answers (package answer) and GRUB gets them. GRUB
// has no form: alone, the login is the kernel whose agent asks on the
// console (overboot.login, no document token on the command line); in a
// menu, an entry that loads that boot's config.
func TestRenderLoginProfile(t *testing.T) {
	c, err := config.Parse("f", strings.NewReader("[profile classroom]\nkernel = k\ninitramfs = i\nroot = r\nupper = iscsi\nenroll = login\n\n"+
		"[profile lab]\nkernel = k\ninitramfs = i\nroot = r\nupper = iscsi\nenroll = login\nmenu = guest\nmenu-timeout = 15s\n\n"+
		"[profile guest]\nkernel = k\ninitramfs = i\nroot = r\n"))
	if err != nil {
		t.Fatal(err)
	}
	const tok = "abababababababababababababababababababababababababababababababab"
	m := answer.Machine{MAC: "52:54:00:12:34:56"}
	arts := answer.Artifacts{Kernel: boot.Digest("sha256:" + strings.Repeat("1", 64)), Initramfs: boot.Digest("sha256:" + strings.Repeat("2", 64))}
	k, err := answer.ConsoleLoginFor("http://10.0.2.100", m, c.Profiles["classroom"], arts, tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(k)
	if err != nil {
		t.Fatal(err)
	}
	want := `	if linux '/blobs/sha256/` + strings.Repeat("1", 64) + `' 'overboot.login=http://10.0.2.100/login/` + tok + `?profile=classroom'; then`
	if !strings.Contains(got, want+"\n") || strings.Contains(got, "overboot.doc") {
		t.Errorf("the console login's GRUB config lacks\n%s\nor names a document:\n%s", want, got)
	}
	grubCheck(t, got)

	got, err = Render(answer.MenuFor("http://10.0.2.100"+Path, m, c.Profiles["lab"], tok, true))
	if err != nil {
		t.Fatal(err)
	}
	wantMenu := `# overboot menu
set timeout=15
set default='console-login'
echo 'overboot: overboot: 52:54:00:12:34:56, profile lab'
menuentry 'Log in on the console (your own root)' --id 'console-login' {
	configfile '/grub/console-login/` + tok + `'
}
menuentry 'Boot guest' --id 'p-guest' {
	configfile '/grub/entry/` + tok + `/guest'
}
menuentry 'Exit (next boot device)' --id 'exit' {
	exit
}
`
	if d := cmp.Diff(wantMenu, got); d != "" {
		t.Errorf("login menu (-want +got):\n%s", d)
	}
	grubCheck(t, got)
}
