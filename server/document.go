package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// document answers GET /doc/{token}, once, to the address the token was
// handed to: the side effects (the disk, the identity, the report token,
// the image's tree) here, the document itself in package server/answer.
func (s *Server) document(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if !s.overTLS(w, r) {
		return
	}
	t, ok := s.spend(w, r, tok, enroll.PurposeDoc, false)
	if !ok {
		return
	}
	s.serveDocument(w, r, tok, t)
}

// overTLS refuses a request that hands secrets (a document, a password)
// over plain HTTP once the server has HTTPS, before anything is spent.
func (s *Server) overTLS(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Load().TLSListen != "" && r.TLS == nil {
		// Its secrets never cross the network in the clear once the
		// server has HTTPS; the token stays unspent.
		http.Error(w, "this server hands boot documents over HTTPS only (tls-listen): the URL on the kernel command line is https", http.StatusForbidden)
		return false
	}
	return true
}

// serveDocument answers the boot document of t, the spent token tok
// (a document's, or a console login's that succeeded): on a failure of
// the server's (5xx), tok is given back, so that the agent's next try
// with the same URL can work.
func (s *Server) serveDocument(w http.ResponseWriter, r *http.Request, tok string, t state.BootToken) {
	ctx := r.Context()
	fail := func(code int, why string) {
		if code >= 500 {
			// The agent tries again (a 503 while the store is down)
			// with the same URL: it must find the token there.
			s.giveBack(tok, t)
		}
		s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "document", Outcome: telemetry.Failed, Message: why})
		http.Error(w, why, code)
	}
	set := s.sets.Load()
	p := set.Profile(t.Profile)
	if p == nil || p.Sanboot != "" {
		fail(http.StatusConflict, "the profile of this boot changed: reboot the machine")
		return
	}
	f, code, why := s.documentFacts(r, t, p)
	if code != 0 {
		fail(code, why)
		return
	}
	doc, err := answer.Document(f)
	if err != nil {
		s.log.Error("boot document", "mac", t.MAC, "err", err)
		fail(http.StatusInternalServerError, "the server made an invalid document: see its log")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(doc)
	note := "tmpfs upper"
	if f.Disk != nil {
		note = "disk " + f.Disk.Target
	}
	s.rec.Event(ctx, t.BootID, state.BootEvent{Source: telemetry.SourceServer, Phase: "document", Outcome: telemetry.OK, Message: note + ", host " + f.Identity.Hostname})
}

// documentFacts runs the side effects of t's document and gathers what
// it is made of; on failure, the HTTP code and why (logged here).
func (s *Server) documentFacts(r *http.Request, t state.BootToken, p *config.Profile) (answer.DocumentFacts, int, string) {
	ctx := r.Context()
	base, err := s.base(r)
	if err != nil {
		return answer.DocumentFacts{}, http.StatusBadRequest, err.Error()
	}
	a, err := s.sets.Load().Resolve(ctx, p)
	if err != nil {
		s.log.Error("resolve profile", "profile", p.Name, "err", err)
		return answer.DocumentFacts{}, http.StatusInternalServerError, fmt.Sprintf("profile %s: %v", p.Name, err)
	}
	if err := s.admitted(ctx, t, p); err != nil {
		code, why := s.diskError(t, err)
		return answer.DocumentFacts{}, code, why
	}
	f := answer.DocumentFacts{Base: base, Mirrors: s.mirrors(s.cfg.Load()), Cache: s.cfg.Load().Cache, Secure: s.secure(base), Machine: answer.Machine{MAC: t.MAC, User: t.User}, Profile: p,
		Root: answer.Image{Digest: a.Root.Digest, Size: a.Root.Size}}
	if p.Upper == "iscsi" {
		ex, err := s.attach(ctx, t, p)
		if err != nil {
			code, why := s.diskError(t, err)
			return answer.DocumentFacts{}, code, why
		}
		portal, err := s.diskPortal(ex, base)
		if err != nil {
			return answer.DocumentFacts{}, http.StatusInternalServerError, err.Error()
		}
		f.Disk = &answer.Disk{Portal: portal, Target: ex.Target, Initiator: ex.Initiator, CHAP: *docCHAP(ex.Creds)}
	}
	if f.Identity, err = s.identity(ctx, t, p); err != nil {
		s.log.Error("identity", "mac", t.MAC, "err", err)
		return answer.DocumentFacts{}, http.StatusInternalServerError, "cannot make the machine's identity: see the server's log"
	}
	if f.ReportToken, err = s.tokens.Issue(ctx, state.BootToken{Purpose: enroll.PurposeReport, MAC: t.MAC, User: t.User, Profile: t.Profile, Address: t.Address, BootID: t.BootID}, enroll.ReportTTL); err != nil {
		s.log.Error("issue token", "err", err)
		return answer.DocumentFacts{}, http.StatusInternalServerError, "cannot issue a token: see the server's log"
	}
	if p.LowerMode.OnDemand() {
		// The first machine to ask for an image on demand waits for its
		// tree (a second or so per GiB); the others find it made.
		tr, err := s.trees.Get(ctx, a.Root.Digest, s.blobs.BlobPath(a.Root.Digest), a.Root.Size)
		if err != nil {
			s.log.Error("dm-verity tree", "image", a.Root.Digest.String(), "err", err)
			return answer.DocumentFacts{}, http.StatusInternalServerError, "cannot make the image's dm-verity tree: see the server's log"
		}
		f.Root.Tree = &answer.Tree{Hash: tr.Hash, Size: tr.HashSize, RootHash: tr.RootHash, Salt: tr.Salt}
		f.Root.WorkingSet = s.workingSetOf(ctx, a.Root.Digest, a.Root.Size, tr.HashSize)
	}
	return f, 0, ""
}

// workingSetOf is the union of the working sets the last boots of image
// reported, for the next boot's keeper to fetch before the root needs
// it; nil when there is none, or the store cannot say (the boot goes on
// without: it reads on demand as before).
func (s *Server) workingSetOf(ctx context.Context, image boot.Digest, size, treeSize int64) *boot.WorkingSet {
	ws, n, err := s.db.WorkingSet(ctx, image.String())
	if err != nil {
		s.log.Warn("working set", "image", image.String(), "err", err)
		return nil
	}
	if n == 0 {
		return nil
	}
	if err := ws.Check(size, treeSize); err != nil {
		// Sets recorded for another size of the same digest cannot be:
		// a store edited by hand, or a bug.
		s.log.Warn("working set", "image", image.String(), "err", err)
		return nil
	}
	return &ws
}
