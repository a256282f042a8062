// Package grub renders the server's answers (package server/answer) as
// GRUB configs, for the Secure Boot path: Debian's signed shim loads
// Debian's signed GRUB netboot image (grubnetx64.efi.signed, prefix
// /grub), which reads /grub/grub.cfg from the server it was loaded from
// (Bootstrap: a static config asking for the machine's own, /grub?mac=),
// and the machine's config loads the kernel and initramfs over HTTP.
//
// Every value from outside (URLs, kernel arguments, messages, host
// names) goes into single quotes, which GRUB's lexer
// (grub-core/script/yylex.l) takes literally: no $ expansion, no
// escapes; a ' is written '\” (closed, escaped, reopened). Control
// characters are refused in values and mapped to spaces in messages, so
// no value can end a line or a command. GRUB has no TLS: https URLs are
// refused (a mirror's is skipped). It has no iSCSI initiator or login
// form either: a SanChain or San renders as an error, which the server
// answers as a Refusal.
//
// The package is pure: no I/O.
package grub
