package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/internal/iscsiwire"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/disks"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// peer is one of several servers sharing a store in one process: its
// own data directory and blobs, HTTP and iSCSI on loopback, registered.
type peer struct {
	name   string
	s      *Server
	h      http.Handler
	http   string // host:port
	portal string // its iSCSI portal
	data   string
	logs   *syncBuffer
	stopFn func()
}

// newPeers starts a server per name over one store (SQLite in dir),
// each with a profile whose upper is an iSCSI disk, open to any machine.
func newPeers(t *testing.T, dir string, db *state.DB, names ...string) []*peer {
	t.Helper()
	for name, body := range map[string]string{"kernel": "KERNEL", "initramfs": "INITRAMFS", "root": "ROOT-IMAGE-0123456789"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out []*peer
	for _, name := range names {
		p, err := startPeer(dir, db, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		out = append(out, p)
	}
	return out
}

func peerConf(dir, name, portal string) string {
	return "[server]\nname = " + name + "\ndata = " + dir + "/" + name + "\niscsi-portal = " + portal +
		"\n[profile default]\nkernel = " + dir + "/kernel\ninitramfs = " + dir + "/initramfs\nroot = " + dir + "/root\n" +
		"upper = iscsi\nupper-disk-size = 16M\nenroll = open-insecure\n"
}

// startPeer opens server name (data in dir/name) over db, serves it on
// loopback and registers it.
func startPeer(dir string, db *state.DB, name string) (*peer, error) {
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(name+".conf", strings.NewReader(peerConf(dir, name, iln.Addr().String())))
	if err != nil {
		return nil, err
	}
	blobs, err := blobstore.Open(cfg.Data)
	if err != nil {
		return nil, err
	}
	logs := &syncBuffer{}
	s, err := New(context.Background(), cfg, blobs, db, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		return nil, err
	}
	hs := httptest.NewServer(s.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.ServeISCSI(ctx, iln); close(done) }()
	if _, err := s.Register(ctx, Announcement{HTTP: hs.Listener.Addr(), ISCSI: iln.Addr()}); err != nil {
		cancel()
		hs.Close()
		return nil, err
	}
	p := &peer{name: name, s: s, h: s.Handler(), http: hs.Listener.Addr().String(), portal: iln.Addr().String(), data: cfg.Data, logs: logs}
	p.stopFn = func() {
		hs.Close()
		cancel()
		<-done
		s.disks.Close()
		if info, err := db.Server(context.Background(), name); err == nil {
			db.Unregister(context.Background(), name, info.Instance)
		}
	}
	return p, nil
}

func (p *peer) stop() {
	if p.stopFn != nil {
		p.stopFn()
		p.stopFn = nil
	}
}

// boot asks p for mac's script and document as the machine would, from
// remote; it returns the document's status, its body on failure, and
// the document.
func (p *peer) boot(t *testing.T, mac, remote string) (int, string, boot.Document) {
	t.Helper()
	get := func(target string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = p.http
		req.RemoteAddr = remote + ":40000"
		rec := httptest.NewRecorder()
		p.h.ServeHTTP(rec, req)
		return rec.Result()
	}
	script := body(t, get("/ipxe?mac="+mac))
	r := get(find(t, `(/doc/[0-9a-f]{64})`, script))
	if r.StatusCode != http.StatusOK {
		return r.StatusCode, body(t, r), boot.Document{}
	}
	d, err := boot.ParseDocument(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r.StatusCode, "", d
}

// iscsiLogin logs in to the document's disk as its machine (mutual
// CHAP) and returns the session's connection, or the login's error.
func iscsiLogin(t *testing.T, u *boot.ISCSISource) (net.Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", u.Portal)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = initiator.Login(&initiator.TCP{Conn: nc}, initiator.Options{Initiator: u.Initiator, Target: u.Target,
		CHAP: iscsiwire.CHAP{User: u.CHAP.User, Secret: iscsiwire.Secret(u.CHAP.Secret)}, TargetCHAP: &iscsiwire.CHAP{User: u.CHAP.TargetUser, Secret: iscsiwire.Secret(u.CHAP.TargetSecret)}})
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

func sharedStore(t *testing.T) (string, *state.DB) {
	t.Helper()
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dir, db
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// waitNoSession waits until p's target has no session on iqn (a closed
// connection ends its session when the target reads the close).
func waitNoSession(t *testing.T, p *peer, iqn string) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		busy := false
		for _, s := range p.s.disks.Target().Sessions() {
			busy = busy || s.Target == iqn
		}
		if !busy {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the session on %s did not end", iqn)
}

// TestDiskHomeElsewhere: a machine whose disk lives on server a boots
// through server b: b's document sends it to a's portal with the
// credentials in the store, and a exports the disk when the machine logs
// in (also when its export there is stale). Another machine's login
// changes nothing. With a down or unknown, or the disk moving, the boot
// fails naming why, and no disk is made on b.
func TestDiskHomeElsewhere(t *testing.T) {
	dir, db := sharedStore(t)
	ps := newPeers(t, dir, db, "a", "b")
	a, b := ps[0], ps[1]
	ctx := context.Background()
	const mac, mac2 = "52:54:00:00:00:01", "52:54:00:00:00:02"

	code, why, doc := a.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 {
		t.Fatalf("boot at a: %d %s", code, why)
	}
	k, err := db.Disk(ctx, state.OwnerMachine, mac, "default")
	if err != nil || k.Home != "a" || !strings.HasPrefix(k.Path, a.data+"/") || doc.Upper.ISCSI.Portal != a.portal {
		t.Fatalf("disk made at a: %+v %v, portal %s (a's %s)", k, err, doc.Upper.ISCSI.Portal, a.portal)
	}
	// a no longer exports it (as after a move here, or before any boot
	// here): the login at a, sent there by b, exports it.
	a.s.disks.Drop(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac})
	code, why, doc = b.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 {
		t.Fatalf("boot at b: %d %s", code, why)
	}
	u := doc.Upper.ISCSI
	if u.Portal != a.portal || u.Target != disks.TargetIQN(k) {
		t.Fatalf("b's document: portal %s target %s, want a's %s and %s", u.Portal, u.Target, a.portal, disks.TargetIQN(k))
	}
	if ks, _ := db.Disks(ctx); len(ks) != 1 {
		t.Fatalf("disks after the boot at b: %+v", ks)
	}
	if ents := diskDirs(b); len(ents) != 0 {
		t.Fatalf("b made a disk directory: %v", ents)
	}
	// Another machine, naming the disk's target at a with its own
	// initiator, gets nothing and changes nothing.
	u2 := *u
	u2.Initiator = disks.InitiatorIQN(mac2)
	if c, err := iscsiLogin(t, &u2); err == nil {
		c.Close()
		t.Fatal("another initiator logged in to the disk")
	}
	c, err := iscsiLogin(t, u)
	if err != nil {
		t.Fatalf("login at a with b's document: %v", err)
	}
	// New credentials (rotated), handed out by b: a's export is stale,
	// the login with the new ones replaces it and ends the old session.
	if _, err := b.s.disks.RotateMachine(ctx, mac); err != nil {
		t.Fatal(err)
	}
	code, why, doc = b.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 || doc.Upper.ISCSI.CHAP.Secret == u.CHAP.Secret {
		t.Fatalf("boot at b after rotation: %d %s, secret changed: %v", code, why, doc.Upper.ISCSI.CHAP.Secret != u.CHAP.Secret)
	}
	c2, err := iscsiLogin(t, doc.Upper.ISCSI)
	if err != nil {
		t.Fatalf("login at a with the new credentials: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the stale export's session is still open")
	}
	c.Close()
	if c, err := iscsiLogin(t, u); err == nil {
		c.Close()
		t.Fatal("the old credentials still log in")
	}
	c2.Close()
	waitNoSession(t, a, u.Target)

	// Moving: boots anywhere fail, saying so.
	if err := db.BeginMove(ctx, k.ID, "a", "b", "0123"); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		code, why, _ := p.boot(t, "52-54-00-00-00-01", "192.0.2.1")
		if want := fmt.Sprintf("disk %d is moving to b: try again shortly", k.ID); code != http.StatusServiceUnavailable || !strings.Contains(why, want) {
			t.Errorf("boot at %s of a moving disk: %d %q, want 503 %q", p.name, code, why, want)
		}
	}
	if ok, err := db.UndoMove(ctx, k.ID, "a", "b"); !ok || err != nil {
		t.Fatal(ok, err)
	}

	// a down: the boot at b fails naming a and its last heartbeat.
	ia, _ := db.Server(ctx, "a")
	if err := db.Unregister(ctx, "a", ia.Instance); err != nil {
		t.Fatal(err)
	}
	code, why, _ = b.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != http.StatusServiceUnavailable || !strings.Contains(why, "lives on server a, which is down") || !strings.Contains(why, "last heartbeat "+ia.Heartbeat.UTC().Format(time.RFC3339)) {
		t.Errorf("boot at b with a down: %d %q", code, why)
	}
	// a unknown (forgotten): the same, and still no disk on b.
	if err := db.ForgetServer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	code, why, _ = b.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != http.StatusServiceUnavailable || !strings.Contains(why, "lives on server a, which is not registered") {
		t.Errorf("boot at b with a unknown: %d %q", code, why)
	}
	if ks, _ := db.Disks(ctx); len(ks) != 1 || ks[0].Home != "a" || ks[0].Status != state.DiskReady {
		t.Errorf("disks after the failed boots: %+v", ks)
	}
	if ents := diskDirs(b); len(ents) != 0 {
		t.Errorf("b made a disk directory: %v", ents)
	}
	// A machine without a disk yet gets one on the server it boots at.
	code, why, doc = b.boot(t, "52-54-00-00-00-02", "192.0.2.2")
	if k2, err := db.Disk(ctx, state.OwnerMachine, mac2, "default"); code != 200 || err != nil || k2.Home != "b" || doc.Upper.ISCSI.Portal != b.portal {
		t.Errorf("a new machine at b: %d %s, disk %+v %v", code, why, k2, err)
	}
}

// TestDiskMove: a disk moves only while no session is open on it (the
// refusal names the session's initiator); moved, it is on the other
// server with the same SHA-256, its old copy gone, and the machine's
// next boot (at either server) logs in there. Moved back through the
// API. A copy without the move's secret, or not what the home read, is
// refused.
func TestDiskMove(t *testing.T) {
	dir, db := sharedStore(t)
	ps := newPeers(t, dir, db, "a", "b")
	a, b := ps[0], ps[1]
	ctx := context.Background()
	const mac = "52:54:00:00:00:01"
	code, why, doc := a.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 {
		t.Fatalf("boot: %d %s", code, why)
	}
	k, _ := db.Disk(ctx, state.OwnerMachine, mac, "default")
	c, err := iscsiLogin(t, doc.Upper.ISCSI)
	if err != nil {
		t.Fatal(err)
	}
	err = a.s.disks.Move(ctx, k.ID, "b")
	if !errors.Is(err, disks.ErrSessionOpen) || !strings.Contains(err.Error(), disks.InitiatorIQN(mac)) {
		t.Fatalf("move with a session open: %v", err)
	}
	if k2, _ := db.DiskByID(ctx, k.ID); k2.Status != state.DiskReady || k2.Home != "a" {
		t.Fatalf("after the refused move: %+v", k2)
	}
	c.Close()
	waitNoSession(t, a, doc.Upper.ISCSI.Target)
	// Something on the disk, so the digest says something.
	f, err := os.OpenFile(k.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("written by the machine"), 5<<20)
	f.Close()
	sum := fileDigest(t, k.Path)
	if err := b.s.disks.Move(ctx, k.ID, "a"); err == nil {
		t.Fatal("b moved a disk that lives on a")
	}
	if err := a.s.disks.Move(ctx, k.ID, "b"); err != nil {
		t.Fatalf("move: %v", err)
	}
	k2, _ := db.DiskByID(ctx, k.ID)
	if k2.Home != "b" || k2.Status != state.DiskReady || !strings.HasPrefix(k2.Path, b.data+"/") || fileDigest(t, k2.Path) != sum {
		t.Fatalf("moved: %+v, digest %s want %s", k2, fileDigest(t, k2.Path), sum)
	}
	if _, err := os.Stat(filepath.Join(a.data, "disks", fmt.Sprint(k.ID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old copy on a: %v", err)
	}
	// The next boot, at a, sends the machine to b, which exports it.
	code, why, doc = a.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 || doc.Upper.ISCSI.Portal != b.portal {
		t.Fatalf("boot at a after the move: %d %s %+v", code, why, doc.Upper)
	}
	c, err = iscsiLogin(t, doc.Upper.ISCSI)
	if err != nil {
		t.Fatalf("login at b: %v", err)
	}
	c.Close()
	waitNoSession(t, b, doc.Upper.ISCSI.Target)

	// Copies that do not come from the move.
	if err := db.BeginMove(ctx, k.ID, "b", "a", hexSum("the real secret")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.SetMoveDigest(ctx, k.ID, "b", "a", sum); !ok {
		t.Fatal("digest")
	}
	put := func(auth string, content []byte) int {
		req := httptest.NewRequest(http.MethodPut, disks.PeerPath+fmt.Sprint(k.ID), strings.NewReader(string(content)))
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		return rec.Code
	}
	content, _ := os.ReadFile(k2.Path)
	if c := put("", content); c != http.StatusForbidden {
		t.Errorf("a copy without a secret: %d", c)
	}
	if c := put("Overboot-Move another secret", content); c != http.StatusForbidden {
		t.Errorf("a copy with another secret: %d", c)
	}
	bad := append([]byte(nil), content...)
	bad[0] ^= 1
	if c := put("Overboot-Move the real secret", bad); c != http.StatusForbidden {
		t.Errorf("a copy that is not what the home read: %d", c)
	}
	if k3, _ := db.DiskByID(ctx, k.ID); k3.Home != "b" {
		t.Fatalf("a refused copy switched the home: %+v", k3)
	}
	if _, err := os.Stat(filepath.Join(a.data, "disks", fmt.Sprint(k.ID), "upper.img.new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused copy left its file: %v", err)
	}
	db.UndoMove(ctx, k.ID, "b", "a")

	// Back to a through b's API, as overboot disk move does.
	tok, _, err := enroll.NewAPIToken(ctx, db, "t", enroll.ScopeOperate)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/disks/"+fmt.Sprint(k.ID)+"/move", strings.NewReader(`{"to":"a"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("move back through the API: %d %s", rec.Code, rec.Body)
	}
	k4, _ := db.DiskByID(ctx, k.ID)
	if k4.Home != "a" || fileDigest(t, k4.Path) != sum {
		t.Fatalf("moved back: %+v", k4)
	}
	if _, err := os.Stat(filepath.Join(b.data, "disks", fmt.Sprint(k.ID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old copy on b: %v", err)
	}
}

// TestDiskResetElsewhere: a reset through a server that is not the
// disk's home marks the disk; the home ends its session and removes it
// at its next sweep, and the next boot makes a new disk.
func TestDiskResetElsewhere(t *testing.T) {
	dir, db := sharedStore(t)
	ps := newPeers(t, dir, db, "a", "b")
	a, b := ps[0], ps[1]
	ctx := context.Background()
	const mac = "52:54:00:00:00:01"
	code, why, doc := a.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if code != 200 {
		t.Fatalf("boot: %d %s", code, why)
	}
	k, _ := db.Disk(ctx, state.OwnerMachine, mac, "default")
	c, err := iscsiLogin(t, doc.Upper.ISCSI)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := b.s.disks.Reset(ctx, disks.Owner{Kind: state.OwnerMachine, Name: mac}); err != nil || n != 1 {
		t.Fatalf("reset at b: %d %v", n, err)
	}
	if k2, err := db.DiskByID(ctx, k.ID); err != nil || k2.Status != state.DiskDeleting {
		t.Fatalf("after the reset at b: %+v %v", k2, err)
	}
	if _, err := os.Stat(k.Path); err != nil {
		t.Fatalf("b touched a's file: %v", err)
	}
	if err := a.s.disks.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DiskByID(ctx, k.ID); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("after a's sweep: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(k.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the disk's directory on a: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the session on the removed disk is still open")
	}
	code, why, _ = b.boot(t, "52-54-00-00-00-01", "192.0.2.1")
	if k3, err := db.Disk(ctx, state.OwnerMachine, mac, "default"); code != 200 || err != nil || k3.Home != "b" || !strings.HasPrefix(k3.Path, b.data+"/") {
		t.Errorf("the next boot, at b: %d %s, disk %+v %v", code, why, k3, err)
	}
}

// diskDirs lists the disk directories in p's data directory.
func diskDirs(p *peer) []string {
	ents, _ := os.ReadDir(filepath.Join(p.data, "disks"))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
