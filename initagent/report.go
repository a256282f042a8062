package initagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// Phase reports: the agent POSTs a boot.PhaseReport to the report URL
// (overboot.report, or the boot document's report, which wins) when a
// phase starts and when it ends. Reporting is best effort: one attempt per
// report, none longer than ReportTimeout, and the boot never waits for the
// server except, at most ReportTimeout, at its end (before switch_root, and
// before the failure policy runs) so that the last reports leave.
//
// The parts: reportQueue decides what may go when (pure); reporter sends
// what the queue releases, in order, from one goroutine, through a
// ReportSender (HTTPReports, or a fake in tests), and keeps secrets out of
// the messages.

// ReportTimeout bounds one report, and the wait at the end of a boot for
// the reports still on their way.
const ReportTimeout = 2 * time.Second

// ReportSender delivers one report to url.
type ReportSender interface {
	Send(ctx context.Context, url string, r boot.PhaseReport) error
}

// HTTPReports sends a report as one POST with the JSON body,
// Content-Type application/json, through the agent's HTTP client (package
// fetch): one attempt, at most ReportTimeout, redirects not followed; any
// 2xx answer is success.
type HTTPReports struct {
	Client *http.Client // nil: fetch.DefaultClient()
}

// Send implements ReportSender. Its errors do not quote the URL, which
// carries a token.
func (h HTTPReports) Send(ctx context.Context, url string, r boot.PhaseReport) error {
	body, err := r.Marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ReportTimeout)
	defer cancel()
	// A 503 with Retry-After comes back as a *fetch.BusyError, which
	// the reporter waits out (reporter.send).
	return fetch.Post(ctx, fetch.WithRetryAfter(h.Client), url, "application/json", body)
}

// reportQueue decides which reports go when. Reports wait until the
// network is up and the destination is decided (in document mode, by the
// document), then leave in the order they were made. A decided empty
// destination turns reports off. It is pure: tests drive it directly.
type reportQueue struct {
	url     string // the destination, once decided
	decided bool
	netUp   bool
	waiting []boot.PhaseReport
}

// add queues r and returns the reports that may go now, oldest first.
func (q *reportQueue) add(r boot.PhaseReport) []boot.PhaseReport {
	if q.off() {
		return nil
	}
	q.waiting = append(q.waiting, r)
	return q.release()
}

// networkUp says reports can travel, and returns those that may go now.
func (q *reportQueue) networkUp() []boot.PhaseReport {
	q.netUp = true
	return q.release()
}

// decide fixes the destination ("" = no reports) and returns the reports
// that may go now. Only the first decision counts.
func (q *reportQueue) decide(url string) []boot.PhaseReport {
	if q.decided {
		return nil
	}
	q.decided, q.url = true, url
	if q.off() {
		q.waiting = nil
	}
	return q.release()
}

func (q *reportQueue) off() bool { return q.decided && q.url == "" }

func (q *reportQueue) release() []boot.PhaseReport {
	if !q.decided || q.off() || !q.netUp {
		return nil
	}
	out := q.waiting
	q.waiting = nil
	return out
}

// stuck returns how many reports wait for a destination or a network
// that never came.
func (q *reportQueue) stuck() int { return len(q.waiting) }

// reporter sends what its reportQueue releases. All methods but run are
// called from the boot's goroutine; a nil *reporter does nothing.
type reporter struct {
	ctx     context.Context
	send    ReportSender
	printf  func(format string, args ...any)
	timeout time.Duration // per report, and for flush

	q      reportQueue
	hidden map[string]string // secret -> what messages show instead
	hide   *strings.Replacer
	where  string // the destination, redacted

	work   chan reportJob // to run; nil until a report goes
	queued int            // reports put on work
	warned bool

	mu       sync.Mutex // guards the sender's results
	handled  int
	firstErr error // the first report that did not go
	// busy is the server's last answer asking to wait (a 503 with
	// Retry-After), nil once a report went; busyWaited is the time
	// the sender has waited on such answers in all.
	busy       *fetch.BusyError
	busyWaited time.Duration

	busyTold time.Time // when the console last heard of busy (the boot's goroutine)
}

type reportJob struct {
	report  boot.PhaseReport
	flushed chan struct{} // set: not a report but a marker, closed when reached
}

// reportBacklog is more than the events of a whole boot: a full work
// queue drops a report rather than wait.
const reportBacklog = 64

