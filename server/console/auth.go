package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// Cookies of the console. Both are HttpOnly, SameSite=Strict, Secure
// over HTTPS, and sent only under /console.
const (
	sessionCookie = "overboot_console"
	// preCookie holds the sign-in form's CSRF token: a page of another
	// site cannot sign a browser in to the attacker's session.
	preCookie = "overboot_console_signin"
)

// Session defaults.
const (
	SessionTTL  = enroll.DefaultSessionTTL
	MaxSessions = enroll.DefaultMaxSessions
)

// maxForm bounds a form's body.
const maxForm = 8 << 10

// session is a signed-in browser: the admin token it stands for, and the
// CSRF token its forms carry.
type session struct {
	id    string // the cookie's value; only its hash is stored
	token state.APIToken
	csrf  string
}

// scope is the session's token's scope.
func (s *session) scope() enroll.Scope { return enroll.Scope(s.token.Scope) }

// csrfOf derives a session's CSRF token from its secret: a page of
// another site cannot read the cookie, so cannot make the token either;
// nothing more is stored.
func csrfOf(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("overboot console csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// sessionOf returns r's live session, or nil: a cookie whose session is
// unknown, expired or closed, or whose token was revoked, is none.
func (c *Console) sessionOf(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || len(ck.Value) != 64 {
		return nil, nil
	}
	s, err := c.d.DB.ConsoleSession(r.Context(), enroll.HashToken(ck.Value))
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t, err := c.d.DB.APITokenByID(r.Context(), s.TokenID)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !enroll.Scope(t.Scope).Allows(enroll.ScopeRead) {
		return nil, nil
	}
	return &session{id: ck.Value, token: t, csrf: csrfOf(ck.Value)}, nil
}

// sameOrigin reports whether a form post came from this server's own
// pages: browsers send Origin with every POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" // not a browser
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	maxAge := int(ttl / time.Second)
	if value == "" {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// signInForm answers GET /console/signin: the form, with a fresh CSRF
// token in its cookie and in the form.
func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	c.showSignIn(w, r, http.StatusOK, "")
}

func (c *Console) showSignIn(w http.ResponseWriter, r *http.Request, code int, message string) {
	pre, err := randomHex(32)
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.setCookie(w, r, preCookie, pre, 15*time.Minute)
	c.render(w, r, code, "signin", nil, struct {
		Message string
		CSRF    string
		Lasts   time.Duration
	}{message, pre, c.ttl()})
}

func (c *Console) ttl() time.Duration {
	if c.d.SessionTTL > 0 {
		return c.d.SessionTTL
	}
	return SessionTTL
}

// signIn answers POST /console/signin: fields csrf and token. A valid
// admin token opens a session and goes to the overview; anything else
// shows the form again with why. Tries are limited per address.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	addr := c.d.RemoteIP(r)
	if !sameOrigin(r) {
		c.refuse(w, r, nil, http.StatusForbidden, "sign-in from another site's page refused")
		return
	}
	if c.d.SignInRate != nil && !c.d.SignInRate.Allow(addr) {
		c.d.Log.Warn("console sign-in refused: too many tries", "address", addr)
		c.showSignIn(w, r, http.StatusTooManyRequests, "Too many tries from this address: wait a minute.")
		return
	}
	form, err := readForm(w, r, "csrf", "token")
	if err != nil {
		c.showSignIn(w, r, http.StatusBadRequest, err.Error())
		return
	}
	pre, err := r.Cookie(preCookie)
	if err != nil || !equal(pre.Value, form.Get("csrf")) {
		c.showSignIn(w, r, http.StatusForbidden, "The form has expired or came from elsewhere: sign in again.")
		return
	}
	t, err := enroll.CheckAPIToken(r.Context(), c.d.DB, strings.TrimSpace(form.Get("token")))
	if err == nil && !enroll.Scope(t.Scope).Allows(enroll.ScopeRead) {
		err = enroll.ErrBadToken
	}
	if errors.Is(err, enroll.ErrBadToken) {
		c.d.Log.Warn("console sign-in refused: a bad admin token", "address", addr)
		c.showSignIn(w, r, http.StatusUnauthorized, "That is not a valid admin token.")
		return
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	id, err := randomHex(32)
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	now := time.Now()
	if err := c.d.DB.PutConsoleSession(context.WithoutCancel(r.Context()), state.ConsoleSession{Hash: enroll.HashToken(id), TokenID: t.ID,
		Created: now, Expires: now.Add(c.ttl()), Seen: now}, MaxSessions); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.d.Log.Info("console signed in", "token", t.Name, "scope", t.Scope, "address", addr)
	c.setCookie(w, r, preCookie, "", 0)
	c.setCookie(w, r, sessionCookie, id, c.ttl())
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// signOut answers POST /console/signout: the session ends in the store
// (its cookie is worth nothing after, wherever it was copied), the
// cookie goes.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.d.DB.DeleteConsoleSession(context.WithoutCancel(r.Context()), enroll.HashToken(s.id)); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.d.Log.Info("console signed out", "token", s.token.Name, "address", c.d.RemoteIP(r))
	c.setCookie(w, r, sessionCookie, "", 0)
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// readForm reads a urlencoded form of the named fields, each at most once;
// any other field is an error naming it.
func readForm(w http.ResponseWriter, r *http.Request, fields ...string) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return nil, &inputError{"the form could not be read: " + err.Error()}
	}
	for k, vs := range r.PostForm {
		known := false
		for _, f := range fields {
			known = known || f == k
		}
		if !known {
			return nil, &inputError{"the form has a field it should not: " + k}
		}
		if len(vs) != 1 {
			return nil, &inputError{"the form gives " + k + " more than once"}
		}
	}
	return r.PostForm, nil
}
