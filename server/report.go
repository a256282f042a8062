package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// report answers POST /report/{token}: one of the agent's phase reports.
// The token names the boot; it is not bound to an address (the booted
// kernel's DHCP lease may differ from iPXE's) and lets its holder report
// on that boot only.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := s.tokens.Peek(ctx, r.PathValue("token"), enroll.PurposeReport)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			http.Error(w, "unknown or expired report URL", http.StatusNotFound)
			return
		}
		http.Error(w, "cannot read tokens", http.StatusInternalServerError)
		return
	}
	if !s.reportRate.Allow(r.PathValue("token")) {
		http.Error(w, "too many reports", http.StatusTooManyRequests)
		return
	}
	rep, err := boot.ParsePhaseReport(io.LimitReader(r.Body, boot.MaxPhaseReportSize+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceAgent, Phase: rep.Phase, Outcome: rep.Outcome, Seconds: rep.Seconds, Message: rep.Message}); err != nil {
		// The agent should know: it was not recorded.
		http.Error(w, "the server could not record the report: see its log", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
