package initagent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/overboot/overboot/boot"
)

// consoleLogin runs a ConsoleLogin step on /dev/console.
func (e *LinuxExecutor) consoleLogin(ctx context.Context, s ConsoleLogin) (boot.Document, error) {
	pr, err := openConsole("/dev/console")
	if err != nil {
		return boot.Document{}, err
	}
	defer pr.Close()
	return consoleLogin(ctx, e.Client, s, pr, nil, e.progress)
}

// console is a Prompter on a terminal: the kernel's console (a serial
// line or a VT), opened without becoming the agent's controlling
// terminal.
type console struct{ f *os.File }

func openConsole(path string) (*console, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("console login: %w: a console login needs a console (console= on the kernel command line)", err)
	}
	if !term.IsTerminal(int(f.Fd())) {
		f.Close()
		return nil, fmt.Errorf("console login: %s is not a terminal: a console login needs one", path)
	}
	return &console{f}, nil
}

func (c *console) Close() error { return c.f.Close() }

func (c *console) Say(line string) error {
	_, err := fmt.Fprintf(c.f, "\r\n%s\r\n", line)
	return err
}

func (c *console) Ask(prompt string) (string, error) {
	if _, err := fmt.Fprint(c.f, prompt); err != nil {
		return "", err
	}
	return readLine(c.f)
}

// SecretHint is the line the console shows once echo is off, before the
// password's prompt: what is typed from then on is not shown.
const SecretHint = "(echo is off: what you type now is not shown)"

// AskSecret reads a line with echo off: ECHO cleared in the terminal's
// termios (line editing and the signals stay), then SecretHint and the
// prompt, so nothing typed after they show is echoed; the settings are
// put back after.
func (c *console) AskSecret(prompt string) (string, error) {
	fd := int(c.f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("read the terminal's settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turn the terminal's echo off: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	if _, err := fmt.Fprintf(c.f, "%s\r\n%s", SecretHint, prompt); err != nil {
		return "", err
	}
	line, err := readLine(c.f)
	fmt.Fprint(c.f, "\r\n") // the Enter that was not echoed
	return line, err
}

// maxLine bounds a line typed on the console.
const maxLine = 1024

// readLine reads one line a byte at a time, so nothing after it is
// taken from the terminal (the password read next reads its own).
func readLine(f *os.File) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxLine {
		n, err := f.Read(b)
		if n == 1 {
			if b[0] == '\n' || b[0] == '\r' {
				return string(line), nil
			}
			line = append(line, b[0])
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", errors.New("the console closed")
		}
	}
	return "", fmt.Errorf("a line longer than %d bytes", maxLine)
}
