package initagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
)

// Executor performs the plan's steps. The real one makes syscalls
// (exec_linux.go); tests use a fake that records steps and injects failures.
type Executor interface {
	// Do performs one step.
	Do(ctx context.Context, s Step) (Result, error)
}

// Result is what a step leaves for the agent.
type Result struct {
	// Note is a short line for the console and the phase report, such as
	// "eth0 10.0.2.15/24 via 10.0.2.2".
	Note string
	// Document is FetchDocument's or Attest's: fetched (or opened),
	// parsed and validated. The rest of the plan follows from it (Plan).
	Document *boot.Document
}

// Console markers: vmtest and people watching a serial console look for these.
const (
	MarkerPrefix   = "overboot: "
	MarkerFailed   = "overboot: BOOT FAILED"
	MarkerSwitch   = "overboot: switching root"
	MarkerTiming   = "overboot: timing:"
	MarkerStarting = "overboot: agent starting"
)

// Agent runs a boot.
type Agent struct {
	Exec    Executor
	Console io.Writer
	// Uptime returns the time since the kernel started, for console stamps
	// that line up with the kernel's own.
	Uptime func() time.Duration
	// Reports sends the phase reports to the report URL (report.go);
	// nil sends none.
	Reports ReportSender
}

// PhaseError is a failed boot: the phase, the step and why.
type PhaseError struct {
	Phase Phase
	Step  Step // nil when the failure is not one step's (e.g. a bad command line)
	Err   error
}

func (e *PhaseError) Error() string {
	return fmt.Sprintf("%s: %v", e.Phase, e.Err)
}

func (e *PhaseError) Unwrap() error { return e.Err }

// ErrCmdline wraps kernel command-line problems.
var ErrCmdline = errors.New("kernel command line")

// Boot parses the command line, runs the plan and hands over to the image's
// init. It returns only on failure (on success the process becomes init),
// or, with the fake executors of tests, after the SwitchRoot step. A failure
// has been reported to the report URL, if any, when Boot returns.
func (a *Agent) Boot(ctx context.Context, cmdline string) error {
	start := a.uptime()
	a.printf("%s (kernel uptime %.3fs)", MarkerStarting, start.Seconds())
	p, err := boot.Parse(cmdline)
	if err != nil {
		return &PhaseError{Phase: PhaseEarly, Err: fmt.Errorf("%w: %v", ErrCmdline, err)}
	}
	rep := newReporter(ctx, a.Reports, a.printf)
	defer rep.close()
	rep.hideURL(p.Doc)
	rep.hideURL(p.Attest)
	rep.hideURL(p.Login)
	rep.hideURL(p.Report)
	rep.hideImageURL(p.Lower)
	timings := &phaseTimer{a: a, rep: rep}
	err = a.boot(ctx, p, timings)
	if err != nil {
		var pe *PhaseError
		if errors.As(err, &pe) {
			timings.fail(pe.Phase, pe.Err)
		}
		rep.end(p.Report)
	}
	return err
}

func (a *Agent) boot(ctx context.Context, p boot.Params, timings *phaseTimer) error {
	if p.Doc == "" && p.Attest == "" && p.Login == "" {
		// The destination is known; reports wait for the network.
		timings.rep.decide(p.ReportURL(p.Document()))
	}
	steps, err := Plan(p, nil)
	if err != nil {
		return &PhaseError{Phase: PhaseDocument, Err: err}
	}
	for i := 0; i < len(steps); i++ {
		res, err := a.run(ctx, steps[i], timings)
		if err != nil {
			return err
		}
		if res.Document == nil {
			continue
		}
		// The document plans the rest: the whole plan, whose first
		// steps are those that ran.
		doc := *res.Document
		timings.rep.hideDocument(doc)
		timings.rep.decide(p.ReportURL(doc))
		timings.note(PhaseDocument, "machine "+cmp.Or(doc.Machine, "(unnamed)"))
		if steps, err = Plan(p, &doc); err != nil {
			return &PhaseError{Phase: PhaseDocument, Err: err}
		}
	}
	return nil
}

