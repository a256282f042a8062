// Package grub renders the server's answers (package server/answer) as
// GRUB configs, for the Secure Boot path: Debian's signed shim loads
// Debian's signed GRUB netboot image (grubnetx64.efi.signed, prefix
// /grub), which reads /grub/grub.cfg from the TFTP server it was loaded
// from (Bootstrap: a static config asking for the machine's own,
// /grub?mac=...), and the machine's config loads the kernel and the
// initramfs. That image has tftp but no http module, so every file GRUB
// reads is a path on that TFTP server (File), which answers them as the
// server's HTTP does; mirrors are left to the agent.
//
// Every value from outside (URLs, kernel arguments, messages, host
// names) goes into single quotes, which GRUB's lexer
// (grub-core/script/yylex.l) takes literally: no $ expansion, no
// escapes. A quote inside is written as a closing quote, an escaped
// quote and an opening quote. Control characters are refused in values
// and mapped to spaces in messages, so no value can end a line or a
// command. GRUB has no iSCSI initiator and no login form: a SanChain or
// San renders as an error, which the server answers as a Refusal; a
// login profile gets the console login instead (the kernel boots, its
// agent asks: answer.ConsoleLoginFor), an entry of a menu like the others.
//
// The package is pure: no I/O.
package grub
