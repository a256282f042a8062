package initagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// TestFetchDocumentStoreWait: a server whose state store is down answers
// the document 503 with Retry-After 5 for (here) ten minutes less a
// little: the agent waits as asked without spending its 2 attempts, says
// so on the console at the first wait and then every StoreWaitEvery or
// so (not at every answer), naming the server and never the token, and
// gets its document when the store is back.
func TestFetchDocumentStoreWait(t *testing.T) {
	const busy = 100 // 100 answers of 5 s and more: past 500 s
	good := `{"version":1,"machine":"m1","lower":{"http":{"url":"http://s/i","digest":"` + string(digest) + `"}},"upper":{"tmpfs":{}}}`
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= busy {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "the state store cannot be reached", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(good))
	}))
	defer srv.Close()
	var slept time.Duration
	sleep := func(_ context.Context, d time.Duration) error { slept += d; return nil }
	var lines []string
	progress := func(p Phase, l string) { lines = append(lines, string(p)+": "+l) }
	doc, err := fetchDocument(context.Background(), srv.Client(), FetchDocument{URL: srv.URL + "/doc/tok-0123456789", Attempts: 2}, sleep, progress)
	if err != nil || doc.Machine != "m1" {
		t.Fatalf("fetchDocument = %+v, %v", doc, err)
	}
	if n.Load() != busy+1 {
		t.Errorf("%d requests, want %d", n.Load(), busy+1)
	}
	// One line at the first wait, then one per StoreWaitEvery waited
	// (and the wait that passes it: at most 5 s and its jitter).
	most, least := 1+int(slept/StoreWaitEvery), int(slept/(StoreWaitEvery+7*time.Second))
	if len(lines) < least || len(lines) > most {
		t.Errorf("%d console lines for %v of waits, want %d to %d:\n%s", len(lines), slept, least, most, strings.Join(lines, "\n"))
	}
	want := "document: the server's state store is unavailable: waiting (server " + srv.URL + ", HTTP 503 Service Unavailable, Retry-After 5s; waited "
	for _, l := range lines {
		if !strings.HasPrefix(l, want) || strings.Contains(l, "0123456789") {
			t.Errorf("console line %q, want it to begin %q and show no token", l, want)
		}
	}
}

// TestFetchDocumentStoreWaitBounded: a server that asks to wait for ever
// is waited fetch.DefaultBusy in all, then its answers count as attempts,
// and the boot fails naming what the server answered.
func TestFetchDocumentStoreWaitBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var slept time.Duration
	sleep := func(_ context.Context, d time.Duration) error { slept += d; return nil }
	_, err := fetchDocument(context.Background(), srv.Client(), FetchDocument{URL: srv.URL + "/doc/tok", Attempts: 2}, sleep, func(Phase, string) {})
	if err == nil || !strings.Contains(err.Error(), "no answer after 2 attempts") || !strings.Contains(err.Error(), "Retry-After") {
		t.Fatalf("error %v", err)
	}
	if slept < fetch.DefaultBusy || slept > fetch.DefaultBusy+fetch.DefaultMaxBackoff*2 {
		t.Errorf("waited %v, want %v and one backoff", slept, fetch.DefaultBusy)
	}
}

// TestReportsWaitForBusyServer: phase reports to a server that answers
// 503 with Retry-After are sent again after the wait, in order, none
// lost; the boot does not wait (event returns at once) and the console
// hears why once.
func TestReportsWaitForBusyServer(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		rep, err := boot.ParsePhaseReport(bytes.NewReader(b))
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, rep.Phase+" "+rep.Outcome)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var console bytes.Buffer
	var cmu sync.Mutex
	r := newReporter(context.Background(), HTTPReports{Client: srv.Client()}, func(format string, args ...any) {
		cmu.Lock()
		defer cmu.Unlock()
		fmt.Fprintf(&console, format+"\n", args...)
	})
	r.decide(srv.URL + "/report/tok-0123456789")
	r.networkUp()
	r.event(boot.PhaseReport{Phase: boot.PhaseEarly, Outcome: boot.OutcomeRunning})
	for n.Load() < 2 { // the server asked to wait once at least
		time.Sleep(10 * time.Millisecond)
	}
	var want []string
	want = append(want, boot.PhaseEarly+" "+boot.OutcomeRunning)
	for _, p := range []string{boot.PhaseModules, boot.PhaseNetwork} {
		r.event(boot.PhaseReport{Phase: p, Outcome: boot.OutcomeOK})
		want = append(want, p+" "+boot.OutcomeOK)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == len(want) || time.Now().After(deadline) {
			break
		}
	}
	r.close()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("reports received: %v, want %v", got, want)
	}
	cmu.Lock()
	defer cmu.Unlock()
	c := console.String()
	if k := strings.Count(c, "the server's state store is unavailable: waiting (server "+srv.URL+", HTTP 503"); k != 1 || strings.Contains(c, "0123456789") || strings.Contains(c, "warning") {
		t.Errorf("console:\n%s\nwant one line that the reports wait, no token, no warning", c)
	}
}
