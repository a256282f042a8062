package initagent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
)

// scriptedConsole is a Prompter that answers from a script and records
// what the console showed.
type scriptedConsole struct {
	answers []string // each Ask and AskSecret takes the next
	shown   []string // Say's lines and the prompts, "secret:" marking AskSecret's
}

func (c *scriptedConsole) Say(line string) error { c.shown = append(c.shown, line); return nil }

func (c *scriptedConsole) next(prompt string) (string, error) {
	c.shown = append(c.shown, prompt)
	if len(c.answers) == 0 {
		return "", io.EOF
	}
	a := c.answers[0]
	c.answers = c.answers[1:]
	return a, nil
}

func (c *scriptedConsole) Ask(p string) (string, error)       { return c.next(p) }
func (c *scriptedConsole) AskSecret(p string) (string, error) { return c.next("secret:" + p) }

// loginServer is a fake console login endpoint: each POST is answered by
// the next of answers (status, JSON body, Retry-After); it records the
// paths and bodies it got.
type loginServer struct {
	mu      sync.Mutex
	answers []loginReply
	got     []string // "PATH BODY"
}

type loginReply struct {
	code       int
	body       string
	retryAfter string
}

func (s *loginServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusMethodNotAllowed)
		return
	}
	s.got = append(s.got, r.URL.RequestURI()+" "+string(b))
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.code)
	io.WriteString(w, a.body)
}

