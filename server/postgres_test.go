package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/state"
)

// TestPostgresTwoServers: two servers, each with its own data directory,
// opened (server.Open) on one PostgreSQL store. A machine asks server A
// and waits for approval; the approval made through server B's store
// lets it boot at A; the single-use document token A handed out is spent
// at B, only from the machine's address, and only once, A included.
// Neither server makes a SQLite file.
func TestPostgresTwoServers(t *testing.T) {
	conn := pgtest.Database(t)
	// The role needs no password here: a password file would be read
	// as in state's tests; this is about the wiring.
	store := "store = " + conn + "\n"
	const conf = "enroll = approve\n"
	a := newFixServer(t, store, conf, nil)
	b := newFixServer(t, store, conf, nil)
	const mac, addr = "52:54:00:12:34:56", "192.0.2.10"
	ctx := context.Background()
	if !a.s.db.Postgres() || !b.s.db.Postgres() {
		t.Fatalf("the servers' stores: %s, %s", a.s.db, b.s.db)
	}
	if s := a.script("52-54-00-12-34-56", addr); !strings.Contains(s, "waits for approval") {
		t.Fatalf("an unknown machine at A:\n%s", s)
	}
	if rs, err := b.s.db.Requests(ctx, mac); err != nil || len(rs) != 1 || rs[0].Address != addr {
		t.Fatalf("A's request for approval, seen at B: %+v %v", rs, err)
	}
	b.approve(mac, "default", addr)
	path := find(t, `http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, a.script("52-54-00-12-34-56", addr))
	if r, _ := b.doc(path, "192.0.2.66"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("A's token spent at B from another address: %d", r.StatusCode)
	}
	r, doc := b.doc(path, addr)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("A's token spent at B: %d", r.StatusCode)
	}
	if doc.Lower.HTTP == nil || doc.Lower.HTTP.Size != int64(len(a.files["root"])) {
		t.Errorf("document: %+v", doc.Lower)
	}
	for _, f := range []*fix{a, b} {
		if r, _ := f.doc(path, addr); r.StatusCode != http.StatusNotFound {
			t.Errorf("the token worked twice: %d", r.StatusCode)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "data", state.FileName)); err == nil {
			t.Errorf("a SQLite store beside the PostgreSQL one in %s", f.dir)
		}
		if !strings.Contains(f.logs.String(), "state store open") || !strings.Contains(f.logs.String(), "dbname=") {
			t.Errorf("the log does not say which store:\n%s", f.logs.String())
		}
	}
	// The boot A started with the script, B carried to its document.
	if bs, err := a.s.db.Boots(ctx, mac, 10); err != nil || len(bs) != 1 || bs[0].Phase != "document" || bs[0].Outcome != "ok" {
		t.Errorf("boots seen at A: %+v %v", bs, err)
	}
}
