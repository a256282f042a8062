package server

import (
	"net/http"

	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// sanboot answers GET /san/{token}, once, to the address the token was
// handed to: the iPXE script that sanboots the boot's copy-on-write disk
// with its CHAP credentials.
func (s *Server) sanboot(w http.ResponseWriter, r *http.Request) {
	t, ok := s.spend(w, r, r.PathValue("token"), enroll.PurposeSan, true)
	if !ok {
		return
	}
	p := s.sets.Load().Profile(t.Profile)
	if p == nil || p.Sanboot == "" {
		s.fail(w, r, http.StatusConflict, "the profile of this boot changed: reboot the machine")
		return
	}
	s.sanScript(w, r, t, p)
}

func (s *Server) sanScript(w http.ResponseWriter, r *http.Request, t state.BootToken, p *config.Profile) {
	ctx := r.Context()
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ex, err := s.attach(ctx, t, p)
	if err != nil {
		code, why := s.diskError(t, err)
		s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "sanboot", Outcome: telemetry.Failed, Message: why})
		s.failScript(w, r, code, why)
		return
	}
	portal, err := s.diskPortal(ex, base)
	if err != nil {
		s.failScript(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	s.reply(w, r, http.StatusOK, answer.SanFor(answer.Machine{MAC: t.MAC, User: t.User}, p.Name, portal, ex.Target, ex.Initiator, *docCHAP(ex.Creds)))
	s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "sanboot", Outcome: telemetry.OK, Message: "disk " + ex.Target})
}
