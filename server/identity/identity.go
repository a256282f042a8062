package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/overboot/overboot/boot"
)

// Paths of the files Keys writes.
const (
	HostKeyPath   = "/etc/ssh/ssh_host_ed25519_key"
	SSHDDropIn    = "/etc/ssh/sshd_config.d/overboot-hostkey.conf"
	sshdDropInTxt = "# written by overboot at boot: this machine's own host key, not the image's shared ones\nHostKey " + HostKeyPath + "\n"
)

// Keys are a machine's SSH host keys, as stored.
type Keys struct {
	Ed25519    string `json:"ed25519"`     // OpenSSH private key (PEM)
	Ed25519Pub string `json:"ed25519_pub"` // authorized_keys line
}

// NewKeys makes a host key pair; comment names the machine.
func NewKeys(comment string) (Keys, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Keys{}, err
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return Keys{}, err
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(spub)), "\n") + " " + comment + "\n"
	return Keys{Ed25519: string(pem.EncodeToMemory(block)), Ed25519Pub: line}, nil
}

// ParseKeys reads stored keys.
func ParseKeys(s string) (Keys, error) {
	var k Keys
	if err := json.Unmarshal([]byte(s), &k); err != nil || k.Ed25519 == "" {
		return Keys{}, fmt.Errorf("stored host keys: unreadable")
	}
	return k, nil
}

// String is the stored form.
func (k Keys) String() string {
	b, _ := json.Marshal(k)
	return string(b)
}

// Fingerprint is the public key's SHA-256 fingerprint, as ssh-keygen -l
// shows it.
func (k Keys) Fingerprint() string {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.Ed25519Pub))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pub)
}

// Files are what the machine's root gets: the key (0600), its public half
// (0644), and an sshd drop-in that makes sshd offer only this key.
func (k Keys) Files() []boot.IdentityFile {
	return []boot.IdentityFile{
		{Path: HostKeyPath, Mode: 0o600, Data: k.Ed25519},
		{Path: HostKeyPath + ".pub", Mode: 0o644, Data: k.Ed25519Pub},
		{Path: SSHDDropIn, Mode: 0o644, Data: sshdDropInTxt},
	}
}

// NewMachineID is a random machine-id (machine-id(5): 128 bits, hex).
func NewMachineID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

var hostLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Hostname is a machine's host name: the configuration's, else the one its
// DHCP server gave it (first label), else "ob-" and its MAC.
func Hostname(mac net.HardwareAddr, configured, dhcp string) string {
	for _, h := range []string{configured, dhcp} {
		h = strings.ToLower(strings.SplitN(h, ".", 2)[0])
		if hostLabelRE.MatchString(h) {
			return h
		}
	}
	return "ob-" + strings.ReplaceAll(mac.String(), ":", "")
}
