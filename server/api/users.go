package api

import (
	"context"
	"net/http"

	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// UserRequest adds a user or sets a password.
type UserRequest struct {
	Name     string `json:"name,omitempty"`
	Password string `json:"password"`
}

// UserView is a user with their disks.
type UserView struct {
	state.User
	Disks []state.Disk `json:"disks"`
}

func userParam(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := enroll.CheckUserName(name); err != nil {
		return "", errorf(http.StatusBadRequest, "%v", err)
	}
	return name, nil
}

func (a *API) users(w http.ResponseWriter, r *http.Request) error {
	us, err := a.d.DB.Users(r.Context())
	if err != nil {
		return err
	}
	ks, err := a.d.DB.Disks(r.Context())
	if err != nil {
		return err
	}
	out := make([]UserView, 0, len(us))
	for _, u := range us {
		v := UserView{User: u, Disks: []state.Disk{}}
		for _, k := range ks {
			if k.OwnerKind == state.OwnerUser && k.Owner == u.Name {
				v.Disks = append(v.Disks, k)
			}
		}
		out = append(out, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) userAdd(w http.ResponseWriter, r *http.Request) error {
	var req UserRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	if err := enroll.CheckUserName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	hash, err := enroll.HashPassword(req.Password)
	if err != nil {
		return errorf(http.StatusBadRequest, "user %s: %v", req.Name, err)
	}
	if err := a.d.DB.AddUser(background(r.Context()), req.Name, hash); err != nil {
		return err
	}
	u, err := a.d.DB.User(r.Context(), req.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, u)
}

func (a *API) userPassword(w http.ResponseWriter, r *http.Request) error {
	name, err := userParam(r)
	if err != nil {
		return err
	}
	var req UserRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	if req.Name != "" && req.Name != name {
		return errorf(http.StatusBadRequest, "name %q in the body differs from the path's %q", req.Name, name)
	}
	if err := a.SetPassword(background(r.Context()), name, req.Password); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": name, "password_changed": true})
}

// SetPassword gives the user name a new password (checked as
// enroll.HashPassword does: too short a password is refused).
func (a *API) SetPassword(ctx context.Context, name, password string) error {
	hash, err := enroll.HashPassword(password)
	if err != nil {
		return errorf(http.StatusBadRequest, "user %s: %v", name, err)
	}
	if err := a.d.DB.SetPassword(ctx, name, hash); err != nil {
		return err
	}
	a.d.Log.Info("user password changed", "user", name)
	return nil
}

// userReset ends the user's sessions and removes their disks.
func (a *API) userReset(w http.ResponseWriter, r *http.Request) error { return a.dropUser(w, r, false) }

// userDelete removes the user's disks (ending their sessions), then the
// user.
func (a *API) userDelete(w http.ResponseWriter, r *http.Request) error { return a.dropUser(w, r, true) }

func (a *API) dropUser(w http.ResponseWriter, r *http.Request, forget bool) error {
	name, err := userParam(r)
	if err != nil {
		return err
	}
	drop := a.ResetUser
	if forget {
		drop = a.DeleteUser
	}
	n, err := drop(background(r.Context()), name)
	if err != nil {
		return err
	}
	out := map[string]any{"name": name, "disks_removed": n}
	if forget {
		out["deleted"] = true
	}
	return writeJSON(w, http.StatusOK, out)
}

// ResetUser ends the user's sessions and removes their disks; it returns
// how many went.
func (a *API) ResetUser(ctx context.Context, name string) (int, error) {
	n, err := a.dropDisks(ctx, disks.Owner{Kind: state.OwnerUser, Name: name})
	if err == nil {
		a.d.Log.Info("user reset", "user", name, "disks_removed", n)
	}
	return n, err
}

// DeleteUser removes the user's disks (ending their sessions), then the
// user.
func (a *API) DeleteUser(ctx context.Context, name string) (int, error) {
	n, err := a.dropDisks(ctx, disks.Owner{Kind: state.OwnerUser, Name: name})
	if err != nil {
		return 0, err
	}
	if err := a.d.DB.DeleteUser(ctx, name); err != nil {
		return n, err
	}
	a.d.Log.Info("user deleted", "user", name, "disks_removed", n)
	return n, nil
}
