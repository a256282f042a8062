// Package identity makes each machine itself in the booted system, when
// every machine boots the same image: its host name, a stable machine-id,
// SSH host keys of its own (ed25519, in OpenSSH's format, with an sshd
// drop-in so sshd offers only them and not the image's shared keys), and
// files an administrator writes as templates rendered per machine (what
// Warewulf's overlays and LTSP's ltsp.conf do).
//
// It makes values and files; the boot flow decides who gets which (a MAC
// proves nothing: stable host keys go only to admitted machines) and the
// state store keeps them.
package identity
