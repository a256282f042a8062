package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// The console login: a login profile's machine that cannot show iPXE's
// form (GRUB's, on the Secure Boot path) or whose profile says
// login = console boots its kernel first, with overboot.login=URL on
// the command line (a single-use token bound to its address, nothing
// secret); the agent asks for the username and password on the console
// and POSTs them to that URL (consoleLogin). The checks and their order
// are the form's (tryLogin); the answer is the user's boot document
// (serveDocument), or a boot.ConsoleLoginRefusal with the URL of the
// next try.

// consoleLoginEntry answers a menu's console login item (GET
// /console-login/{token}, a menu token): the boot whose agent asks.
func (s *Server) consoleLoginEntry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	from, ok := s.spend(w, r, r.PathValue("token"), enroll.PurposeMenu, true)
	if !ok {
		return
	}
	p := s.sets.Load().Profile(from.Profile)
	if p == nil || p.Policy() != config.EnrollLogin {
		s.fail(w, r, http.StatusConflict, "this profile no longer takes logins: reboot the machine")
		return
	}
	s.rec.Event(ctx, from.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "entry", Outcome: telemetry.OK, Message: "console login"})
	m, _ := s.db.Machine(ctx, from.MAC)
	s.bootScript(w, r, bootReq{mac: from.MAC, hostname: m.Hostname, uuid: m.UUID, addr: from.Address, bootID: from.BootID, console: true}, p)
}

// consoleLoginRetry is how long an agent told "too many attempts" waits.
const consoleLoginRetry = 20 * time.Second

// consoleLogin answers POST /login/{token}: the username and password
// the agent asked for on the console (boot.ConsoleLogin as JSON, or a
// form), checked as the form's are (tryLogin). The body is validated
// before anything is spent or counted.
func (s *Server) consoleLogin(w http.ResponseWriter, r *http.Request) {
	if !s.overTLS(w, r) {
		return
	}
	tok := r.PathValue("token")
	form, err := ParseLoginBody(r)
	if q := r.URL.Query(); err == nil && (len(q) > 1 || len(q) == 1 && !q.Has("profile")) {
		err = errors.New("console login: the URL's query has only profile=NAME")
	}
	if err != nil {
		// The token stays: the same URL for the next try.
		s.loginRefusal(w, r, http.StatusBadRequest, err.Error(), tok, 0)
		return
	}
	at, res := s.tryLogin(w, r, tok, enroll.PurposeConsoleLogin, form, false)
	switch res {
	case loginAddrLimited:
		// Nothing spent: the same URL, later.
		s.loginRefusal(w, r, http.StatusTooManyRequests, "too many login attempts from this address: wait a minute", tok, consoleLoginRetry)
	case loginUserLimited:
		s.loginAgain(w, r, at.token, http.StatusTooManyRequests, "too many login attempts for this user: wait a minute", consoleLoginRetry)
	case loginWrong:
		s.loginAgain(w, r, at.token, http.StatusUnauthorized, "wrong username or password", 0)
	case loginGood:
		s.serveDocument(w, r, tok, at.token)
	}
}

// loginAgain answers a refused console login with a new single-use URL,
// for the same machine, boot and address as the spent one (t).
func (s *Server) loginAgain(w http.ResponseWriter, r *http.Request, t state.BootToken, code int, why string, wait time.Duration) {
	tok, err := s.tokens.Issue(r.Context(), state.BootToken{Purpose: enroll.PurposeConsoleLogin, MAC: t.MAC, Profile: t.Profile, Address: t.Address, BootID: t.BootID}, enroll.ConsoleLoginTTL)
	if err != nil {
		s.log.Error("issue token", "err", err)
		s.loginRefusal(w, r, http.StatusInternalServerError, "the server cannot issue a token: see its log; reboot the machine", "", 0)
		return
	}
	s.loginRefusal(w, r, code, why, tok, wait)
}

// loginRefusal writes a boot.ConsoleLoginRefusal whose next URL carries
// tok ("" none), with Retry-After when wait is set.
func (s *Server) loginRefusal(w http.ResponseWriter, r *http.Request, code int, why, tok string, wait time.Duration) {
	ctx := r.Context()
	ref := boot.ConsoleLoginRefusal{Error: why}
	if tok != "" {
		base, err := s.base(r)
		if err != nil {
			code, ref.Error = http.StatusBadRequest, err.Error()
		} else {
			// The profile's name as the command line's URL has it.
			ref.Login = answer.ConsoleLoginURL(s.loginBase(base), tok, r.URL.Query().Get("profile"))
			if t, err := s.tokens.Peek(ctx, tok, enroll.PurposeConsoleLogin); err == nil {
				ref.Login = answer.ConsoleLoginURL(s.loginBase(base), tok, t.Profile)
			}
		}
	}
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(ref)
}

// loginBase is where the agent fetches its document and logs in: the
// server's HTTPS when it has one, as answer.ConsoleLoginFor makes it.
func (s *Server) loginBase(base string) string {
	if sec := s.secure(base); sec != "" {
		return sec
	}
	return base
}

// ParseLoginBody reads a console login's body strictly: JSON
// (boot.ParseConsoleLogin) or a form (application/x-www-form-urlencoded,
// username and password each once, nothing else), at most
// boot.MaxConsoleLoginSize bytes, then checked as the menu's form is
// (checkLoginForm). Errors never show the password.
func ParseLoginBody(r *http.Request) (LoginForm, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return LoginForm{}, errors.New("console login: want Content-Type application/json or application/x-www-form-urlencoded")
	}
	body := io.LimitReader(r.Body, boot.MaxConsoleLoginSize+1)
	var f LoginForm
	switch ct {
	case "application/json":
		c, err := boot.ParseConsoleLogin(body)
		if err != nil {
			return LoginForm{}, err
		}
		f = LoginForm{User: c.Username, Password: c.Password}
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(body)
		if err != nil {
			return LoginForm{}, fmt.Errorf("console login: %w", err)
		}
		if len(b) > boot.MaxConsoleLoginSize {
			return LoginForm{}, fmt.Errorf("console login: longer than %d bytes", boot.MaxConsoleLoginSize)
		}
		q, err := url.ParseQuery(string(b))
		if err != nil {
			return LoginForm{}, errors.New("console login: malformed form")
		}
		for k, vs := range q {
			if k != "username" && k != "password" {
				return LoginForm{}, fmt.Errorf("console login: unknown field %q", k)
			}
			if len(vs) != 1 {
				return LoginForm{}, fmt.Errorf("console login: %s given %d times", k, len(vs))
			}
		}
		if !q.Has("password") {
			return LoginForm{}, errors.New("console login: password missing")
		}
		f = LoginForm{User: q.Get("username"), Password: q.Get("password")}
	default:
		return LoginForm{}, fmt.Errorf("console login: Content-Type %s: want application/json or application/x-www-form-urlencoded", ct)
	}
	if err := checkLoginForm(f); err != nil {
		return LoginForm{}, fmt.Errorf("console login: %w", err)
	}
	return f, nil
}
