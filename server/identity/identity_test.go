package identity

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestKeys(t *testing.T) {
	k, err := NewKeys("root@lab-01")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.ParseRawPrivateKey([]byte(k.Ed25519)); err != nil {
		t.Fatalf("private key: %v", err)
	}
	back, err := ParseKeys(k.String())
	if err != nil || back != k {
		t.Fatalf("round trip: %v", err)
	}
	if fp := k.Fingerprint(); !strings.HasPrefix(fp, "SHA256:") {
		t.Errorf("fingerprint %q", fp)
	}
	k2, _ := NewKeys("root@lab-02")
	if k2.Fingerprint() == k.Fingerprint() {
		t.Error("two machines, one key")
	}
	files := k.Files()
	if files[0].Mode != 0o600 || files[1].Mode != 0o644 || !strings.Contains(files[2].Data, "HostKey "+HostKeyPath) {
		t.Errorf("files: %+v", files)
	}
	if _, err := ParseKeys("{}"); err == nil {
		t.Error("empty keys parsed")
	}
}

func TestHostname(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	for _, tc := range [][3]string{
		{"lab-01", "dhcp", "lab-01"},
		{"", "pc7.example.org", "pc7"},
		{"", "", "ob-525400123456"},
		{"", "bad_name", "ob-525400123456"},
	} {
		if got := Hostname(mac, tc[0], tc[1]); got != tc[2] {
			t.Errorf("Hostname(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
	id, _ := NewMachineID()
	if len(id) != 32 {
		t.Errorf("machine id %q", id)
	}
}

func TestTemplates(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/motd.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/motd.d/overboot"), []byte("{{.Hostname}} ({{.MAC}}) profile {{.Profile}} labels {{range .Labels}}{{.}} {{end}}\n"), 0o640)
	os.WriteFile(filepath.Join(dir, "etc/hosts.extra"), []byte("{{.IP}} {{.Hostname}}\n"), 0o644)
	ts, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ts.Render(Vars{Hostname: "lab-01", MAC: "52:54:00:12:34:56", IP: "192.0.2.7", Profile: "lab", Labels: []string{"gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Path != "/etc/hosts.extra" || files[0].Data != "192.0.2.7 lab-01\n" ||
		files[1].Path != "/etc/motd.d/overboot" || files[1].Mode != 0o640 || files[1].Data != "lab-01 (52:54:00:12:34:56) profile lab labels gpu \n" {
		t.Errorf("rendered: %+v", files)
	}
	for name, setup := range map[string]func(d string){
		"parse error":   func(d string) { os.WriteFile(filepath.Join(d, "x"), []byte("{{.Hostname"), 0o644) },
		"unknown field": func(d string) { os.WriteFile(filepath.Join(d, "x"), []byte("{{.Nope}}"), 0o644) },
		"hostname file": func(d string) {
			os.MkdirAll(filepath.Join(d, "etc"), 0o755)
			os.WriteFile(filepath.Join(d, "etc/hostname"), nil, 0o644)
		},
		"under proc": func(d string) {
			os.MkdirAll(filepath.Join(d, "proc"), 0o755)
			os.WriteFile(filepath.Join(d, "proc/x"), nil, 0o644)
		},
		"symlink out": func(d string) { os.Symlink("/etc/passwd", filepath.Join(d, "passwd")) },
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			setup(d)
			ts, err := LoadTemplates(d)
			if err == nil {
				_, err = ts.Render(Vars{})
			}
			if err == nil {
				t.Error("accepted")
			}
		})
	}
}
