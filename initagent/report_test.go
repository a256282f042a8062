package initagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
)

func running(p Phase) boot.PhaseReport {
	return boot.PhaseReport{Phase: string(p), Outcome: boot.OutcomeRunning}
}

func TestReportQueue(t *testing.T) {
	type op struct {
		do   string   // "add PHASE", "net", "decide URL" ("decide" alone: no reports)
		want []string // the phases released by this op
	}
	tests := []struct {
		name      string
		ops       []op
		wantURL   string
		wantStuck int
	}{
		{"static: wait for the network, then in order", []op{
			{"decide http://s/r/t", nil},
			{"add early", nil},
			{"add modules", nil},
			{"net", []string{"early", "modules"}},
			{"add lower", []string{"lower"}},
		}, "http://s/r/t", 0},
		{"document: wait for the document after the network", []op{
			{"add network", nil},
			{"net", nil},
			{"add document", nil},
			{"decide http://s/r/doc", []string{"network", "document"}},
			{"add lower", []string{"lower"}},
		}, "http://s/r/doc", 0},
		{"first decision holds", []op{
			{"net", nil},
			{"decide http://s/r/doc", nil},
			{"decide http://s/r/cmdline", nil},
			{"add lower", []string{"lower"}},
		}, "http://s/r/doc", 0},
		{"no destination: nothing kept", []op{
			{"add early", nil},
			{"decide", nil},
			{"net", nil},
			{"add lower", nil},
			{"decide http://s/r/late", nil},
		}, "", 0},
		{"network never up", []op{
			{"decide http://s/r/t", nil},
			{"add early", nil},
			{"add network", nil},
		}, "http://s/r/t", 2},
		{"nothing decided", []op{
			{"net", nil},
			{"add early", nil},
		}, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q reportQueue
			for _, o := range tt.ops {
				verb, arg, _ := strings.Cut(o.do, " ")
				var out []boot.PhaseReport
				switch verb {
				case "add":
					out = q.add(running(Phase(arg)))
				case "net":
					out = q.networkUp()
				case "decide":
					out = q.decide(arg)
				default:
					t.Fatalf("bad op %q", o.do)
				}
				var got []string
				for _, r := range out {
					got = append(got, r.Phase)
				}
				if diff := cmp.Diff(o.want, got); diff != "" {
					t.Fatalf("%s released (-want +got):\n%s", o.do, diff)
				}
			}
			if q.url != tt.wantURL || q.stuck() != tt.wantStuck {
				t.Errorf("destination %q with %d waiting, want %q with %d", q.url, q.stuck(), tt.wantURL, tt.wantStuck)
			}
		})
	}
}

// fakeReports records what it is asked to send and fails with err.
type fakeReports struct {
	mu    sync.Mutex
	urls  []string
	sent  []boot.PhaseReport
	err   error
	block bool // wait for the context to end, then fail
}

func (f *fakeReports) Send(ctx context.Context, url string, r boot.PhaseReport) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("fake: the agent built an invalid report: %w", err)
	}
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.urls = append(f.urls, url)
	f.sent = append(f.sent, r)
	return f.err
}

// lines renders the reports as "phase outcome: message".
func (f *fakeReports) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return reportLines(f.sent)
}

func reportLines(reps []boot.PhaseReport) []string {
	var out []string
	for _, r := range reps {
		l := r.Phase + " " + r.Outcome
		if r.Message != "" {
			l += ": " + r.Message
		}
		out = append(out, l)
	}
	return out
}

// checkTimes checks what the lines leave out: uptimes never go back, a
// phase's seconds are the time from its running report to its end.
func checkTimes(t *testing.T, reps []boot.PhaseReport) {
	t.Helper()
	var last float64
	startedAt := map[string]float64{}
	for _, r := range reps {
		if r.Uptime < last {
			t.Errorf("%s %s at uptime %v, after %v", r.Phase, r.Outcome, r.Uptime, last)
		}
		last = r.Uptime
		switch r.Outcome {
		case boot.OutcomeRunning:
			startedAt[r.Phase] = r.Uptime
		default:
			if want := r.Uptime - startedAt[r.Phase]; diff(r.Seconds, want) > 1e-9 || r.Seconds <= 0 {
				t.Errorf("%s %s took %vs, want %vs", r.Phase, r.Outcome, r.Seconds, want)
			}
		}
	}
}

