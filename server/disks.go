package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/iscsi"
	"github.com/overboot/overboot/server/machines"
)

// DefaultUpperDiskSize is a machine's private disk when the profile does
// not say (sparse: it takes what is written).
const DefaultUpperDiskSize = 4 << 30

// tokenTTL bounds how long a boot document waits for its machine.
const tokenTTL = 10 * time.Minute

// disks serves per-machine iSCSI disks and the boot documents that carry
// their credentials behind single-use tokens.
type disks struct {
	target *iscsi.Server
	state  *machines.Store

	mu      sync.Mutex // guards tokens and luns
	tokens  map[string]docToken
	luns    map[string]iscsi.Backing // by MAC, open while the target exists
	nowFunc func() time.Time
}

type docToken struct {
	mac     net.HardwareAddr
	profile string
	expires time.Time
}

func newDisks(state *machines.Store) *disks {
	return &disks{state: state, tokens: map[string]docToken{}, luns: map[string]iscsi.Backing{}, nowFunc: time.Now}
}

// newToken makes a single-use token for mac's boot document.
func (d *disks) newToken(mac net.HardwareAddr, profile string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.nowFunc()
	for k, t := range d.tokens {
		if now.After(t.expires) {
			delete(d.tokens, k)
		}
	}
	d.tokens[tok] = docToken{mac: mac, profile: profile, expires: now.Add(tokenTTL)}
	return tok, nil
}

// take consumes a token.
func (d *disks) take(tok string) (docToken, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tokens[tok]
	delete(d.tokens, tok)
	if !ok || d.nowFunc().After(t.expires) {
		return docToken{}, false
	}
	return t, true
}

// InitiatorIQN is the initiator name a machine uses.
func InitiatorIQN(mac net.HardwareAddr) string {
	return "iqn.2026-11.org.overboot:i-" + strings.ReplaceAll(mac.String(), ":", "")
}

