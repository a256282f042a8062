package answer_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/ipxe"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const base = "http://192.0.2.10"

// secure is the server's HTTPS base URL, with tlsServer's configuration.
const (
	secure    = "https://192.0.2.10:8443"
	tlsServer = "[server]\nurl = http://192.0.2.10\ntls-listen = :8443\n"
)

var (
	kernel    = boot.Digest("sha256:" + strings.Repeat("1", 64))
	initramfs = boot.Digest("sha256:" + strings.Repeat("2", 64))
	driver    = boot.Digest("sha256:" + strings.Repeat("3", 64))
	root      = boot.Digest("sha256:" + strings.Repeat("4", 64))
	token     = strings.Repeat("ab", 32)
)

// profile parses one [profile NAME] section (and any others in extra)
// as the server's configuration would.
func profile(t *testing.T, name, keys string, extra ...string) *config.Profile {
	t.Helper()
	text := "[profile " + name + "]\nkernel = k\ninitramfs = i\nroot = r\n" + keys + strings.Join(extra, "")
	if strings.Contains(keys, "sanboot") {
		text = "[profile " + name + "]\n" + keys + strings.Join(extra, "")
	}
	c, err := config.Parse("golden.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return c.Profiles[name]
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got):\n%s", path, d)
	}
}

func render(t *testing.T, a answer.Answer) string {
	t.Helper()
	text, err := ipxe.Render(a)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestScripts: what each kind of profile answers a machine's script
// request, rendered for iPXE, against golden files.
func TestScripts(t *testing.T) {
	m := answer.Machine{MAC: "52:54:00:12:34:56", Hostname: "lab-01"}
	arts := answer.Artifacts{Kernel: kernel, Initramfs: initramfs}
	upper := "upper = iscsi\nenroll = approve\niscsi-recovery = 60s\n"
	for _, tc := range []struct {
		name string
		a    func() (answer.Answer, error)
	}{
		{"ram", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "ram", "cmdline = console=ttyS0 quiet\nonfail = shell\n"), arts, token)
		}},
		{"ram-driver", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "ram", ""), answer.Artifacts{Kernel: kernel, Initramfs: initramfs, Driver: driver}, token)
		}},
		{"lazy", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "lazy", "lower-mode = lazy\nlower-cache = 128M\n"), arts, token)
		}},
		// Each download falls back to the mirrors in order.
		{"mirrors", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "lazy", "lower-mode = lazy\n"), answer.Artifacts{Kernel: kernel, Initramfs: initramfs, Driver: driver, Mirrors: mirrors}, token)
		}},
		{"fill", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "fill", "lower-mode = fill\n"), arts, token)
		}},
		// With HTTPS, the document's URL is https; the kernel and the
		// initramfs stay HTTP (iPXE fetches them, checked by digest).
		{"tls", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "ram", ""), answer.Artifacts{Kernel: kernel, Initramfs: initramfs, Secure: secure}, token)
		}},
		{"iscsi-upper", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "lab", upper), arts, token)
		}},
		{"login-user", func() (answer.Answer, error) {
			return answer.BootFor(base, answer.Machine{MAC: m.MAC, User: "alice"}, profile(t, "classroom", upper), arts, token)
		}},
		{"sanboot-chain", func() (answer.Answer, error) {
			return answer.BootFor(base, m, profile(t, "win", "sanboot = /srv/base.raw\nenroll = approve\n"), answer.Artifacts{}, token)
		}},
		{"sanboot", func() (answer.Answer, error) {
			return answer.SanFor(m, "win", "192.0.2.10:3260", "iqn.2026-11.org.overboot:m-525400123456-d7", "iqn.2026-11.org.overboot:i-525400123456",
				boot.CHAP{User: "52-54-00-12-34-56", Secret: "initiator-secret-0123", TargetUser: "t-52-54-00-12-34-56", TargetSecret: "target-secret-456789"}), nil
		}},
		{"login-menu", func() (answer.Answer, error) {
			return answer.MenuFor(base, m, profile(t, "classroom", "enroll = login\nupper = iscsi\nmenu = guest\nmenu-timeout = 15s\nmenu-default = login\n",
				"[profile guest]\nkernel = k\ninitramfs = i\nroot = r\n"), token, false), nil
		}},
		// The same menu for a machine that logs in on the console: the
		// login item chains the console login's boot, the default follows.
		{"console-login-menu", func() (answer.Answer, error) {
			return answer.MenuFor(base, m, profile(t, "classroom", "enroll = login\nupper = iscsi\nmenu = guest\nmenu-timeout = 15s\nmenu-default = login\n",
				"[profile guest]\nkernel = k\ninitramfs = i\nroot = r\n"), token, true), nil
		}},
		// The console login's boot: overboot.login, no document URL;
		// over HTTPS when the server has it (the password goes there).
		{"console-login", func() (answer.Answer, error) {
			return answer.ConsoleLoginFor(base, m, profile(t, "classroom", "enroll = login\nupper = iscsi\n"), arts, token)
		}},
		{"console-login-tls", func() (answer.Answer, error) {
			return answer.ConsoleLoginFor(base, m, profile(t, "classroom", "enroll = login\nupper = iscsi\n"), answer.Artifacts{Kernel: kernel, Initramfs: initramfs, Secure: secure}, token)
		}},
		{"pending", func() (answer.Answer, error) {
			return answer.Waiting(base, "machine 52:54:00:12:34:56 waits for approval (overboot machine approve 52:54:00:12:34:56 --address 192.0.2.66)"), nil
		}},
		{"refused", func() (answer.Answer, error) {
			return answer.Refusal{Message: "profile lab has its 200 machines (max-machines): quota exceeded: ask the administrator"}, nil
		}},
		{"bootstrap", func() (answer.Answer, error) { return answer.Bootstrap{Server: base}, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.a()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "script-"+tc.name, render(t, a))
		})
	}
}

