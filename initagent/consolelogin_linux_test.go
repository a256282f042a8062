package initagent

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/internal/testneed"
)

// openPTY opens a pseudo-terminal pair: the master (the person's side)
// and the slave (the console's).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	testneed.File(t, "/dev/ptmx", "(the kernel's devpts)")
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// readUntil reads the master until out holds one of want.
func readUntil(t *testing.T, m *os.File, out *bytes.Buffer, want ...string) {
	t.Helper()
	b := make([]byte, 256)
	for !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(out.String(), w) }) {
		n, err := m.Read(b)
		out.Write(b[:n])
		if err != nil {
			t.Fatalf("waiting for %q: %v; the terminal showed %q", want, err, out.String())
		}
	}
}

// TestConsoleEcho: on a terminal, the username is echoed and the
// password is not (what is typed once SecretHint shows); echo is back
// after.
func TestConsoleEcho(t *testing.T) {
	m, s := openPTY(t)
	path := s.Name()
	c, err := openConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type res struct {
		user, pw string
		err      error
	}
	done := make(chan res, 1)
	go func() {
		var r res
		if r.user, r.err = c.Ask("username: "); r.err == nil {
			r.pw, r.err = c.AskSecret("password: ")
		}
		done <- r
	}()
	var out bytes.Buffer
	readUntil(t, m, &out, "username: ")
	m.WriteString("alice\n")
	readUntil(t, m, &out, SecretHint)
	readUntil(t, m, &out, "password: ")
	m.WriteString("s3cret pw\n")
	r := <-done
	if r.err != nil || r.user != "alice" || r.pw != "s3cret pw" {
		t.Fatalf("read %+v", r)
	}
	// The Enter, not echoed: the agent's own newline (ONLCR writes
	// \r\r\n); or the password's echo.
	readUntil(t, m, &out, "password: \r", "s3cret pw\r")
	if !strings.Contains(out.String(), "username: alice") {
		t.Errorf("the username was not echoed: %q", out.String())
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("the password was echoed: %q", out.String())
	}
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("echo not back on after the password (%v)", err)
	}
}

func TestOpenConsoleNotATerminal(t *testing.T) {
	f := t.TempDir() + "/file"
	os.WriteFile(f, nil, 0o600)
	if _, err := openConsole(f); err == nil || !strings.Contains(err.Error(), "not a terminal") {
		t.Errorf("a plain file as the console: %v", err)
	}
}
