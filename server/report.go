package server

import (
	"cmp"
	"errors"
	"fmt"
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
	t, ok := s.reportToken(w, r)
	if !ok {
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

// workingSet answers POST /report/{token}/working-set: the chunks of its
// root image (and of the image's tree) a boot read in its first minute,
// as its keeper reports them, once per boot. The report must name the
// image the boot was given, and every chunk must be within it: anything
// else is a 400 and changes nothing; a second report is a 409.
func (s *Server) workingSet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := s.reportToken(w, r)
	if !ok {
		return
	}
	rep, err := boot.ParseWorkingSetReport(io.LimitReader(r.Body, boot.MaxWorkingSetReportSize+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := s.db.BootByID(ctx, t.BootID)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			http.Error(w, "this boot is no longer recorded", http.StatusNotFound)
			return
		}
		http.Error(w, "cannot read boots", http.StatusInternalServerError)
		return
	}
	if string(rep.Image) != b.Image {
		http.Error(w, fmt.Sprintf("working set report: image: %s, but this boot was given %s", rep.Image, cmp.Or(b.Image, "no image")), http.StatusBadRequest)
		return
	}
	tree, ok := s.trees.Lookup(rep.Image)
	if !ok {
		http.Error(w, fmt.Sprintf("working set report: image %s has no dm-verity tree on this server: it was not read on demand here", rep.Image), http.StatusConflict)
		return
	}
	if err := rep.Set.Check(tree.ImageSize, tree.HashSize); err != nil {
		http.Error(w, "working set report: working_set: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.db.AddWorkingSet(ctx, t.BootID, b.Image, rep.Set); err != nil {
		if errors.Is(err, state.ErrExists) {
			http.Error(w, "this boot's working set was reported already", http.StatusConflict)
			return
		}
		s.log.Error("working set", "boot", t.BootID, "err", err)
		http.Error(w, "the server could not record the working set: see its log", http.StatusServiceUnavailable)
		return
	}
	s.log.Debug("working set", "boot", t.BootID, "image", b.Image, "chunks", rep.Set.Count(), "seconds", rep.Seconds)
	w.WriteHeader(http.StatusNoContent)
}

// reportToken reads the report URL's token (not spent: a boot reports
// many times) and charges its rate limit; on failure it has answered.
func (s *Server) reportToken(w http.ResponseWriter, r *http.Request) (state.BootToken, bool) {
	t, err := s.tokens.Peek(r.Context(), r.PathValue("token"), enroll.PurposeReport)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			http.Error(w, "unknown or expired report URL", http.StatusNotFound)
			return t, false
		}
		http.Error(w, "cannot read tokens", http.StatusInternalServerError)
		return t, false
	}
	if !s.reportRate.Allow(r.PathValue("token")) {
		http.Error(w, "too many reports", http.StatusTooManyRequests)
		return t, false
	}
	return t, true
}