// run performs one step. Before SwitchRoot, which does not return when it
// works, it prints the timing summary and lets the reports so far leave.
func (a *Agent) run(ctx context.Context, s Step, t *phaseTimer) (Result, error) {
	if sw, ok := s.(SwitchRoot); ok {
		t.finish()
		a.printf("%s %s (%.3fs since kernel start)", MarkerTiming, t.summary(), a.uptime().Seconds())
		t.enter(s.Phase())
		t.rep.flush()
		a.printf("%s to %s", MarkerSwitch, strings.TrimPrefix(sw.String(), "switch_root "))
	}
	t.enter(s.Phase())
	res, err := a.Exec.Do(ctx, s)
	if err != nil {
		return res, &PhaseError{Phase: s.Phase(), Step: s, Err: err}
	}
	if _, ok := s.(Network); ok {
		t.rep.networkUp()
	}
	if res.Note != "" {
		t.note(s.Phase(), res.Note)
	}
	return res, nil
}

func (a *Agent) uptime() time.Duration {
	if a.Uptime == nil {
		return 0
	}
	return a.Uptime()
}

func (a *Agent) printf(format string, args ...any) {
	if a.Console == nil {
		return
	}
	fmt.Fprintf(a.Console, format+"\n", args...)
}

// Progressf prints a progress line stamped with the uptime, e.g. for downloads.
func (a *Agent) Progressf(phase Phase, format string, args ...any) {
	a.printf("overboot: [%8.3f] %s: %s", a.uptime().Seconds(), phase, fmt.Sprintf(format, args...))
}

// phaseTimer prints a line when a phase ends, keeps each phase's duration
// and reports each phase's start and end.
type phaseTimer struct {
	a       *Agent
	rep     *reporter // nil: no reports
	cur     Phase
	started time.Duration
	notes   []string
	done    []phaseTime
}

type phaseTime struct {
	phase Phase
	took  time.Duration
}

func (t *phaseTimer) enter(p Phase) {
	if p == t.cur {
		return
	}
	t.finish()
	t.cur, t.started, t.notes = p, t.a.uptime(), nil
	t.rep.event(boot.PhaseReport{Phase: string(p), Outcome: boot.OutcomeRunning, Uptime: t.started.Seconds()})
}

func (t *phaseTimer) note(p Phase, n string) {
	t.enter(p)
	t.notes = append(t.notes, n)
}

func (t *phaseTimer) finish() {
	if t.cur == "" {
		return
	}
	now := t.a.uptime()
	took := now - t.started
	t.done = append(t.done, phaseTime{t.cur, took})
	note := strings.Join(t.notes, "; ")
	line := fmt.Sprintf("%s ok in %.3fs", t.cur, took.Seconds())
	if note != "" {
		line += ": " + note
	}
	t.a.Progressf(t.cur, "%s", strings.TrimPrefix(line, string(t.cur)+" "))
	t.rep.event(boot.PhaseReport{Phase: string(t.cur), Outcome: boot.OutcomeOK, Seconds: took.Seconds(), Uptime: now.Seconds(), Message: note})
	t.cur = ""
}

// fail reports phase p failed with err; the console message is Decide's.
// A phase still open that is not p ended well before p failed.
func (t *phaseTimer) fail(p Phase, err error) {
	if t.cur != p {
		t.finish()
	}
	now := t.a.uptime()
	var took time.Duration
	if p == t.cur {
		took = now - t.started
	}
	t.rep.event(boot.PhaseReport{Phase: string(p), Outcome: boot.OutcomeFailed, Seconds: took.Seconds(), Uptime: now.Seconds(), Message: err.Error()})
	t.cur = ""
}

func (t *phaseTimer) summary() string {
	var parts []string
	var total time.Duration
	for _, d := range t.done {
		parts = append(parts, fmt.Sprintf("%s=%.3fs", d.phase, d.took.Seconds()))
		total += d.took
	}
	parts = append(parts, fmt.Sprintf("agent=%.3fs", total.Seconds()))
	return strings.Join(parts, " ")
}