func diff(a, b float64) float64 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestReporterScrubsSecrets(t *testing.T) {
	var console bytes.Buffer
	f := &fakeReports{}
	r := newReporter(context.Background(), f, func(format string, args ...any) { fmt.Fprintf(&console, format+"\n", args...) })
	docURL := "http://10.0.2.100:8080/doc/doc-token-0123456789"
	r.hideURL(docURL)
	r.hideURL("http://user:hunter2@10.0.2.100:8080/report/report-token-abcdef?k=query-secret-1")
	r.hideDocument(boot.Document{Upper: boot.Upper{ISCSI: &boot.ISCSISource{CHAP: &boot.CHAP{User: "m1", Secret: "chap-secret", TargetSecret: "tgt"}}}})
	r.networkUp()
	r.decide("http://10.0.2.100:8080/report/report-token-abcdef")
	for _, msg := range []string{
		`boot document http://10.0.2.100:8080/doc/...: no answer: Get "` + docURL + `": connection refused`,
		"token doc-token-0123456789 alone\nsecond line with report-token-abcdef",
		"login as m1 with chap-secret or tgt failed; password hunter2; query-secret-1",
		"a short path element stays: doc",
	} {
		r.event(boot.PhaseReport{Phase: boot.PhaseDocument, Outcome: boot.OutcomeFailed, Message: msg})
	}
	r.flush()
	want := []string{
		`document failed: boot document http://10.0.2.100:8080/doc/...: no answer: Get "http://10.0.2.100:8080/doc/...": connection refused`,
		"document failed: token ... alone; second line with ...",
		"document failed: login as m1 with (redacted) or (redacted) failed; password (redacted); ...",
		"document failed: a short path element stays: doc",
	}
	if diff := cmp.Diff(want, f.lines()); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if got, want := console.String(), "overboot: phase reports go to http://10.0.2.100:8080/report/...\n"; got != want {
		t.Errorf("console = %q, want %q", got, want)
	}
	for _, u := range f.urls {
		if u != "http://10.0.2.100:8080/report/report-token-abcdef" {
			t.Errorf("sent to %q", u)
		}
	}
}

// TestReporterWarnsOnce: a server that refuses every report costs one
// console line, and the boot goes on.
func TestReporterWarnsOnce(t *testing.T) {
	var console bytes.Buffer
	f := &fakeReports{err: errors.New(`HTTP 500 Internal Server Error at http://s/report/tok-0123456789`)}
	r := newReporter(context.Background(), f, func(format string, args ...any) { fmt.Fprintf(&console, format+"\n", args...) })
	r.decide("http://s/report/tok-0123456789")
	r.networkUp()
	for _, p := range boot.Phases {
		r.event(boot.PhaseReport{Phase: p, Outcome: boot.OutcomeRunning})
		r.event(boot.PhaseReport{Phase: p, Outcome: boot.OutcomeOK})
	}
	r.flush()
	r.end("")
	r.close()
	want := "overboot: phase reports go to http://s/report/...\n" +
		"overboot: warning: a phase report to http://s/report/... was not sent: HTTP 500 Internal Server Error at http://s/report/...; the boot goes on (no further report warnings)\n"
	if got := console.String(); got != want {
		t.Errorf("console:\n%s\nwant:\n%s", got, want)
	}
	if n := len(f.lines()); n != 2*len(boot.Phases) {
		t.Errorf("%d reports tried, want one attempt for each of %d", n, 2*len(boot.Phases))
	}
}