// ensureTarget creates the machine's disk on its first boot and exports
// it as the machine's target (only its initiator, its CHAP): a sparse
// upper disk of size bytes, or, when base is set, a copy-on-write layer
// over the raw disk image base.
func (d *disks) ensureTarget(mac net.HardwareAddr, size int64, base string) (iscsi.CHAP, error) {
	chap, err := d.state.CHAP(mac)
	if err != nil {
		return iscsi.CHAP{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var cowPath string
	if base != "" {
		// Checked at every boot: the image may have changed under a
		// running target.
		if cowPath, err = d.state.CowPath(mac, base); err != nil {
			return iscsi.CHAP{}, err
		}
	}
	if _, ok := d.luns[mac.String()]; ok {
		return chap, nil
	}
	var lun iscsi.Backing
	if base != "" {
		if lun, err = iscsi.OpenCow(base, cowPath); err != nil {
			return iscsi.CHAP{}, err
		}
	} else {
		path, _, err := d.state.UpperPath(mac, size)
		if err != nil {
			return iscsi.CHAP{}, err
		}
		if lun, err = iscsi.OpenFile(path, false); err != nil {
			return iscsi.CHAP{}, err
		}
	}
	if err := d.target.AddTarget(iscsi.TargetConfig{IQN: machines.IQN(mac), LUNs: []iscsi.Backing{lun}, CHAP: chap, Initiators: []string{InitiatorIQN(mac)}, Exclusive: true}); err != nil {
		lun.Close()
		return iscsi.CHAP{}, err
	}
	d.luns[mac.String()] = lun
	return chap, nil
}

// drop ends the machine's sessions and closes its disk.
func (d *disks) drop(mac net.HardwareAddr) {
	d.target.RemoveTarget(machines.IQN(mac))
	d.mu.Lock()
	defer d.mu.Unlock()
	if lun, ok := d.luns[mac.String()]; ok {
		lun.Close()
		delete(d.luns, mac.String())
	}
}

// portal is the iSCSI address a machine uses: configured, or the host it
// reached HTTP at with the iSCSI port.
func (s *Server) portal(base string) (string, error) {
	if s.cfg.Portal != "" {
		return s.cfg.Portal, nil
	}
	_, port, err := net.SplitHostPort(s.cfg.ISCSI)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// document answers GET /doc/{token}: once per token.
func (s *Server) document(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.disks.take(r.PathValue("token"))
	p := s.profiles[tok.profile]
	if !ok || p == nil || p.Sanboot != "" {
		http.Error(w, "unknown, used or expired token: reboot the machine for a new one", http.StatusNotFound)
		return
	}
	base, err := s.base(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portal, err := s.portal(base)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	size := p.UpperDiskSize
	if size == 0 {
		size = DefaultUpperDiskSize
	}
	chap, err := s.disks.ensureTarget(tok.mac, size, "")
	if err != nil {
		s.log.Error("machine disk", "mac", tok.mac.String(), "err", err)
		http.Error(w, "cannot prepare the machine's disk", http.StatusInternalServerError)
		return
	}
	doc := boot.Document{Version: 1, Machine: tok.mac.String(),
		Lower: boot.Source{HTTP: &boot.HTTPSource{URL: base + BlobPrefix + p.root.Digest.Hex(), Digest: p.root.Digest, Size: p.root.Size}},
		Upper: boot.Upper{ISCSI: &boot.ISCSISource{Portal: portal, Target: machines.IQN(tok.mac), Initiator: InitiatorIQN(tok.mac),
			CHAP: &boot.CHAP{User: chap.User, Secret: string(chap.Secret)}}},
		Init: p.Init,
	}
	if err := doc.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(doc)
	s.machines.stage(tok.mac.String(), "document")
}

// sanboot answers GET /san/{token}, once per token: the iPXE script that
// sanboots the machine's copy-on-write disk, with its CHAP credentials.
// The disk is created on the machine's first boot.
func (s *Server) sanboot(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.disks.take(r.PathValue("token"))
	p := s.profiles[tok.profile]
	if !ok || p == nil || p.Sanboot == "" {
		s.ipxe(w, http.StatusNotFound, boot.FailScript("unknown, used or expired sanboot URL: reboot the machine for a new one"))
		return
	}
	base, err := s.base(r)
	if err != nil {
		s.ipxe(w, http.StatusBadRequest, boot.FailScript(err.Error()))
		return
	}
	portal, err := s.portal(base)
	if err != nil {
		s.ipxe(w, http.StatusInternalServerError, boot.FailScript(err.Error()))
		return
	}
	chap, err := s.disks.ensureTarget(tok.mac, 0, p.Sanboot)
	if err != nil {
		s.log.Error("machine disk", "mac", tok.mac.String(), "err", err)
		why := "cannot prepare the machine's disk: see the server's log"
		if errors.Is(err, machines.ErrBaseChanged) {
			why = "the disk image changed since this machine's copy was made: reset the machine on the server (overboot machine reset " + tok.mac.String() + ")"
		}
		s.ipxe(w, http.StatusInternalServerError, boot.FailScript(why))
		return
	}
	text, err := boot.SANScript{
		Comment: fmt.Sprintf("%s, profile %s", tok.mac, p.Name),
		Portal:  portal, Target: machines.IQN(tok.mac), Initiator: InitiatorIQN(tok.mac),
		CHAP: boot.CHAP{User: chap.User, Secret: string(chap.Secret)},
	}.Render()
	if err != nil {
		s.ipxe(w, http.StatusInternalServerError, boot.FailScript(err.Error()))
		return
	}
	s.ipxe(w, http.StatusOK, text)
	s.machines.stage(tok.mac.String(), "sanboot")
}

// ServeISCSI serves the machines' disks on ln until ctx is done.
func (s *Server) ServeISCSI(ctx context.Context, ln net.Listener) error {
	return s.disks.target.Serve(ctx, ln)
}

// NeedsISCSI reports whether a profile puts an upper on iSCSI or sanboots.
func (s *Server) NeedsISCSI() bool {
	for _, p := range s.profiles {
		if p.Upper == "iscsi" || p.Sanboot != "" {
			return true
		}
	}
	return false
}

// machineAction answers POST /api/machines/{mac}/{reset|rotate} and
// DELETE /api/machines/{mac}. They change a machine's private state, so
// they answer loopback clients only. Sessions end first, then the disk
// or secret changes.
func (s *Server) machineAction(w http.ResponseWriter, r *http.Request) {
	if ip := net.ParseIP(remoteIP(r)); ip == nil || !ip.IsLoopback() {
		http.Error(w, "machine state changes are allowed from this host only", http.StatusForbidden)
		return
	}
	mac, err := boot.ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.disks.state == nil {
		http.Error(w, "no profile keeps machine state (upper = iscsi)", http.StatusNotFound)
		return
	}
	action := r.PathValue("action")
	if r.Method == http.MethodDelete {
		action = "delete"
	}
	s.disks.drop(mac)
	switch action {
	case "reset":
		err = s.disks.state.Reset(mac)
	case "delete":
		err = s.disks.state.Delete(mac)
	case "rotate":
		_, err = s.disks.state.Rotate(mac)
	default:
		http.Error(w, "unknown action: want reset, rotate or DELETE", http.StatusNotFound)
		return
	}
	if errors.Is(err, machines.ErrUnknown) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Error("machine "+action, "mac", mac.String(), "err", err)
		http.Error(w, "failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("machine "+action, "mac", mac.String())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(mac.String() + ": " + action + " done\n"))
}
