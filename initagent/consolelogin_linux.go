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

// AskSecret reads with echo off (term.ReadPassword clears ECHO in the
// terminal's termios and restores it after).
func (c *console) AskSecret(prompt string) (string, error) {
	if _, err := fmt.Fprint(c.f, prompt); err != nil {
		return "", err
	}
	b, err := term.ReadPassword(int(c.f.Fd()))
	fmt.Fprint(c.f, "\r\n") // the Enter that was not echoed
	return string(b), err
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