// TestReporterFlushIsBounded: a server that never answers delays the end
// of the boot by the timeout, once.
func TestReporterFlushIsBounded(t *testing.T) {
	var console bytes.Buffer
	r := newReporter(context.Background(), &fakeReports{block: true}, func(format string, args ...any) { fmt.Fprintf(&console, format+"\n", args...) })
	r.timeout = 100 * time.Millisecond
	r.decide("http://s/report/tok")
	r.networkUp()
	for _, p := range boot.Phases {
		r.event(boot.PhaseReport{Phase: p, Outcome: boot.OutcomeRunning})
	}
	start := time.Now()
	r.flush()
	if took := time.Since(start); took > time.Second {
		t.Errorf("flush took %v with a timeout of %v", took, r.timeout)
	}
	r.close()
	lines := strings.Split(strings.TrimSpace(console.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "warning:") || !strings.Contains(lines[1], "not sent") {
		t.Errorf("console:\n%s\nwant the destination and one warning", console.String())
	}
}

// TestReporterNil: with no sender newReporter gives no reporter (nil),
// and every method of a nil *reporter does nothing: no panic, nothing on
// the console. The same calls on a reporter with a sender do print and
// send, so the silence is the nil reporter's.
func TestReporterNil(t *testing.T) {
	use := func(r *reporter) {
		r.hideURL("http://s/r/tok-0123456789")
		r.hideImageURL("http://u:pw@s/img?sig=0123456789")
		r.hideDocument(boot.Document{Upper: boot.Upper{ISCSI: &boot.ISCSISource{CHAP: &boot.CHAP{User: "m1", Secret: "chap-secret"}}}})
		r.decide("http://s/r/tok-0123456789")
		r.networkUp()
		r.event(running(PhaseEarly))
		r.flush()
		r.end("http://s/r/other")
		r.close()
	}
	var console []string
	printf := func(format string, args ...any) { console = append(console, fmt.Sprintf(format, args...)) }

	r := newReporter(context.Background(), nil, printf)
	if r != nil {
		t.Fatalf("newReporter with no sender = %+v, want nil", r)
	}
	use(r)
	if len(console) != 0 {
		t.Errorf("a nil reporter printed %q", console)
	}

	send := &fakeReports{err: errors.New("refused")}
	use(newReporter(context.Background(), send, printf))
	if got := send.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "early running") {
		t.Errorf("with a sender: sent %q, want the early phase's report", got)
	}
	if len(console) != 2 || !strings.Contains(console[0], "phase reports go to") || !strings.Contains(console[1], "warning:") {
		t.Errorf("with a sender: console %q, want the destination and a warning", console)
	}
}

// reportServer is the server side of the contract: POST, one JSON
// PhaseReport, answered with status code.
type reportServer struct {
	mu      sync.Mutex
	got     []boot.PhaseReport
	paths   []string
	code    int
	problem []string
}

