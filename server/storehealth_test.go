package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestStoreDown503: while the state store cannot be reached, a request
// that needed it gets 503 with Retry-After (the agent and HTTP clients
// retry), not 500; a machine's script request gets a script that says
// why on its console, waits and asks again (iPXE shows no 503's body).
// The log says so once.
func TestStoreDown503(t *testing.T) {
	f := newFix(t, "")
	if r := f.get("/ipxe?mac=52-54-00-00-00-01"); r.StatusCode != 200 {
		t.Fatalf("store up: %d %s", r.StatusCode, body(t, r))
	}
	f.s.db.Close() // as unreachable as a PostgreSQL server that went away
	f.s.health.at = f.s.health.at.AddDate(0, 0, -1)
	tok := strings.Repeat("ab", 32)
	for range 3 {
		r := f.get("/ipxe?mac=52-54-00-00-00-02")
		b := body(t, r)
		if r.StatusCode != 200 || !strings.Contains(b, "echo overboot: "+StoreWaitMessage+" (server http://10.0.2.100)") ||
			!strings.Contains(b, "sleep 5 ||") || !strings.Contains(b, "chain --autofree http://10.0.2.100/ipxe?mac=${net0/mac:hexhyp}") {
			t.Fatalf("store down, a script: %d:\n%s", r.StatusCode, b)
		}
		for what, r := range map[string]*http.Response{"document": f.get("/doc/" + tok), "report": f.do(http.MethodPost, "/report/"+tok, "", strings.NewReader(`{}`))} {
			if r.StatusCode != 503 || r.Header.Get("Retry-After") != "5" {
				t.Fatalf("store down, a %s: %d Retry-After %q: %s", what, r.StatusCode, r.Header.Get("Retry-After"), body(t, r))
			}
		}
	}
	if n := strings.Count(f.logs.String(), "the state store cannot be reached"); n != 1 {
		t.Errorf("logged the outage %d times:\n%s", n, f.logs.String())
	}
}