func refusalJSON(t *testing.T, why, next string) string {
	t.Helper()
	b, err := json.Marshal(boot.ConsoleLoginRefusal{Error: why, Login: next})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConsoleLogin: the exchange of the console login against a fake
// server: what the console shows, what is POSTed where, and what ends it.
func TestConsoleLogin(t *testing.T) {
	good := `{"version":1,"machine":"52:54:00:00:00:01 (user alice)","lower":{"http":{"url":"http://s/i","digest":"` + string(digest) + `"}},"upper":{"tmpfs":{}}}`
	const first = "/login/tok-1111?profile=classroom"
	type want struct {
		err   string   // "" = the document
		got   []string // what the server got, with SERVER for its URL
		shown []string
		slept []time.Duration
	}
	heading := "overboot login for classroom at SERVER"
	for _, tc := range []struct {
		name    string
		answers func(base string) []loginReply
		typed   []string
		want    want
	}{
		{"first try", func(string) []loginReply { return []loginReply{{200, good, ""}} },
			[]string{"alice", "correct horse"},
			want{got: []string{first + ` {"username":"alice","password":"correct horse"}`},
				shown: []string{heading, "username: ", "secret:password: "}}},
		// A wrong password: the message, the heading again, the new URL.
		{"wrong then right", func(base string) []loginReply {
			return []loginReply{{401, refusalJSON(t, "wrong username or password", base+"/login/tok-2222?profile=classroom"), ""}, {200, good, ""}}
		},
			[]string{" alice ", "battery staple", "alice", "correct horse"},
			want{got: []string{first + ` {"username":"alice","password":"battery staple"}`, `/login/tok-2222?profile=classroom {"username":"alice","password":"correct horse"}`},
				shown: []string{heading, "username: ", "secret:password: ", "wrong username or password", heading, "username: ", "secret:password: "}}},
		// An empty username is asked again, before anything is sent.
		{"empty username", func(string) []loginReply { return []loginReply{{200, good, ""}} },
			[]string{"", "  ", "alice", "pw"},
			want{got: []string{first + ` {"username":"alice","password":"pw"}`},
				shown: []string{heading, "username: ", "username: ", "username: ", "secret:password: "}}},
		// Too many attempts: the wait the server asks for, then again.
		{"limited", func(base string) []loginReply {
			return []loginReply{{429, refusalJSON(t, "too many login attempts", base+"/login/tok-3333"), "20"}, {200, good, ""}}
		},
			[]string{"alice", "pw", "alice", "pw"},
			want{got: []string{first + ` {"username":"alice","password":"pw"}`, `/login/tok-3333 {"username":"alice","password":"pw"}`},
				shown: []string{heading, "username: ", "secret:password: ", "too many login attempts (waiting 20s)", heading, "username: ", "secret:password: "},
				slept: []time.Duration{20 * time.Second}}},
		// The server is down a moment: the same URL and credentials again,
		// not a new prompt.
		{"503 then ok", func(string) []loginReply { return []loginReply{{503, "", ""}, {200, good, ""}} },
			[]string{"alice", "pw"},
			want{got: []string{first + ` {"username":"alice","password":"pw"}`, first + ` {"username":"alice","password":"pw"}`},
				shown: []string{heading, "username: ", "secret:password: "}, slept: []time.Duration{time.Second}}},
		{"used", func(string) []loginReply { return []loginReply{{404, "unknown, used or expired URL", ""}} },
			[]string{"alice", "pw"},
			want{err: "console login SERVER/login/...?...: HTTP 404 Not Found: the login URL was already used or has expired: reboot the machine",
				got: []string{first + ` {"username":"alice","password":"pw"}`}, shown: []string{heading, "username: ", "secret:password: "}}},
		{"another machine's", func(string) []loginReply { return []loginReply{{403, "this URL belongs to another machine", ""}} },
			[]string{"alice", "pw"},
			want{err: "HTTP 403 Forbidden", got: []string{first + ` {"username":"alice","password":"pw"}`}, shown: []string{heading, "username: ", "secret:password: "}}},
		// The next try's URL must be the same server's.
		{"next URL elsewhere", func(string) []loginReply {
			return []loginReply{{401, refusalJSON(t, "wrong username or password", "http://192.0.2.99/login/tok"), ""}}
		},
			[]string{"alice", "pw"},
			want{err: "wrong username or password, and the server's next login URL is not on SERVER: refused", got: []string{first + ` {"username":"alice","password":"pw"}`}, shown: []string{heading, "username: ", "secret:password: "}}},
		{"no next URL", func(string) []loginReply {
			return []loginReply{{401, refusalJSON(t, "wrong username or password", ""), ""}}
		},
			[]string{"alice", "pw"},
			want{err: "gave no URL to try again", got: []string{first + ` {"username":"alice","password":"pw"}`}, shown: []string{heading, "username: ", "secret:password: "}}},
		{"not overboot's refusal", func(string) []loginReply { return []loginReply{{401, "no", ""}} },
			[]string{"alice", "pw"},
			want{err: "without the server's reason", got: []string{first + ` {"username":"alice","password":"pw"}`}, shown: []string{heading, "username: ", "secret:password: "}}},
		{"console closed", func(string) []loginReply { return []loginReply{{200, good, ""}} },
			[]string{"alice"},
			want{err: "the console: EOF", shown: []string{heading, "username: ", "secret:password: "}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := &loginServer{}
			srv := httptest.NewServer(ls)
			defer srv.Close()
			ls.answers = tc.answers(srv.URL)
			con := &scriptedConsole{answers: tc.typed}
			var slept []time.Duration
			sleep := func(ctx context.Context, d time.Duration) error {
				slept = append(slept, d.Round(time.Second))
				return nil
			}
			doc, err := consoleLogin(context.Background(), srv.Client(), ConsoleLogin{URL: srv.URL + first, Attempts: 3}, con, sleep, func(Phase, string) {})
			fix := func(ss []string) []string {
				for i := range ss {
					ss[i] = strings.ReplaceAll(ss[i], "SERVER", srv.URL)
				}
				return ss
			}
			if tc.want.err == "" {
				if err != nil || doc.Machine != "52:54:00:00:00:01 (user alice)" {
					t.Fatalf("consoleLogin = %+v, %v", doc, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), fix([]string{tc.want.err})[0]) {
				t.Fatalf("consoleLogin err = %v, want %q", err, fix([]string{tc.want.err})[0])
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("the error shows the password: %v", err)
			}
			if d := cmp.Diff(tc.want.got, ls.got); d != "" {
				t.Errorf("the server got (-want +got):\n%s", d)
			}
			if d := cmp.Diff(fix(tc.want.shown), con.shown); d != "" {
				t.Errorf("the console showed (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.want.slept, slept); d != "" {
				t.Errorf("slept (-want +got):\n%s", d)
			}
		})
	}
}

// TestConsoleLoginNoRedirect: a redirect is not followed, so the
// password goes to overboot.login's server only.
func TestConsoleLoginNoRedirect(t *testing.T) {
	var elsewhere bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere = true }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	_, err := consoleLogin(context.Background(), srv.Client(), ConsoleLogin{URL: srv.URL + "/login/tok", Attempts: 2}, &scriptedConsole{answers: []string{"alice", "pw"}},
		func(context.Context, time.Duration) error { return nil }, func(Phase, string) {})
	if err == nil || !strings.Contains(err.Error(), "307") || elsewhere {
		t.Fatalf("a redirect: %v (followed: %v)", err, elsewhere)
	}
}

// TestPlanConsoleLogin: overboot.login plans the ConsoleLogin step where
// a document's fetch would be, then the document's plan, as with
// overboot.doc.
func TestPlanConsoleLogin(t *testing.T) {
	p, err := boot.Parse("overboot.login=http://s/login/tok-0123456789?profile=lab")
	if err != nil {
		t.Fatal(err)
	}
	early, err := Plan(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsDocument(early) {
		t.Fatalf("the early plan does not stop at the login:\n%s", FormatPlan(early))
	}
	if got, want := early[len(early)-1], (ConsoleLogin{URL: "http://s/login/tok-0123456789?profile=lab", Attempts: boot.DefaultFetchAttempts, Stall: boot.DefaultFetchTimeout}); got != want {
		t.Errorf("last step %#v, want %#v", got, want)
	}
	if s := early[len(early)-1].String(); strings.Contains(s, "tok-0123456789") || strings.Contains(s, "profile=lab") {
		t.Errorf("the step shows the token: %s", s)
	}
	doc := boot.Document{Version: 1, Lower: boot.Source{HTTP: &boot.HTTPSource{URL: "http://s/i", Digest: digest}}, Upper: boot.Upper{Tmpfs: &boot.TmpfsUpper{}}}
	full, err := Plan(p, &doc)
	if err != nil {
		t.Fatal(err)
	}
	docP, _ := boot.Parse("overboot.doc=http://s/doc/tok")
	viaDoc, _ := Plan(docP, &doc)
	if len(full) != len(viaDoc) || FormatPlan(full[:len(early)]) != FormatPlan(early) || FormatPlan(full[len(early):]) != FormatPlan(viaDoc[len(early):]) {
		t.Errorf("login plan:\n%s\ndocument plan:\n%s", FormatPlan(full), FormatPlan(viaDoc))
	}
}
