package server

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// LoginForm is what iPXE's login form sends: exactly a username and a
// password, each once, in hex (the menu asks for ${username:hexraw}: any
// byte of a password survives, where uristring left '&', '+' and ';' raw
// in Debian's iPXE and split the query).
type LoginForm struct {
	User     string
	Password string
}

// ParseLoginForm reads a login query strictly: unknown or repeated
// parameters, a malformed user name and an over-long password are errors
// naming the parameter (never showing the password).
func ParseLoginForm(q url.Values) (LoginForm, error) {
	var f LoginForm
	for k, vs := range q {
		if k != "username" && k != "password" {
			return LoginForm{}, fmt.Errorf("login form: unknown parameter %q", k)
		}
		if len(vs) != 1 {
			return LoginForm{}, fmt.Errorf("login form: %s given %d times", k, len(vs))
		}
	}
	user, err := hex.DecodeString(q.Get("username"))
	if err != nil {
		return LoginForm{}, errors.New("login form: username is not hex (the menu sends ${username:hexraw})")
	}
	if len(q.Get("password")) > 2*enroll.MaxPasswordLen {
		return LoginForm{}, fmt.Errorf("login form: password longer than %d bytes", enroll.MaxPasswordLen)
	}
	pw, err := hex.DecodeString(q.Get("password"))
	if err != nil {
		return LoginForm{}, errors.New("login form: password is not hex (the menu sends ${password:hexraw})")
	}
	f.User, f.Password = string(user), string(pw)
	if err := checkLoginForm(f); err != nil {
		return LoginForm{}, fmt.Errorf("login form: %w", err)
	}
	return f, nil
}

// checkLoginForm checks what a login attempt carries, however it came
// (iPXE's form, the console login): a valid user name, a password of at
// most enroll.MaxPasswordLen bytes (never shown).
func checkLoginForm(f LoginForm) error {
	if f.User == "" {
		return errors.New("username missing")
	}
	if err := enroll.CheckUserName(f.User); err != nil {
		return err
	}
	if len(f.Password) > enroll.MaxPasswordLen {
		return fmt.Errorf("password longer than %d bytes", enroll.MaxPasswordLen)
	}
	return nil
}

// login answers GET /login/{token}?username=HEX&password=HEX, the menu's login
// item (Debian's iPXE has no POST forms: no params/param commands). The
// URL is single use, bound to the address that got the menu, never
// logged with its query. A wrong password goes back to the menu with a
// notice; tries are rate limited (tryLogin); the user's boot gets the
// user's own disk with a new CHAP secret.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	form, err := ParseLoginForm(r.URL.Query())
	if err != nil {
		// Validate before acting: the token stays for the next try.
		s.again(w, r, err.Error(), "The login form was malformed: try again", 2*time.Second)
		return
	}
	at, res := s.tryLogin(w, r, r.PathValue("token"), enroll.PurposeMenu, form, true)
	switch res {
	case loginAddrLimited, loginUserLimited:
		s.again(w, r, "too many login attempts: wait a minute", "Too many attempts: wait a minute, then try again", 20*time.Second)
	case loginWrong:
		s.again(w, r, "wrong username or password", "Wrong username or password: try again", 2*time.Second)
	case loginGood:
		t, p := at.token, at.profile
		if p.Sanboot != "" {
			// The login URL is itself single use and bound to this address:
			// the sanboot script (with the user's new CHAP secret) answers it.
			s.sanScript(w, r, t, p)
			return
		}
		m, _ := s.db.Machine(r.Context(), t.MAC)
		s.bootScript(w, r, bootReq{mac: t.MAC, hostname: m.Hostname, uuid: m.UUID, addr: t.Address, bootID: t.BootID, user: t.User}, p)
	}
}

// loginResult is how a login attempt ended (tryLogin), for its handler
// to answer in its own form: an iPXE or GRUB script, or the agent's JSON.
type loginResult int

const (
	loginAnswered    loginResult = iota // refused and answered already (a bad URL, a store error, a changed profile)
	loginAddrLimited                    // the address's limit: nothing spent
	loginUserLimited                    // the URL spent, then the user's limit
	loginWrong                          // the URL spent, a wrong username or password
	loginGood                           // the URL spent, the user logged in
)

