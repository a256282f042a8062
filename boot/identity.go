package boot

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Identity makes one machine itself in the booted system, when every
// machine boots the same image: its host name, a stable machine-id (what
// systemd-networkd derives its DHCP client identifier from), and files the
// server renders for it (SSH host keys, templates). The agent writes them
// into the new root before switch_root. Files may be secret (a host's
// private key): they travel only in the single-use document, and the
// agent prints their paths and sizes, never their contents.
type Identity struct {
	Hostname  string         `json:"hostname,omitempty"`
	MachineID string         `json:"machine_id,omitempty"` // 32 lowercase hex digits (machine-id(5))
	Files     []IdentityFile `json:"files,omitempty"`
}

// IdentityFile is one file written into the root.
type IdentityFile struct {
	Path string `json:"path"` // absolute and clean, e.g. /etc/ssh/ssh_host_ed25519_key
	Mode uint32 `json:"mode"` // permission bits, e.g. 0600 (384)
	Data string `json:"data"` // the content (text)
}

var machineIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// forbiddenRoots are where a file must not go: the kernel's filesystems
// and the mounts the agent moves into the root.
var forbiddenRoots = []string{"/proc", "/sys", "/dev", "/run"}

func (id *Identity) validate(bad func(field, format string, args ...any)) {
	if id.Hostname != "" && (len(id.Hostname) > 64 || !hostnameRE.MatchString(id.Hostname)) {
		bad("identity.hostname", "%q: want a host name of letters, digits and '-' (at most 64)", id.Hostname)
	}
	if id.MachineID != "" && (!machineIDRE.MatchString(id.MachineID) || id.MachineID == strings.Repeat("0", 32)) {
		bad("identity.machine_id", "want 32 lowercase hex digits, not all zero")
	}
	seen := map[string]bool{}
	for i, f := range id.Files {
		field := fmt.Sprintf("identity.files[%d]", i)
		switch {
		case !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/":
			bad(field+".path", "%q: want a clean absolute file path", f.Path)
		case seen[f.Path]:
			bad(field+".path", "%q: given twice", f.Path)
		}
		for _, r := range forbiddenRoots {
			if f.Path == r || strings.HasPrefix(f.Path, r+"/") {
				bad(field+".path", "%q: not under %s", f.Path, r)
			}
		}
		if f.Path == "/etc/hostname" || f.Path == "/etc/machine-id" {
			bad(field+".path", "%q: given by hostname or machine_id", f.Path)
		}
		seen[f.Path] = true
		if f.Mode&^0o7777 != 0 {
			bad(field+".mode", "%#o: permission bits only", f.Mode)
		}
	}
}
