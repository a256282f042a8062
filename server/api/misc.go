package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

func (a *API) disks(w http.ResponseWriter, r *http.Request) error {
	ks, err := a.d.DB.Disks(r.Context())
	return writeList(w, ks, err)
}

func (a *API) diskDelete(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return errorf(http.StatusBadRequest, "disk id %q: want a positive number (overboot disk ls)", r.PathValue("id"))
	}
	if err := a.d.Disks.RemoveDisk(background(r.Context()), id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// MoveRequest asks for a disk to move to another server.
type MoveRequest struct {
	To string `json:"to"` // the server's name (overboot server ls)
}

// diskMove moves a disk that lives on this server to another (see
// disks.Manager.Move): the call returns when the disk lives there, or
// with the disk still here. Sent to another server than the disk's
// home, it answers 409 naming the home (overboot disk move asks the
// home itself).
func (a *API) diskMove(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return errorf(http.StatusBadRequest, "disk id %q: want a positive number (overboot disk ls)", r.PathValue("id"))
	}
	var req MoveRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	if req.To == "" {
		return errorf(http.StatusBadRequest, `request body: want {"to": "SERVER"}`)
	}
	// Once begun, a move ends (done or called off) even if the client
	// goes away.
	err = a.d.Disks.Move(background(r.Context()), id, req.To)
	switch {
	case errors.Is(err, disks.ErrSessionOpen), errors.Is(err, disks.ErrMoving), errors.Is(err, state.ErrDiskBusy):
		return errorf(http.StatusConflict, "%v", err)
	case errors.Is(err, disks.ErrHomeDown):
		return errorf(http.StatusServiceUnavailable, "%v", err)
	case err != nil:
		return err
	}
	k, err := a.d.DB.DiskByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k)
}

// BootDetail is one boot with its events.
type BootDetail struct {
	state.Boot
	Events []state.BootEvent `json:"events"`
}

func (a *API) boots(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "mac" && k != "limit" {
			return errorf(http.StatusBadRequest, "query parameter %q: want mac or limit", k)
		}
	}
	mac := ""
	if v := q.Get("mac"); v != "" {
		m, err := boot.ParseMAC(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "mac: %v", err)
		}
		mac = m.String()
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return errorf(http.StatusBadRequest, "limit %q: want 1 to 10000", v)
		}
		limit = n
	}
	bs, err := a.d.DB.Boots(r.Context(), mac, limit)
	return writeList(w, bs, err)
}

func (a *API) boot(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return errorf(http.StatusBadRequest, "boot id %q: want a positive number", r.PathValue("id"))
	}
	b, err := a.d.DB.BootByID(r.Context(), id)
	if err != nil {
		return err
	}
	ev, err := a.d.DB.BootEvents(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, BootDetail{Boot: b, Events: orEmpty(ev)})
}

// TokenRequest names a new admin token and its scope.
type TokenRequest struct {
	Name  string `json:"name"`
	Scope string `json:"scope"` // read, operate or admin
}

func (a *API) tokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.d.DB.APITokens(r.Context())
	return writeList(w, ts, err)
}

func (a *API) tokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	tok, t, err := enroll.NewAPIToken(background(r.Context()), a.d.DB, req.Name, enroll.Scope(req.Scope))
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"id": t.ID, "name": t.Name, "scope": t.Scope, "token": tok})
}

func (a *API) tokenDelete(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if len(id) != 16 {
		return errorf(http.StatusBadRequest, "token id %q: want the 16-character id (overboot token ls)", id)
	}
	if err := a.d.DB.DeleteAPIToken(background(r.Context()), id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// backup streams a consistent copy of the state store (SQLite's VACUUM
// INTO reads one snapshot while the server keeps running).
func (a *API) backup(w http.ResponseWriter, r *http.Request) error {
	dir, err := os.MkdirTemp(filepath.Dir(a.d.DB.Path()), ".backup-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "state.db")
	if err := a.d.DB.Backup(r.Context(), tmp); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/vnd.sqlite3")
	w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
	w.Header().Set("Cache-Control", "no-store")
	_, err = io.Copy(w, f)
	if err != nil {
		a.d.Log.Warn("backup: the client went away", "err", err)
	}
	return nil
}