// newReporter returns nil (no reports) when send is nil.
func newReporter(ctx context.Context, send ReportSender, printf func(string, ...any)) *reporter {
	if send == nil {
		return nil
	}
	return &reporter{ctx: ctx, send: send, printf: printf, timeout: ReportTimeout, hidden: map[string]string{}}
}

// minTokenLen: a URL's last path element, query or query value this long
// or longer is taken for a token and hidden wherever it shows up in a
// message, even outside the URL; shorter ones ("doc", "x=1") are hidden
// only as part of the whole URL. Passwords and CHAP secrets are hidden
// whatever their length.
const minTokenLen = 8

// hideURL keeps raw, and the token it may carry, out of every message.
func (r *reporter) hideURL(raw string) { r.hideSecretsOf(raw, true) }

// hideImageURL keeps an image URL's secrets (user information and query)
// out of every message; its path names the image and stays
// (fetch.RedactImageURL).
func (r *reporter) hideImageURL(raw string) { r.hideSecretsOf(raw, false) }

// hideSecretsOf hides raw and its secrets: the password and query, and,
// when lastIsToken, the last path element.
func (r *reporter) hideSecretsOf(raw string, lastIsToken bool) {
	if r == nil || raw == "" {
		return
	}
	red := fetch.RedactImageURL(raw)
	if lastIsToken {
		red = fetch.RedactURL(raw)
	}
	r.hidden[raw] = red
	if u, err := url.Parse(raw); err == nil {
		// The forms the HTTP client quotes in its errors.
		r.hidden[u.String()] = red
		r.hidden[u.Redacted()] = red
		for _, p := range []string{u.Path, u.EscapedPath()} {
			if tok := p[strings.LastIndex(p, "/")+1:]; lastIsToken && len(tok) >= minTokenLen {
				r.hidden[tok] = "..."
			}
		}
		if len(u.RawQuery) >= minTokenLen {
			r.hidden[u.RawQuery] = "..."
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				if len(v) >= minTokenLen {
					r.hidden[v] = "..."
				}
			}
		}
		if pw, ok := u.User.Password(); ok && pw != "" {
			r.hidden[pw] = "(redacted)"
		}
	}
	r.hide = nil
}

// hideDocument keeps the document's secrets out of every message.
func (r *reporter) hideDocument(d boot.Document) {
	if r == nil {
		return
	}
	r.hideURL(d.Report)
	if d.Lower.HTTP != nil {
		r.hideImageURL(d.Lower.HTTP.URL)
	}
	for _, s := range []*boot.ISCSISource{d.Lower.ISCSI, d.Upper.ISCSI} {
		if s == nil || s.CHAP == nil {
			continue
		}
		for _, secret := range []string{s.CHAP.Secret, s.CHAP.TargetSecret} {
			if secret != "" {
				r.hidden[secret] = "(redacted)"
			}
		}
	}
	r.hide = nil
}

