package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/telemetry"
)

// statusCookie holds a signed-in status page's session.
const statusCookie = "overboot_status"

// statusReader reports whether r may read the status page: anyone under
// status = public; else a request with an admin token (Authorization:
// Bearer, any scope) or with the cookie of a session signed in with one
// that is not revoked. Loopback is no credential.
func (s *Server) statusReader(r *http.Request) bool {
	if s.cfg.Load().Status == config.StatusPublic {
		return true
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		t, err := enroll.CheckAPIToken(r.Context(), s.db, strings.TrimSpace(tok))
		return err == nil && enroll.Scope(t.Scope).Allows(enroll.ScopeRead)
	}
	return s.signedIn(r)
}

// signedIn reports whether r carries a live session whose token still
// exists.
func (s *Server) signedIn(r *http.Request) bool {
	c, err := r.Cookie(statusCookie)
	if err != nil {
		return false
	}
	id, ok := s.sessions.Token(c.Value)
	if !ok {
		return false
	}
	t, err := s.db.APITokenByID(r.Context(), id)
	return err == nil && enroll.Scope(t.Scope).Allows(enroll.ScopeRead)
}

// statusGate serves h to readers of the status page; the page itself
// answers anyone else with the sign-in form, its data with 401.
func (s *Server) statusGate(h http.HandlerFunc, page bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.statusReader(r) {
			h(w, r)
			return
		}
		if page {
			telemetry.SignInPage(w, http.StatusUnauthorized, "", enroll.DefaultSessionTTL)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="overboot"`)
		http.Error(w, "the status page needs an admin token: sign in at /status, or send Authorization: Bearer TOKEN", http.StatusUnauthorized)
	}
}

// sameOrigin reports whether a state-changing form post came from this
// server's own pages: browsers send Origin with a POST; a request
// without one (curl) carries no cookie of a victim either.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// maxSignInBody bounds the sign-in form.
const maxSignInBody = 4 << 10

// signIn answers POST /status/signin: a form with one field, token. A
// valid admin token opens a session (an HttpOnly, SameSite=Strict
// cookie, Secure over HTTPS) and goes back to the page; anything else
// shows the form again with why. Tries are limited per address.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	addr := remoteIP(r)
	if !sameOrigin(r) {
		http.Error(w, "sign-in from another site's page refused", http.StatusForbidden)
		return
	}
	if !s.signInRate.Allow(addr) {
		s.log.Warn("status sign-in refused: too many tries", "address", addr)
		telemetry.SignInPage(w, http.StatusTooManyRequests, "Too many tries from this address: wait a minute.", enroll.DefaultSessionTTL)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	if err := r.ParseForm(); err != nil {
		telemetry.SignInPage(w, http.StatusBadRequest, "The form could not be read: "+err.Error(), enroll.DefaultSessionTTL)
		return
	}
	for k, vs := range r.PostForm {
		if k != "token" || len(vs) != 1 {
			telemetry.SignInPage(w, http.StatusBadRequest, "The form has a field it should not: "+k, enroll.DefaultSessionTTL)
			return
		}
	}
	t, err := enroll.CheckAPIToken(r.Context(), s.db, strings.TrimSpace(r.PostForm.Get("token")))
	if err == nil && !enroll.Scope(t.Scope).Allows(enroll.ScopeRead) {
		err = enroll.ErrBadToken
	}
	if err != nil {
		if errors.Is(err, enroll.ErrBadToken) {
			s.log.Warn("status sign-in refused: a bad admin token", "address", addr)
			telemetry.SignInPage(w, http.StatusUnauthorized, "That is not a valid admin token.", enroll.DefaultSessionTTL)
			return
		}
		s.log.Error("status sign-in", "err", err)
		http.Error(w, "the server cannot check tokens: see its log", http.StatusInternalServerError)
		return
	}
	id, ttl, err := s.sessions.Open(t.ID)
	if err != nil {
		http.Error(w, "cannot open a session", http.StatusInternalServerError)
		return
	}
	s.log.Info("status page signed in", "token", t.Name, "address", addr)
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: id, Path: "/status", MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/status", http.StatusSeeOther)
}

// signOut answers POST /status/signout: the session ends, the cookie
// goes.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "sign-out from another site's page refused", http.StatusForbidden)
		return
	}
	if c, err := r.Cookie(statusCookie); err == nil {
		s.sessions.Close(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: "", Path: "/status", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/status", http.StatusSeeOther)
}
