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
	if f.User == "" {
		return LoginForm{}, errors.New("login form: username missing")
	}
	if err := enroll.CheckUserName(f.User); err != nil {
		return LoginForm{}, fmt.Errorf("login form: %w", err)
	}
	if len(f.Password) > enroll.MaxPasswordLen {
		return LoginForm{}, fmt.Errorf("login form: password longer than %d bytes", enroll.MaxPasswordLen)
	}
	return f, nil
}

// login answers GET /login/{token}?username=HEX&password=HEX, the menu's login
// item (Debian's iPXE has no POST forms: no params/param commands). The
// URL is single use, bound to the address that got the menu, never
// logged with its query. A wrong password goes back to the menu with a
// notice; tries are rate limited per address, then (for a valid URL
// only) per user, before any password is hashed; the user's boot gets
// the user's own disk with a new CHAP secret.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := remoteIP(r)
	form, err := ParseLoginForm(r.URL.Query())
	if err != nil {
		// Validate before acting: the token stays for the next try.
		s.again(w, r, err.Error(), "The login form was malformed: try again", 2*time.Second)
		return
	}
	// The address's own limit first: it bounds only the asker.
	if !s.loginAddr.Allow(addr) {
		s.metrics.Login("limited")
		s.log.Warn("login refused: too many attempts from this address", "address", addr)
		s.again(w, r, "too many login attempts: wait a minute", "Too many attempts: wait a minute, then try again", 20*time.Second)
		return
	}
	// Then the single-use URL: an attempt without a valid, unspent one
	// from this address is refused before it can charge the user's
	// limit, so made-up URLs cannot lock a user out.
	t, ok := s.spend(w, r, r.PathValue("token"), enroll.PurposeMenu, true)
	if !ok {
		return
	}
	u, err := s.db.User(ctx, form.User)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		s.log.Error("login", "err", err)
		s.failScript(w, r, http.StatusInternalServerError, "the server cannot check logins: see its log")
		return
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
		s.fail(w, r, http.StatusServiceUnavailable, "the server cannot check logins now: try again shortly")
		return
	}
	if !allowed {
		s.metrics.Login("limited")
		s.log.Warn("login refused: too many attempts for this user", "user", who, "address", addr, "mac", t.MAC)
		s.again(w, r, "too many login attempts: wait a minute", "Too many attempts: wait a minute, then try again", 20*time.Second)
		return
	}
	p := s.sets.Load().Profile(t.Profile)
	if p == nil || p.Policy() != config.EnrollLogin {
		s.fail(w, r, http.StatusConflict, "this profile no longer takes logins: reboot the machine")
		return
	}
	// Each check holds 64 MiB (argon2id): at most a few run at once, the
	// others wait their turn (20 at once took 1.4 GB unbounded).
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return
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
		s.again(w, r, "wrong username or password", "Wrong username or password: try again", 2*time.Second)
		return
	}
	s.metrics.Login("ok")
	s.log.Info("login", "user", u.Name, "address", addr, "mac", t.MAC)
	if err := s.db.SetBootUser(ctx, t.BootID, u.Name); err != nil {
		s.log.Error("record login", "err", err)
	}
	s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "login", Outcome: telemetry.OK, Message: u.Name})
	t.User = u.Name
	if p.Sanboot != "" {
		// The login URL is itself single use and bound to this address:
		// the sanboot script (with the user's new CHAP secret) answers it.
		s.sanScript(w, r, t, p)
		return
	}
	m, _ := s.db.Machine(ctx, t.MAC)
	s.bootScript(w, r, bootReq{mac: t.MAC, hostname: m.Hostname, uuid: m.UUID, addr: t.Address, bootID: t.BootID, user: u.Name}, p)
}
