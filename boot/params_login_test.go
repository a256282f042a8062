package boot

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseConsoleLogin(t *testing.T) {
	got, err := ParseConsoleLogin(strings.NewReader(`{"username": "alice", "password": "Open & 4+2; \"42%!\""}`))
	if err != nil || got != (ConsoleLogin{Username: "alice", Password: `Open & 4+2; "42%!"`}) {
		t.Fatalf("ParseConsoleLogin = %+v, %v", got, err)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"empty":          {``, "want a JSON object"},
		"array":          {`["alice"]`, "want a JSON object"},
		"unknown member": {`{"username":"a","password":"p","admin":true}`, `unknown member "admin"`},
		"repeated":       {`{"username":"a","password":"p","username":"b"}`, "username given twice"},
		"number":         {`{"username":"a","password":42}`, "password: want a string"},
		"missing":        {`{"username":"a"}`, "password missing"},
		"trailing":       {`{"username":"a","password":"p"} {}`, "after the JSON object"},
		"unclosed":       {`{"username":"a","password":"p"`, "malformed"},
		"too long":       {`{"username":"a","password":"` + strings.Repeat("x", MaxConsoleLoginSize) + `"}`, "longer than"},
	} {
		_, err := ParseConsoleLogin(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// TestConsoleLoginHidesPassword: printed or logged, a login shows no
// password.
func TestConsoleLoginHidesPassword(t *testing.T) {
	c := ConsoleLogin{Username: "alice", Password: "s3cret-pw"}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "login", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), b.String()} {
		if strings.Contains(s, "s3cret") || !strings.Contains(s, "alice") {
			t.Errorf("%q", s)
		}
	}
}

func FuzzParseConsoleLogin(f *testing.F) {
	f.Add(`{"username":"alice","password":"pw"}`)
	f.Add(`{"password":"","username":"\u00e9"}`)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseConsoleLogin(strings.NewReader(in))
		if err != nil {
			return
		}
		b, err := json.Marshal(map[string]string{"username": c.Username, "password": c.Password})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxConsoleLoginSize {
			return // escaping grew it
		}
		back, err := ParseConsoleLogin(strings.NewReader(string(b)))
		if err != nil || back != c {
			t.Fatalf("round trip of %q: %+v %v", in, back, err)
		}
	})
}
