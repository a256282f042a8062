// Package answer decides what a machine gets for each of its requests,
// from what is known about it: the answer to a script request (Answer: a
// kernel boot, a menu, a wait for approval, a refusal, a sanboot) and
// the boot document (Document). It is pure: no HTTP, no SQL, no files.
// The server's handlers parse a request, admit it (package
// server/enroll), run the side effects (spend a token, attach a disk,
// make an identity) and hand the facts here; a firmware's package
// renders the Answer (server/ipxe for iPXE; another language sits beside
// it, not inside).
package answer
