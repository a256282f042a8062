package mkimage

import (
	"bytes"
	"path"
	"strconv"
	"strings"
)

// fstabDropPrefix starts every line FixFstab comments out, so the booted
// system's administrator can see what the image build changed and why.
const fstabDropPrefix = "# overboot: netboot root, dropped: "

// FixFstab rewrites an /etc/fstab for a network-booted root: entries whose
// mount point is "/" (the root is the overlay the agent already mounted) and
// entries of type "swap" (the devices do not exist on a diskless machine, and
// systemd would wait for them) are commented out. Every other line, comments
// and blank lines included, is kept byte for byte. dropped lists the dropped
// entries as they were, without their line ending; out is in itself when
// nothing is dropped.
//
// Fields follow fstab(5): separated by blanks (spaces or tabs), octal escapes
// such as \040 in the mount point. Lines with fewer than three fields are
// kept: they are not entries mount(8) would use.
func FixFstab(in []byte) (out []byte, dropped []string) {
	var b bytes.Buffer
	rest := in
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		body := strings.TrimRight(string(line), "\r\n")
		if !dropFstabLine(body) {
			b.Write(line)
			continue
		}
		dropped = append(dropped, body)
		b.WriteString(fstabDropPrefix)
		b.WriteString(strings.TrimLeft(body, " \t"))
		b.WriteString(string(line[len(body):])) // the original line ending
	}
	if len(dropped) == 0 {
		return in, nil
	}
	return b.Bytes(), dropped
}

// dropFstabLine reports whether an fstab line (without its ending) is a root
// or swap entry.
func dropFstabLine(line string) bool {
	f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(f) < 3 || strings.HasPrefix(f[0], "#") {
		return false
	}
	if f[2] == "swap" {
		return true
	}
	mp := unescapeFstab(f[1])
	return strings.HasPrefix(mp, "/") && path.Clean(mp) == "/"
}

// unescapeFstab decodes the octal escapes (\040 for a space, \011 for a tab,
// \134 for a backslash) fstab(5) uses in its fields.
func unescapeFstab(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
