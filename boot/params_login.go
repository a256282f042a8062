package boot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// The console login (overboot.login): the agent asks for a username and a
// password on the console and POSTs them to the URL as a ConsoleLogin
// (JSON). The server answers the user's boot Document (200), or a
// ConsoleLoginRefusal: 400 for a malformed body (nothing spent: the same
// URL again), 401 for a wrong username or password and 429 (with
// Retry-After) for too many attempts, each with the URL of the next try.

// MaxConsoleLoginSize bounds a ConsoleLogin's encoding (and a refusal's).
const MaxConsoleLoginSize = 4096

// ConsoleLogin is the body of a console login. It hides the password
// when printed or logged.
type ConsoleLogin struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// String shows the username only.
func (c ConsoleLogin) String() string { return "login " + c.Username + " password [hidden]" }

// GoString shows the username only (%#v).
func (c ConsoleLogin) GoString() string { return c.String() }

// LogValue shows the username only (log/slog).
func (c ConsoleLogin) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ConsoleLoginRefusal is the server's answer to a console login that gives
// no document: why, and the URL to try next ("" none: reboot).
type ConsoleLoginRefusal struct {
	Error string `json:"error"`
	Login string `json:"login,omitempty"`
}

// ParseConsoleLogin reads a console login's JSON strictly: one object
// whose members are username and password, each a string given once,
// nothing else and nothing after it, at most MaxConsoleLoginSize bytes.
// The errors never show the password.
func ParseConsoleLogin(r io.Reader) (ConsoleLogin, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxConsoleLoginSize+1))
	if err != nil {
		return ConsoleLogin{}, fmt.Errorf("console login: %w", err)
	}
	if len(b) > MaxConsoleLoginSize {
		return ConsoleLogin{}, fmt.Errorf("console login: longer than %d bytes", MaxConsoleLoginSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return ConsoleLogin{}, errors.New("console login: want a JSON object {\"username\": ..., \"password\": ...}")
	}
	var c ConsoleLogin
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return ConsoleLogin{}, errors.New("console login: malformed JSON object")
		}
		if key != "username" && key != "password" {
			return ConsoleLogin{}, fmt.Errorf("console login: unknown member %q", key)
		}
		if seen[key] {
			return ConsoleLogin{}, fmt.Errorf("console login: %s given twice", key)
		}
		seen[key] = true
		t, err = d.Token()
		v, ok := t.(string)
		if err != nil || !ok {
			return ConsoleLogin{}, fmt.Errorf("console login: %s: want a string", key)
		}
		if key == "username" {
			c.Username = v
		} else {
			c.Password = v
		}
	}
	if t, err := d.Token(); err != nil || t != json.Delim('}') {
		return ConsoleLogin{}, errors.New("console login: malformed JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return ConsoleLogin{}, errors.New("console login: something after the JSON object")
	}
	for _, k := range []string{"username", "password"} {
		if !seen[k] {
			return ConsoleLogin{}, fmt.Errorf("console login: %s missing", k)
		}
	}
	return c, nil
}
