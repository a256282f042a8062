package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/profiles"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// MaxBody bounds a JSON request body.
const MaxBody = 64 << 10

// Deps are what the API works on.
type Deps struct {
	DB       *state.DB
	Disks    *disks.Manager
	Blobs    *blobstore.Store
	Recorder *telemetry.Recorder
	Profiles func() *profiles.Set // the configuration in force
	Log      *slog.Logger
}

// API serves the admin API.
type API struct {
	d Deps
}

// New returns the API over d.
func New(d Deps) *API {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &API{d: d}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	const read, operate, admin = enroll.ScopeRead, enroll.ScopeOperate, enroll.ScopeAdmin
	for _, r := range []struct {
		pattern string
		needs   enroll.Scope
		h       func(http.ResponseWriter, *http.Request) error
	}{
		{"GET /machines", read, a.machines},
		{"GET /machines/{mac}", read, a.machine},
		{"GET /machines/{mac}/explain", read, a.explain},
		{"POST /machines/{mac}/approve", operate, a.approve},
		{"POST /machines/{mac}/reset", operate, a.machineReset},
		{"POST /machines/{mac}/rotate", operate, a.rotate},
		{"DELETE /machines/{mac}", operate, a.machineDelete},
		{"GET /users", read, a.users},
		{"POST /users", admin, a.userAdd},
		{"PUT /users/{name}/password", admin, a.userPassword},
		{"POST /users/{name}/reset", admin, a.userReset},
		{"DELETE /users/{name}", admin, a.userDelete},
		{"GET /disks", read, a.disks},
		{"DELETE /disks/{id}", operate, a.diskDelete},
		{"POST /disks/{id}/move", operate, a.diskMove},
		{"GET /images", read, a.images},
		{"GET /images/{name}", read, a.imageHistory},
		{"POST /images", operate, a.imagePublish},
		{"POST /images/{name}/rollback", operate, a.imageRollback},
		{"POST /blobs", operate, a.blobUpload},
		{"POST /gc", operate, a.gc},
		{"GET /boots", read, a.boots},
		{"GET /boots/{id}", read, a.boot},
		{"GET /tokens", admin, a.tokens},
		{"POST /tokens", admin, a.tokenCreate},
		{"DELETE /tokens/{id}", admin, a.tokenDelete},
		{"GET /backup", admin, a.backup},
		{"GET /servers", read, a.servers},
		{"DELETE /servers/{name}", admin, a.serverForget},
	} {
		method, path, _ := strings.Cut(r.pattern, " ")
		mux.Handle(method+" "+Prefix+path, a.auth(r.needs, r.h))
	}
	mux.Handle(Prefix+"/", a.auth(read, func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "%s %s: no such API call (see overboot --help)", r.Method, r.URL.Path)
	}))
}

// Error is an API error with its HTTP status.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// auth checks the bearer token and its scope, then runs h and answers
// its error as JSON.
func (a *API) auth(needs enroll.Scope, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="overboot"`)
			writeError(w, errorf(http.StatusUnauthorized, "no admin token: send Authorization: Bearer TOKEN (overboot token create makes one)"))
			return
		}
		t, err := enroll.CheckAPIToken(r.Context(), a.d.DB, strings.TrimSpace(tok))
		if err != nil {
			if errors.Is(err, enroll.ErrBadToken) {
				a.d.Log.Warn("api: refused a bad admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", `Bearer realm="overboot", error="invalid_token"`)
				writeError(w, errorf(http.StatusUnauthorized, "invalid admin token"))
				return
			}
			writeError(w, err)
			return
		}
		if !enroll.Scope(t.Scope).Allows(needs) {
			a.d.Log.Warn("api: refused a token of too small a scope", "remote", r.RemoteAddr, "path", r.URL.Path, "token", t.Name, "scope", t.Scope, "needs", needs)
			writeError(w, errorf(http.StatusForbidden, "%s %s needs a token of scope %s; this one (%s) is %s", r.Method, r.URL.Path, needs, t.Name, t.Scope))
			return
		}
		a.d.DB.TouchAPIToken(r.Context(), t.ID)
		if err := h(w, r); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code >= 500 {
				a.d.Log.Error("api", "method", r.Method, "path", r.URL.Path, "token", t.Name, "err", err)
			}
			writeError(w, err)
			return
		}
		if r.Method != http.MethodGet {
			a.d.Log.Info("api", "method", r.Method, "path", r.URL.Path, "token", t.Name)
		}
	})
}

func writeError(w http.ResponseWriter, err error) {
	code, msg := http.StatusInternalServerError, err.Error()
	var e *Error
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.Is(err, state.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, state.ErrExists), errors.Is(err, state.ErrKindChange), errors.Is(err, state.ErrServerRunning):
		code = http.StatusConflict
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// dropDisks ends the sessions on o's disks and removes them (after
// checking that o exists: a typo removes nothing). It returns how many
// went.
func (a *API) dropDisks(ctx context.Context, o disks.Owner) (int, error) {
	var err error
	if o.Kind == state.OwnerUser {
		_, err = a.d.DB.User(ctx, o.Name)
	} else {
		_, err = a.d.DB.Machine(ctx, o.Name)
	}
	if err != nil {
		return 0, err
	}
	return a.d.Disks.Reset(ctx, o)
}

// orEmpty makes a nil list an empty one, so JSON says [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeList answers a list (an empty one as []), or err.
func writeList[T any](w http.ResponseWriter, items []T, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, orEmpty(items))
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// DecodeJSON reads one JSON object into v strictly: unknown fields,
// trailing data and bodies over MaxBody are errors naming the problem.
func DecodeJSON(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "read the request body: %v", err)
	}
	if len(data) > MaxBody {
		return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", MaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "request body: trailing data after the JSON object")
	}
	return nil
}

func background(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