// TestDocuments: the boot document of each kind of profile, against
// golden files: a RAM root, one read on demand (lazy, fill: with its
// dm-verity tree), an iSCSI upper with both CHAP secrets, a user's.
func TestDocuments(t *testing.T) {
	id := &boot.Identity{Hostname: "lab-01", MachineID: strings.Repeat("0f", 16)}
	tree := &answer.Tree{Hash: boot.Digest("sha256:" + strings.Repeat("5", 64)), Size: 8192, RootHash: strings.Repeat("6", 64), Salt: strings.Repeat("7", 64)}
	disk := &answer.Disk{Portal: "192.0.2.10:3260", Target: "iqn.2026-11.org.overboot:m-525400123456-d7", Initiator: "iqn.2026-11.org.overboot:i-525400123456",
		CHAP: boot.CHAP{User: "52-54-00-12-34-56", Secret: "initiator-secret-0123", TargetUser: "t-52-54-00-12-34-56", TargetSecret: "target-secret-456789"}}
	m := answer.Machine{MAC: "52:54:00:12:34:56"}
	for _, tc := range []struct {
		name string
		f    answer.DocumentFacts
	}{
		{"ram", answer.DocumentFacts{Profile: profile(t, "ram", "upper-size = 50%\n")}},
		{"lazy", answer.DocumentFacts{Profile: profile(t, "lazy", "lower-mode = lazy\n"), Root: answer.Image{Tree: tree}}},
		{"lazy-mirrors", answer.DocumentFacts{Profile: profile(t, "lazy", "lower-mode = lazy\n"), Root: answer.Image{Tree: tree}, Mirrors: mirrors}},
		{"ram-mirrors", answer.DocumentFacts{Profile: profile(t, "ram", ""), Mirrors: mirrors}},
		{"fill", answer.DocumentFacts{Profile: profile(t, "fill", "lower-mode = fill\ninit = /lib/systemd/systemd\n"), Root: answer.Image{Tree: tree}}},
		{"iscsi-upper", answer.DocumentFacts{Profile: profile(t, "lab", "upper = iscsi\nenroll = approve\n"), Disk: disk}},
		{"login-user", answer.DocumentFacts{Profile: profile(t, "classroom", "upper = iscsi\nenroll = login\n"), Disk: disk, Machine: answer.Machine{MAC: m.MAC, User: "alice"}}},
		// Reports over HTTPS, the image over HTTP (digest, dm-verity).
		{"tls", answer.DocumentFacts{Profile: profile(t, "lazy", "lower-mode = lazy\n"), Root: answer.Image{Tree: tree}, Mirrors: mirrors, Secure: secure}},
		// lower-tls: the image and its tree over HTTPS too, from this
		// server and the https mirror only.
		{"lower-tls", answer.DocumentFacts{Profile: profile(t, "lazy", "lower-mode = lazy\nlower-tls = yes\n", tlsServer), Root: answer.Image{Tree: tree}, Mirrors: mirrors, Cache: "http://192.0.2.9:3128", Secure: secure}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			f.Base, f.Identity, f.ReportToken = base, id, token
			if f.Machine.MAC == "" {
				f.Machine = m
			}
			f.Root.Digest, f.Root.Size = root, 64<<20
			doc, err := answer.Document(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "document-"+tc.name, string(b)+"\n")
			// What the agent reads back is what was made.
			back, err := boot.ParseDocument(strings.NewReader(string(b)))
			if err != nil {
				t.Fatalf("the agent refuses it: %v", err)
			}
			if d := cmp.Diff(doc, back); d != "" {
				t.Errorf("read back (-made +read):\n%s", d)
			}
		})
	}
}

// mirrors are two other servers' base URLs ([server] mirrors).
var mirrors = []string{"http://192.0.2.2", "https://cache.example:8443/overboot"}

// TestBootForRefuses: a profile whose settings make no valid command line
// is an error naming the profile, not a script.
func TestBootForRefuses(t *testing.T) {
	p := profile(t, "ram", "")
	if _, err := answer.BootFor("http://bad host", answer.Machine{MAC: "52:54:00:12:34:56"}, p, answer.Artifacts{Kernel: kernel, Initramfs: initramfs}, token); err == nil || !strings.Contains(err.Error(), "profile ram") {
		t.Errorf("a base URL with a space: %v", err)
	}
}

// TestConsoleLoginForRefusesSanboot: a sanboot runs no agent to ask.
func TestConsoleLoginForRefusesSanboot(t *testing.T) {
	p := profile(t, "win", "sanboot = /srv/base.raw\nenroll = login\n")
	if _, err := answer.ConsoleLoginFor(base, answer.Machine{MAC: "52:54:00:12:34:56"}, p, answer.Artifacts{}, token); err == nil || !strings.Contains(err.Error(), "profile win") {
		t.Errorf("a sanboot profile's console login: %v", err)
	}
}

func TestText(t *testing.T) {
	for in, want := range map[string]string{"": "-", "a\nb": "a b", "${x} #y": " {x}  y", "ok": "ok"} {
		if got := answer.Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	_ = time.Second
}
