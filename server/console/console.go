package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// Prefix is where the console lives.
const Prefix = "/console"

// CSP is every console page's Content-Security-Policy: the status page's.
// Nothing is loaded from elsewhere; the pictures are inline SVG.
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"

// Deps are what the console works on.
type Deps struct {
	DB *state.DB
	// Actions are the admin API's: the console acts as the API does.
	Actions *api.API
	// Status has the machines' table (cached, built again only when a
	// boot or machine changed) and the event stream.
	Status     *telemetry.StatusPage
	SignInRate *enroll.Limiter // per client address; nil: no limit
	RemoteIP   func(*http.Request) string
	SessionTTL time.Duration // default SessionTTL
	Log        *slog.Logger
	Now        func() time.Time // default time.Now
}

// Console serves the operator's console.
type Console struct {
	d     Deps
	pages map[string]*template.Template

	roots struct { // the overview's times to root, see rootTimes
		sync.Mutex
		times   []state.RootTime
		at      time.Time
		version uint64
	}
}

//go:embed templates
var templateFS embed.FS

// New returns the console over d.
func New(d Deps) *Console {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.RemoteIP == nil {
		d.RemoteIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	return &Console{d: d, pages: parsePages()}
}

func parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
	}
	return pages
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	const read, operate, admin = enroll.ScopeRead, enroll.ScopeOperate, enroll.ScopeAdmin
	mux.HandleFunc("GET "+Prefix+"/signin", c.signInForm)
	mux.HandleFunc("POST "+Prefix+"/signin", c.signIn)
	mux.Handle("POST "+Prefix+"/signout", c.action(read, c.signOut))
	mux.Handle("GET "+Prefix, c.page(c.overview))
	mux.Handle("GET "+Prefix+"/{$}", c.page(c.overview))
	mux.Handle("GET "+Prefix+"/events", c.page(func(w http.ResponseWriter, r *http.Request, _ *session) { c.d.Status.Events(w, r) }))
	mux.Handle("GET "+Prefix+"/machines", c.page(c.machines))
	mux.Handle("GET "+Prefix+"/machines/{mac}", c.page(c.machine))
	mux.Handle("GET "+Prefix+"/machines/{mac}/{action}", c.page(c.confirmMachine))
	mux.Handle("POST "+Prefix+"/machines/{mac}/{action}", c.action(operate, c.machineAction))
	mux.Handle("GET "+Prefix+"/pending", c.page(c.pending))
	mux.Handle("GET "+Prefix+"/images", c.page(c.images))
	mux.Handle("GET "+Prefix+"/images/{name}", c.page(c.image))
	mux.Handle("GET "+Prefix+"/images/{name}/rollback", c.page(c.confirmRollback))
	mux.Handle("POST "+Prefix+"/images/{name}/rollback", c.action(operate, c.rollback))
	mux.Handle("GET "+Prefix+"/users", c.page(c.users))
	mux.Handle("GET "+Prefix+"/users/{name}/{action}", c.page(c.confirmUser))
	mux.Handle("POST "+Prefix+"/users/{name}/{action}", c.action(admin, c.userAction))
	mux.Handle("GET "+Prefix+"/servers", c.page(c.servers))
	mux.Handle(Prefix+"/", c.page(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.refuse(w, r, s, http.StatusNotFound, fmt.Sprintf("%s %s: no such page", r.Method, r.URL.Path))
	}))
}

type handler func(http.ResponseWriter, *http.Request, *session)