// scrub returns s with every secret replaced, longest first.
func (r *reporter) scrub(s string) string {
	if r.hide == nil {
		secrets := make([]string, 0, len(r.hidden))
		for k := range r.hidden {
			secrets = append(secrets, k)
		}
		slices.SortFunc(secrets, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
		var pairs []string
		for _, k := range secrets {
			pairs = append(pairs, k, r.hidden[k])
		}
		r.hide = strings.NewReplacer(pairs...)
	}
	return r.hide.Replace(s)
}

// event reports a phase event: sent now if it can be, else queued.
func (r *reporter) event(rep boot.PhaseReport) {
	if r == nil {
		return
	}
	rep.Message = boot.ReportMessage(r.scrub(rep.Message))
	r.dispatch(r.q.add(rep))
	r.tellBusy()
	r.warnSendFailure()
}

// networkUp releases the reports waiting for the network.
func (r *reporter) networkUp() {
	if r == nil {
		return
	}
	r.dispatch(r.q.networkUp())
}

// decide fixes where reports go ("" = nowhere) and says so on the console.
func (r *reporter) decide(url string) {
	if r == nil || r.q.decided {
		return
	}
	r.hideURL(url)
	if url != "" {
		r.where = fetch.RedactURL(url)
		r.printf("%sphase reports go to %s", MarkerPrefix, r.where)
	}
	r.dispatch(r.q.decide(url))
}

func (r *reporter) dispatch(reps []boot.PhaseReport) {
	if len(reps) == 0 {
		return
	}
	if r.work == nil {
		r.work = make(chan reportJob, reportBacklog)
		go r.run(r.work, r.q.url)
	}
	for _, rep := range reps {
		select {
		case r.work <- reportJob{report: rep}:
			r.queued++
		default:
			r.result(fmt.Errorf("more than %d reports waiting", reportBacklog))
		}
	}
}

// run sends the reports in order, one attempt each.
func (r *reporter) run(work <-chan reportJob, url string) {
	for j := range work {
		if j.flushed != nil {
			close(j.flushed)
			continue
		}
		err := r.sendOne(url, j.report)
		r.mu.Lock()
		r.handled++
		r.mu.Unlock()
		if err != nil {
			r.result(err)
		}
	}
}

// sendOne sends one report. A server that asks to wait (a
// *fetch.BusyError: 503 with Retry-After, which an overboot server
// answers while its state store is down) is alive: the report is sent
// again after the wait it asked for, the reports behind it wait too, and
// the boot does not. The waits of a boot are bounded by fetch.DefaultBusy
// in all; then, or when the boot's context ends, the report is dropped.
func (r *reporter) sendOne(url string, rep boot.PhaseReport) error {
	for {
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		err := r.send.Send(ctx, url, rep)
		cancel()
		var be *fetch.BusyError
		r.mu.Lock()
		if err == nil {
			r.busy = nil
		}
		busy := errors.As(err, &be) && r.busyWaited < fetch.DefaultBusy
		var wait time.Duration
		if busy {
			wait = min(be.Wait, fetch.DefaultBusy-r.busyWaited)
			r.busy, r.busyWaited = be, r.busyWaited+wait
		}
		r.mu.Unlock()
		if !busy {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// tellBusy says on the console, at most every StoreWaitEvery, that the
// reports wait for a server that asked to (sendOne).
func (r *reporter) tellBusy() {
	r.mu.Lock()
	be, waited := r.busy, r.busyWaited
	r.mu.Unlock()
	if be == nil || (!r.busyTold.IsZero() && time.Since(r.busyTold) < StoreWaitEvery) {
		return
	}
	r.busyTold = time.Now()
	r.printf("%sthe server's state store is unavailable: waiting (server %s, %s; waited %v of at most %v): the phase reports wait for it, the boot goes on",
		MarkerPrefix, serverOf(r.q.url), be, waited.Round(time.Second), fetch.DefaultBusy)
}

func (r *reporter) result(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// warnf prints the boot's one line about reports that did not go.
func (r *reporter) warnf(format string, args ...any) {
	if r.warned {
		return
	}
	r.warned = true
	r.printf("%swarning: %s; the boot goes on (no further report warnings)", MarkerPrefix, r.scrub(fmt.Sprintf(format, args...)))
}

func (r *reporter) warnSendFailure() {
	r.mu.Lock()
	err := r.firstErr
	r.mu.Unlock()
	if err != nil {
		r.warnf("a phase report to %s was not sent: %v", r.where, err)
	}
}

// flush waits until the reports released so far have been handled, at
// most r.timeout, and warns about those that did not go.
func (r *reporter) flush() {
	if r == nil {
		return
	}
	if r.work != nil {
		done := make(chan struct{})
		select {
		case r.work <- reportJob{flushed: done}:
			t := time.NewTimer(r.timeout)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
		default: // the backlog is full: its reports were counted as failed
		}
	}
	r.tellBusy()
	r.warnSendFailure()
	r.mu.Lock()
	late := r.queued - r.handled
	r.mu.Unlock()
	if late > 0 {
		r.warnf("%d phase reports to %s not sent within %v", late, r.where, r.timeout)
	}
}

// end finishes a failed boot's reports before the failure policy runs: the
// command line's destination applies when the document did not decide one,
// what can go goes (waiting at most r.timeout), and reports that waited for
// a network that never came up are dropped with a warning.
func (r *reporter) end(fallbackURL string) {
	if r == nil {
		return
	}
	r.decide(fallbackURL)
	r.flush()
	if n := r.q.stuck(); n > 0 {
		r.warnf("%d phase reports to %s not sent: the network is not up", n, r.where)
	}
}

// close stops the sender once it has handled what it has.
func (r *reporter) close() {
	if r != nil && r.work != nil {
		close(r.work)
		r.work = nil
	}
}
