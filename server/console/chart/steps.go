package chart

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/state"
)

// Lanes of a Step: who recorded it.
const (
	LaneServer = "server"
	LaneAgent  = "agent"
)

// Outcomes of a Step.
const (
	OutcomeOK      = boot.OutcomeOK
	OutcomeFailed  = boot.OutcomeFailed
	OutcomeRunning = boot.OutcomeRunning
)

// KernelBoot names the inferred step between the initramfs download and
// the agent's first phase: the kernel's own boot.
const KernelBoot = "kernel boot"

// NotReported is the Message of an agent phase whose end was never
// reported but which ended because the agent went on to a later phase.
const NotReported = "end not reported"

// Step is one bar of a waterfall: a server step or an agent phase.
type Step struct {
	Lane    string  // LaneServer or LaneAgent
	Name    string  // the event's phase: script, kernel, early, lower, ...
	Start   float64 // seconds since the boot's first event
	End     float64 // seconds since the boot's first event; End == Start for an instant
	Outcome string  // OutcomeOK, OutcomeFailed or OutcomeRunning
	Bytes   int64   // downloaded, for a server download
	Message string  // the event's message, from the machine or the server
}

// Instant reports whether s has no duration.
func (s Step) Instant() bool { return s.End <= s.Start }

// Steps turns a boot's events into steps on one time axis, in seconds since
// the earliest event, ordered by Start, then server before agent, then the
// order of the events.
//
// A server event is one step ending at its time: a download (kernel,
// initramfs, root, ...) recorded with its duration in Seconds starts that
// much earlier; every other server event (script, menu, entry, login,
// document, sanboot, attest, and downloads recorded without a duration) is
// an instant.
//
// An agent phase runs from its "running" report to its "ok" or "failed"
// report. Reports can be lost, and the agent runs one phase at a time:
//   - an end without its start runs from its time less its Seconds;
//   - a start whose end never came ended when the agent reported a later
//     phase: it is "ok" (a failure stops the boot) with Message NotReported;
//   - a start with nothing after it from the agent is still "running" and
//     ends at the boot's last event, except switch_root, whose "running"
//     is the agent's last report of a boot that reached its root (the agent
//     has become the image's init): an "ok" instant.
//
// A step never starts before the boot's first event (times are clamped to
// 0: an agent's clock and the server's may disagree by a little). Events
// are taken in time order; events with equal times keep their order. An
// event from a source other than the agent is the server's.
func Steps(events []state.BootEvent) []Step {
	if len(events) == 0 {
		return nil
	}
	evs := slices.Clone(events)
	slices.SortStableFunc(evs, func(a, b state.BootEvent) int { return a.At.Compare(b.At) })
	t0, last := evs[0].At, evs[len(evs)-1].At
	since := func(t time.Time) float64 { return max(0, t.Sub(t0).Seconds()) }

	type stepAt struct {
		Step
		seq     int     // event order, for a stable sort
		seconds float64 // the agent's own measure of a phase, 0 unknown
	}
	var out []stepAt
	open := -1 // index in out of the agent phase started and not yet ended
	closeOpen := func(at float64) {
		if open < 0 {
			return
		}
		s := &out[open]
		s.End = max(s.Start, at)
		s.Outcome = OutcomeOK
		if s.Message == "" {
			s.Message = NotReported
		}
		open = -1
	}
	for i, e := range evs {
		at := since(e.At)
		if e.Source != LaneAgent {
			out = append(out, stepAt{Step{Lane: LaneServer, Name: e.Phase, Start: startOf(at, e.Seconds), End: at, Outcome: outcome(e.Outcome), Bytes: e.Bytes, Message: e.Message}, i, 0})
			continue
		}
		if open >= 0 && out[open].Name == e.Phase {
			if e.Outcome == OutcomeRunning {
				continue // a repeated start
			}
			s := &out[open]
			s.End, s.Outcome, s.Bytes, s.seconds = max(s.Start, at), outcome(e.Outcome), e.Bytes, e.Seconds
			if e.Message != "" {
				s.Message = e.Message
			}
			open = -1
			continue
		}
		start := at
		if e.Outcome != OutcomeRunning {
			start = startOf(at, e.Seconds)
		}
		closeOpen(start)
		s := Step{Lane: LaneAgent, Name: e.Phase, Start: start, End: at, Outcome: outcome(e.Outcome), Bytes: e.Bytes, Message: e.Message}
		if e.Outcome == OutcomeRunning {
			open = len(out)
		}
		sec := 0.0
		if e.Outcome != OutcomeRunning {
			sec = e.Seconds
		}
		out = append(out, stepAt{s, i, sec})
	}
	if open >= 0 {
		s := &out[open]
		if s.Name == boot.PhaseSwitchRoot {
			s.Outcome = OutcomeOK
		} else {
			s.End = max(s.Start, since(last))
		}
	}
	// The agent's reports leave one after the other from a queue, and
	// those of the phases before its network is up wait for it: a
	// report's time at the server is when it arrived, not when its phase
	// ran. The phases ran one after the other, each for the Seconds the
	// agent measured, up to its last report (nothing queued behind it,
	// so the most nearly on time): they are laid back from there.
	cursor := math.Inf(1)
	firstAgent := -1
	for i := len(out) - 1; i >= 0; i-- {
		s := &out[i]
		if s.Lane != LaneAgent {
			continue
		}
		d := s.End - s.Start
		if s.seconds > 0 && !math.IsInf(s.seconds, 0) {
			d = s.seconds
		}
		s.End = min(s.End, cursor)
		s.Start = max(0, s.End-d)
		cursor, firstAgent = s.Start, i
	}
	// Between the initramfs the server sent and the agent's first phase
	// the kernel booted: shown, and said to be inferred.
	if firstAgent >= 0 {
		for i := firstAgent - 1; i >= 0; i-- {
			if out[i].Lane == LaneServer && out[i].Name == "initramfs" && out[i].End < out[firstAgent].Start {
				out = append(out, stepAt{Step: Step{Lane: LaneAgent, Name: KernelBoot, Start: out[i].End, End: out[firstAgent].Start, Outcome: OutcomeOK,
					Message: "inferred: from the end of the initramfs download to the agent's first phase"}, seq: out[firstAgent].seq})
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b stepAt) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(laneOrder(a.Lane), laneOrder(b.Lane)), cmp.Compare(a.seq, b.seq))
	})
	steps := make([]Step, len(out))
	for i, s := range out {
		steps[i] = s.Step
	}
	return steps
}

// startOf is the start of something that ended at end and took seconds.
func startOf(end, seconds float64) float64 {
	if !(seconds > 0) { // also NaN
		return end
	}
	return max(0, end-seconds)
}

// outcome is an event's outcome as a step's; the server records its steps
// "ok" or "failed", and an unknown outcome is shown as recorded.
func outcome(o string) string {
	if o == "" {
		return OutcomeOK
	}
	return o
}

func laneOrder(lane string) int {
	if lane == LaneServer {
		return 0
	}
	return 1
}
