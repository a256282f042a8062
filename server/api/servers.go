package api

import (
	"net/http"
	"time"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// ServerRow is one server sharing the store, and whether it is up now
// (beating, not stopped).
type ServerRow struct {
	state.ServerInfo
	Up bool `json:"up"`
}

func (a *API) servers(w http.ResponseWriter, r *http.Request) error {
	ss, err := a.d.DB.Servers(r.Context())
	if err != nil {
		return err
	}
	now := time.Now()
	rows := make([]ServerRow, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, ServerRow{ServerInfo: s, Up: s.Up(now)})
	}
	return writeJSON(w, http.StatusOK, rows)
}

func (a *API) serverForget(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !config.ValidServerName(name) {
		return errorf(http.StatusBadRequest, "server name %q: want 1 to 63 letters, digits, '.', '-' or '_' (overboot server ls)", name)
	}
	if err := a.d.DB.ForgetServer(background(r.Context()), name); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": name, "forgotten": true})
}