// page serves h to a signed-in browser; anyone else is sent to the
// sign-in form (the event stream, read by script, gets a 401).
func (c *Console) page(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.sessionOf(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if s == nil {
			if r.Method != http.MethodGet || strings.HasSuffix(r.URL.Path, "/events") {
				http.Error(w, "sign in first: "+Prefix+"/signin", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	})
}

// action serves h to a signed-in browser whose token's scope allows
// needs, for a form from this server's own page carrying the session's
// CSRF token. Anything else changes nothing.
func (c *Console) action(needs enroll.Scope, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.sessionOf(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if s == nil {
			c.refuse(w, r, nil, http.StatusUnauthorized, "Not signed in (or the session ended): sign in again.")
			return
		}
		if !sameOrigin(r) {
			c.d.Log.Warn("console: refused a form from another site", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "token", s.token.Name)
			c.refuse(w, r, s, http.StatusForbidden, "A form from another site's page: refused, nothing changed.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.refuse(w, r, s, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		if !equal(r.PostForm.Get("csrf"), s.csrf) {
			c.d.Log.Warn("console: refused a form without this session's CSRF token", "path", r.URL.Path, "token", s.token.Name, "address", c.d.RemoteIP(r))
			c.refuse(w, r, s, http.StatusForbidden, "The form lacks this session's CSRF token (an old page, or another site's): reload the page and try again. Nothing changed.")
			return
		}
		if !s.scope().Allows(needs) {
			c.d.Log.Warn("console: refused an action of too small a scope", "path", r.URL.Path, "token", s.token.Name, "scope", s.token.Scope, "needs", needs)
			c.refuse(w, r, s, http.StatusForbidden, fmt.Sprintf("This needs a token of scope %s; you signed in with %s, of scope %s. Nothing changed.", needs, s.token.Name, s.token.Scope))
			return
		}
		c.d.DB.TouchAPIToken(r.Context(), s.token.ID)
		h(w, r, s)
	})
}

// frame is what the layout shows around a page.
type frame struct {
	Title   string
	Nav     string // the section the page belongs to
	Session *session
	Pending int // machines waiting for approval, in the menu
	Now     time.Time
	Data    any
}

// CanOperate and CanAdmin say what the signed-in token may do (the
// pages offer only that).
func (f frame) CanOperate() bool {
	return f.Session != nil && f.Session.scope().Allows(enroll.ScopeOperate)
}
func (f frame) CanAdmin() bool {
	return f.Session != nil && f.Session.scope().Allows(enroll.ScopeAdmin)
}

// CSRF is the session's CSRF token for the page's forms.
func (f frame) CSRF() string {
	if f.Session == nil {
		return ""
	}
	return f.Session.csrf
}

// Who names the signed-in token.
func (f frame) Who() string {
	if f.Session == nil {
		return ""
	}
	return f.Session.token.Name + " (" + f.Session.token.Scope + ")"
}

// render writes page name with data, whole, or a 500 when it cannot be
// built (nothing half written).
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, s *session, data any) {
	t := c.pages[name]
	title, nav := titles[name][0], titles[name][1]
	if tt, ok := data.(titled); ok {
		title = tt.title()
	}
	f := frame{Title: title, Nav: nav, Session: s, Now: c.d.Now(), Data: data}
	if s != nil && c.d.Status != nil {
		if rows, err := c.d.Status.Snapshot(r.Context()); err == nil {
			for _, row := range rows {
				if row.Enrolment == "pending" {
					f.Pending++
				}
			}
		}
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout.html", f); err != nil {
		c.d.Log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be built: see the server's log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// titled data names its own page.
type titled interface{ title() string }

// titles are each page's title and menu section.
var titles = map[string][2]string{
	"signin":   {"Sign in", ""},
	"overview": {"Overview", "overview"},
	"machines": {"Machines", "machines"},
	"machine":  {"Machine", "machines"},
	"pending":  {"Pending approvals", "pending"},
	"images":   {"Images", "images"},
	"image":    {"Image", "images"},
	"users":    {"Users", "users"},
	"servers":  {"Servers", "servers"},
	"confirm":  {"Confirm", ""},
	"message":  {"overboot", ""},
}

// message is a page that says one thing: a refusal, an error, or what an
// action did, with where to go next.
type message struct {
	Heading string
	Text    string
	Failed  bool
	Links   []link
}

type link struct{ Href, Text string }

func (m message) title() string { return m.Heading }

// refuse answers a request the console will not serve, saying why.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, s *session, code int, why string) {
	c.render(w, r, code, "message", s, message{Heading: http.StatusText(code), Text: why, Failed: true, Links: []link{{Prefix, "Overview"}}})
}

// fail answers an error: one the request caused with its message, a
// missing thing with 404, anything else with 500 (logged; the page says
// only where to look).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ie *inputError
	var ae *api.Error
	switch {
	case errors.As(err, &ie):
		c.refuse(w, r, s, http.StatusBadRequest, ie.msg)
	case errors.As(err, &ae) && ae.Code < 500:
		c.refuse(w, r, s, ae.Code, ae.Msg+". Nothing changed.")
	case errors.Is(err, state.ErrNotFound):
		c.refuse(w, r, s, http.StatusNotFound, err.Error())
	case errors.Is(err, state.ErrExists), errors.Is(err, state.ErrKindChange):
		c.refuse(w, r, s, http.StatusConflict, err.Error())
	default:
		c.d.Log.Error("console", "method", r.Method, "path", r.URL.Path, "err", err)
		c.refuse(w, r, s, http.StatusInternalServerError, "The server could not do that: see its log.")
	}
}