// loginAttempt is what a login attempt spent and found.
type loginAttempt struct {
	token   state.BootToken // the URL's token, spent (not for loginAddrLimited); User set when loginGood
	profile *config.Profile // loginGood only
}

// tryLogin runs a login attempt's checks, in order: the address's limit,
// spending the single-use URL tok (of purpose, from the asking address),
// the user's limit, the profile, then the password (at most
// cap(s.hashing) checks at once). The outcome is logged, counted and
// recorded on the boot here; a refusal of the URL, a store error or a
// changed profile is answered here too (as a script when script is set,
// else as plain text), the rest by the caller. form was validated first:
// a malformed attempt spends nothing.
func (s *Server) tryLogin(w http.ResponseWriter, r *http.Request, tok, purpose string, form LoginForm, script bool) (loginAttempt, loginResult) {
	ctx := r.Context()
	addr := remoteIP(r)
	fail := func(code int, why string) {
		if script {
			s.fail(w, r, code, why)
		} else {
			http.Error(w, why, code)
		}
	}
	// The address's own limit first: it bounds only the asker.
	if !s.loginAddr.Allow(addr) {
		s.metrics.Login("limited")
		s.log.Warn("login refused: too many attempts from this address", "address", addr)
		return loginAttempt{}, loginAddrLimited
	}
	// Then the single-use URL: an attempt without a valid, unspent one
	// from this address is refused before it can charge the user's
	// limit, so made-up URLs cannot lock a user out.
	t, ok := s.spend(w, r, tok, purpose, script)
	if !ok {
		return loginAttempt{}, loginAnswered
	}
	at := loginAttempt{token: t}
	u, err := s.db.User(ctx, form.User)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		s.log.Error("login", "err", err)
		if script {
			s.failScript(w, r, http.StatusInternalServerError, "the server cannot check logins: see its log")
		} else {
			http.Error(w, "the server cannot check logins: see its log", http.StatusInternalServerError)
		}
		return at, loginAnswered
	}
	who := form.User // logged only when it is a user's name: never what was typed
	if u.Name == "" {
		who = "(no such user)"
	}
	// The user's limit, charged by attempts that spent a URL (each costs
	// its holder a menu fetched from its own address). It is kept in the
	// store: every server sharing it counts the same attempts, so N
	// servers do not give a guesser N times the tries.
	allowed, err := s.db.TakeToken(ctx, "login:"+form.User, loginUserEvery, loginUserBurst)
	if err != nil {
		s.log.Error("login: the user's attempt limit", "err", err)
		fail(http.StatusServiceUnavailable, "the server cannot check logins now: try again shortly")
		return at, loginAnswered
	}
	if !allowed {
		s.metrics.Login("limited")
		s.log.Warn("login refused: too many attempts for this user", "user", who, "address", addr, "mac", t.MAC)
		return at, loginUserLimited
	}
	p := s.sets.Load().Profile(t.Profile)
	if p == nil || p.Policy() != config.EnrollLogin {
		fail(http.StatusConflict, "this profile no longer takes logins: reboot the machine")
		return at, loginAnswered
	}
	// Each check holds 64 MiB (argon2id): at most a few run at once, the
	// others wait their turn (20 at once took 1.4 GB unbounded).
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return at, loginAnswered
	}
	good, err := enroll.CheckPassword(u.PasswordHash, form.Password) // u is zero for an unknown user: a dummy hash is checked
	<-s.hashing
	if err != nil {
		s.log.Error("login: stored hash", "user", form.User, "err", err)
	}
	if !good {
		s.metrics.Login("wrong")
		s.log.Warn("login failed", "user", who, "address", addr, "mac", t.MAC)
		s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "login", Outcome: telemetry.Failed, Message: "wrong username or password"})
		return at, loginWrong
	}
	s.metrics.Login("ok")
	s.log.Info("login", "user", u.Name, "address", addr, "mac", t.MAC)
	if err := s.db.SetBootUser(ctx, t.BootID, u.Name); err != nil {
		s.log.Error("record login", "err", err)
	}
	s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "login", Outcome: telemetry.OK, Message: u.Name})
	at.token.User, at.profile = u.Name, p
	return at, loginGood
}
