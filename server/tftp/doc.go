// Package tftp is overboot's TFTP server: it hands PXE firmware the iPXE
// binaries it chain-loads (undionly.kpxe, ipxe.efi, snponly.efi from
// Debian's ipxe package), read-only, from one directory.
//
//	Server{Root: dir}.Serve(ctx, conn) // conn: the caller's UDP listener
//
// It is our own, small, rather than a kept library: github.com/pin/tftp
// (v1 and v3), the obvious choice, is not served by the Go module proxy
// this project builds from. It owns the TFTP codec (packet.go, both
// ends), option negotiation (options.go), the server (server.go,
// transfer.go) and a client (client.go) for tests, the bench and checks.
//
// What it does:
//   - RFC 1350: RRQ only; a WRQ is answered with ERROR 2 (access
//     violation). Each transfer runs from a UDP socket of its own (its
//     TID), connected to the client's, so the kernel drops packets from
//     other ports. A packet not ACKed within the timeout is sent again,
//     Retries times, then the transfer is given up. Duplicate ACKs are
//     ignored, never answered with DATA (the Sorcerer's Apprentice bug,
//     RFC 1123 section 4.2.3.1). An ERROR from the client ends the
//     transfer. Files of more than 65535 blocks roll the block number
//     over to 0, as tftp-hpa and iPXE do.
//   - Mode octet only. netascii (and mail) are refused with ERROR 0
//     saying so: the files are binaries, which netascii's CR LF
//     conversion would corrupt; PXE ROMs and iPXE ask octet.
//   - RFC 2347 options (OACK); unknown options and refused values are
//     left out of the OACK, not echoed. RFC 2348 blksize, granted up to
//     MaxBlockSize (1468 by default: one Ethernet frame; at most 65464).
//     RFC 2349 tsize, answered with the file's size, and timeout, 1..10
//     s accepted (the RFC's 255 would let a vanished client hold a slot
//     for minutes). RFC 7440 windowsize, granted up to MaxWindowSize (16
//     by default); a partial window's ACK restarts the window after it.
//   - Files are confined to Root by os.Root: no "..", no symlink out of
//     it; one leading "/" names Root (as tftp-hpa --secure: GRUB asks
//     "/grub/grub.cfg"), so "/etc/passwd" is Root/etc/passwd;
//     only regular files. Mind that Debian's /usr/lib/ipxe/ipxe.efi is a
//     symlink to /boot/ipxe.efi: serve a directory holding copies.
//   - Bounds: MaxTransfers in flight (64 by default), MaxPerClient per IP
//     address (8). A request over a cap is dropped unanswered, so that a
//     PXE ROM retransmits it and gets in later instead of failing its
//     boot on an ERROR; a retransmitted RRQ of a transfer in flight is
//     dropped too. Malformed, truncated or oversized (over RFC 2347's 512
//     bytes) requests get ERROR 4 naming what was wrong and change
//     nothing. ParseRequest, the request parser, is pure and fuzzed.
//   - Logs (slog): at Info one line per finished, refused or
//     client-ended transfer, nothing per block; a failed transfer at
//     Warn; malformed requests at Debug; requests dropped over a cap at
//     Warn, at most one line a second.
//
// Not done: multicast TFTP (RFC 2090) and MTFTP; writing; netascii. With
// a listener on an unspecified address (":69"), transfers also bind to
// the unspecified address and the kernel picks their source address: on
// a host with several addresses on the boot network, listen on the one
// the clients use. A flood of spoofed RRQs can fill the slots for
// Timeout × (Retries+1) each, as with any TFTP server: serve it on a
// boot network only.
//
// It needs no root, except to listen on port 69 (the caller's listener).
// Tests run on 127.0.0.1, and against tftp-hpa's client when `tftp` is
// installed.
package tftp
