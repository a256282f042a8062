// Package rescue is the initramfs's rescue shell. /bin/sh is a link to the
// agent's binary, which runs Main when it is called as sh: a POSIX shell
// from mvdan.cc/sh's interpreter (as u-root's gosh is), at the cost of
// the interpreter in the agent instead of a second Go binary in the
// initramfs (0.25 MB compressed against 1.6 MB). The agent starts it on
// the console when a boot fails with overboot.onfail=shell.
package rescue