func (s *reportServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost {
		s.problem = append(s.problem, "method "+r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.problem = append(s.problem, "Content-Type "+ct)
	}
	rep, err := boot.ParsePhaseReport(r.Body)
	if err != nil {
		s.problem = append(s.problem, err.Error())
	}
	s.got = append(s.got, rep)
	s.paths = append(s.paths, r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/moved/") {
		http.Redirect(w, r, "/report/tok", http.StatusFound)
		return
	}
	w.WriteHeader(s.code)
}

func TestHTTPReports(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		path    string
		wantErr string
	}{
		{"204", http.StatusNoContent, "/report/tok-0123456789", ""},
		{"200", http.StatusOK, "/report/tok-0123456789", ""},
		{"202", http.StatusAccepted, "/report/tok-0123456789", ""},
		{"unknown token", http.StatusNotFound, "/report/tok-0123456789", "HTTP 404 Not Found"},
		{"server error", http.StatusInternalServerError, "/report/tok-0123456789", "HTTP 500"},
		{"redirect not followed", http.StatusNoContent, "/moved/tok-0123456789", "HTTP 302 Found"},
	}
	rep := boot.PhaseReport{Phase: boot.PhaseLower, Outcome: boot.OutcomeOK, Seconds: 1.5, Uptime: 3.25, Message: "96.0 MiB in 1.2s"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &reportServer{code: tt.code}
			srv := httptest.NewServer(s)
			defer srv.Close()
			err := HTTPReports{}.Send(context.Background(), srv.URL+tt.path, rep)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Send = %v, want error %q", err, tt.wantErr)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.problem) > 0 || len(s.got) != 1 || s.got[0] != rep || s.paths[0] != tt.path {
				t.Errorf("server got %+v at %v, problems %q", s.got, s.paths, s.problem)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/report/tok-0123456789"
		srv.Close()
		err := HTTPReports{}.Send(context.Background(), url, rep)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "tok-0123456789") {
			t.Errorf("Send = %v, want connection refused without the token", err)
		}
	})
	t.Run("invalid report", func(t *testing.T) {
		if err := (HTTPReports{}).Send(context.Background(), "http://127.0.0.1:1/r", boot.PhaseReport{Phase: "boot"}); err == nil {
			t.Errorf("an invalid report was sent")
		}
	})
}

// TestBootReportsOverHTTP: the agent and an httptest server speaking the
// contract, for a boot that works and one that fails in the lower phase.
func TestBootReportsOverHTTP(t *testing.T) {
	static := "overboot.lower=http://10.0.2.100/img overboot.digest=" + string(digest)
	early := []string{"early running", "early ok", "modules running", "modules ok", "network running", "network ok: eth0 10.0.2.15/24"}
	tests := []struct {
		name    string
		failOn  string
		code    int
		want    []string
		wantErr bool
		warning string
	}{
		{"boot", "", http.StatusNoContent,
			append(slices.Clone(early), "lower running", "lower ok", "upper running", "upper ok", "overlay running", "overlay ok", "switch_root running"), false, ""},
		{"lower fails", "fetch http", http.StatusNoContent,
			append(slices.Clone(early), "lower running", "lower failed: injected failure"), true, ""},
		{"server refuses", "", http.StatusForbidden,
			append(slices.Clone(early), "lower running", "lower ok", "upper running", "upper ok", "overlay running", "overlay ok", "switch_root running"), false,
			"overboot: warning: a phase report to http://127.0.0.1:PORT/report/... was not sent: HTTP 403 Forbidden; the boot goes on (no further report warnings)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &reportServer{code: tt.code}
			srv := httptest.NewServer(s)
			defer srv.Close()
			var console bytes.Buffer
			a := &Agent{Exec: &fakeExec{failOn: tt.failOn}, Console: &console, Uptime: tick(), Reports: HTTPReports{}}
			err := a.Boot(context.Background(), static+" overboot.report="+srv.URL+"/report/tok-0123456789")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Boot = %v", err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if diff := cmp.Diff(tt.want, reportLines(s.got)); diff != "" {
				t.Errorf("the server got (-want +got):\n%s", diff)
			}
			checkTimes(t, s.got)
			if len(s.problem) > 0 {
				t.Errorf("the server had problems: %q", s.problem)
			}
			for _, p := range s.paths {
				if p != "/report/tok-0123456789" {
					t.Errorf("report POSTed to %s", p)
				}
			}
			out := strings.ReplaceAll(console.String(), strings.TrimPrefix(srv.URL, "http://127.0.0.1:"), "PORT")
			var warnings []string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "warning") {
					warnings = append(warnings, l)
				}
			}
			if tt.warning == "" && len(warnings) > 0 || tt.warning != "" && !slices.Equal(warnings, []string{tt.warning}) {
				t.Errorf("warnings: %q, want %q", warnings, tt.warning)
			}
			if strings.Contains(out, "tok-0123456789") {
				t.Errorf("the token on the console:\n%s", out)
			}
		})
	}
}
