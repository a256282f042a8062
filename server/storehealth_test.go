package server

import (
	"strings"
	"testing"
)

// TestStoreDown503: while the state store cannot be reached, a request
// that needed it gets 503 with Retry-After (iPXE's bootstrap and the agent
// retry), not 500; the log says so once.
func TestStoreDown503(t *testing.T) {
	f := newFix(t, "")
	if r := f.get("/ipxe?mac=52-54-00-00-00-01"); r.StatusCode != 200 {
		t.Fatalf("store up: %d %s", r.StatusCode, body(t, r))
	}
	f.s.db.Close() // as unreachable as a PostgreSQL server that went away
	f.s.health.at = f.s.health.at.AddDate(0, 0, -1)
	for range 3 {
		r := f.get("/ipxe?mac=52-54-00-00-00-02")
		if r.StatusCode != 503 || r.Header.Get("Retry-After") != "5" {
			t.Fatalf("store down: %d Retry-After %q: %s", r.StatusCode, r.Header.Get("Retry-After"), body(t, r))
		}
	}
	if n := strings.Count(f.logs.String(), "the state store cannot be reached"); n != 1 {
		t.Errorf("logged the outage %d times:\n%s", n, f.logs.String())
	}
}
