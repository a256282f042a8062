package chart

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/overboot/overboot/server/state"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const MiB = 1 << 20

// at is t0 plus ms milliseconds: the store keeps milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func srv(ms int, phase, outcome string, seconds float64, bytes int64, msg string) state.BootEvent {
	return state.BootEvent{At: at(ms), Source: "server", Phase: phase, Outcome: outcome, Seconds: seconds, Bytes: bytes, Message: msg}
}

func agent(ms int, phase, outcome string, seconds float64, msg string) state.BootEvent {
	return state.BootEvent{At: at(ms), Source: "agent", Phase: phase, Outcome: outcome, Seconds: seconds, Message: msg}
}

// fullBoot is a boot that reached its root, as the server records it: its
// own steps, its downloads when they ended, the agent's phases as the
// reports arrived.
func fullBoot() []state.BootEvent {
	return []state.BootEvent{
		srv(0, "script", "ok", 0, 0, "lab"),
		srv(1700, "kernel", "ok", 1.5, 12*MiB, ""),
		srv(3000, "initramfs", "ok", 1.2, 30*MiB, ""),
		agent(4000, "early", "running", 0, ""),
		agent(4500, "early", "ok", 0.48, ""),
		agent(4500, "modules", "running", 0, ""),
		agent(5000, "modules", "ok", 0.5, "virtio_net"),
		agent(5000, "network", "running", 0, ""),
		agent(6250, "network", "ok", 1.2, "eth0 10.0.0.5/24"),
		agent(6300, "document", "running", 0, ""),
		srv(6500, "document", "ok", 0, 0, "profile lab, host n1"),
		agent(6600, "document", "ok", 0.3, ""),
		agent(6600, "lower", "running", 0, ""),
		srv(9000, "root", "ok", 2, 300*MiB, ""),
		agent(9100, "lower", "ok", 2.5, "nfs 10.0.0.1:/srv/images/x"),
		agent(9100, "upper", "running", 0, ""),
		agent(9300, "upper", "ok", 0.2, "tmpfs"),
		agent(9300, "overlay", "running", 0, ""),
		agent(9400, "overlay", "ok", 0.1, ""),
		agent(9500, "switch_root", "running", 0, ""),
	}
}

func fullBootSteps() []Step {
	return []Step{
		{Lane: "server", Name: "script", Start: 0, End: 0, Outcome: "ok", Message: "lab"},
		{Lane: "server", Name: "kernel", Start: 0.2, End: 1.7, Outcome: "ok", Bytes: 12 * MiB},
		{Lane: "server", Name: "initramfs", Start: 1.8, End: 3, Outcome: "ok", Bytes: 30 * MiB},
		// Inferred, and each phase as long as the agent measured it.
		{Lane: "agent", Name: KernelBoot, Start: 3, End: 4.02, Outcome: "ok", Message: "inferred: from the end of the initramfs download to the agent's first phase"},
		{Lane: "agent", Name: "early", Start: 4.02, End: 4.5, Outcome: "ok"},
		{Lane: "agent", Name: "modules", Start: 4.5, End: 5, Outcome: "ok", Message: "virtio_net"},
		{Lane: "agent", Name: "network", Start: 5.05, End: 6.25, Outcome: "ok", Message: "eth0 10.0.0.5/24"},
		{Lane: "agent", Name: "document", Start: 6.3, End: 6.6, Outcome: "ok"},
		{Lane: "server", Name: "document", Start: 6.5, End: 6.5, Outcome: "ok", Message: "profile lab, host n1"},
		{Lane: "agent", Name: "lower", Start: 6.6, End: 9.1, Outcome: "ok", Message: "nfs 10.0.0.1:/srv/images/x"},
		{Lane: "server", Name: "root", Start: 7, End: 9, Outcome: "ok", Bytes: 300 * MiB},
		{Lane: "agent", Name: "upper", Start: 9.1, End: 9.3, Outcome: "ok", Message: "tmpfs"},
		{Lane: "agent", Name: "overlay", Start: 9.3, End: 9.4, Outcome: "ok"},
		{Lane: "agent", Name: "switch_root", Start: 9.5, End: 9.5, Outcome: "ok"},
	}
}

func TestSteps(t *testing.T) {
	full := fullBoot()
	tests := []struct {
		name   string
		events []state.BootEvent
		want   []Step
	}{
		{"empty", nil, nil},
		{"full boot", full, fullBootSteps()},
		{
			// The agent reports the failure with the phase's duration and
			// why; the boot stops there.
			"fails in lower",
			append(slices.Clone(full[:13]),
				srv(7000, "root", "ok", 0.3, 2*MiB, ""),
				agent(8000, "lower", "failed", 1.4, `mount 10.0.0.1:/srv/images/x: permission denied`)),
			append(slices.Clone(fullBootSteps()[:9]),
				Step{Lane: "agent", Name: "lower", Start: 6.6, End: 8, Outcome: "failed", Message: "mount 10.0.0.1:/srv/images/x: permission denied"},
				Step{Lane: "server", Name: "root", Start: 6.7, End: 7, Outcome: "ok", Bytes: 2 * MiB}),
		},
		{
			// The agent fails a phase it never entered: an instant.
			"fails before a phase starts",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, ""),
				agent(3000, "early", "running", 0, ""),
				agent(3200, "early", "ok", 0.2, ""),
				agent(3300, "network", "failed", 0, "no DHCPv4 lease on eth0 after 30s"),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok"},
				{Lane: "agent", Name: "early", Start: 3, End: 3.2, Outcome: "ok"},
				{Lane: "agent", Name: "network", Start: 3.3, End: 3.3, Outcome: "failed", Message: "no DHCPv4 lease on eth0 after 30s"},
			},
		},
		{
			// Lost reports: early's start (its end gives its duration),
			// modules' end (it ended when network's end says network
			// started), network's start.
			"missing reports",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, ""),
				agent(4500, "early", "ok", 0.5, ""),
				agent(4500, "modules", "running", 0, ""),
				agent(6000, "network", "ok", 0.9, "eth0"),
				agent(6100, "document", "running", 0, ""),
				agent(6400, "document", "ok", 0.3, ""),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok"},
				{Lane: "agent", Name: "early", Start: 4, End: 4.5, Outcome: "ok"},
				{Lane: "agent", Name: "modules", Start: 4.5, End: 5.1, Outcome: "ok", Message: NotReported},
				{Lane: "agent", Name: "network", Start: 5.1, End: 6, Outcome: "ok", Message: "eth0"},
				{Lane: "agent", Name: "document", Start: 6.1, End: 6.4, Outcome: "ok"},
			},
		},
		{
			// A download's bar ends when it was recorded; an old record
			// without its duration is an instant; a download cannot have
			// started before the boot did.
			"downloads",
			[]state.BootEvent{
				srv(500, "script", "ok", 0, 0, ""),
				srv(600, "kernel", "ok", 2.5, 8*MiB, ""),
				srv(2500, "initramfs", "ok", 1.25, 20*MiB, ""),
				srv(2600, "root", "ok", 0, 100*MiB, ""),
			},
			[]Step{
				{Lane: "server", Name: "script", Start: 0, End: 0, Outcome: "ok"},
				{Lane: "server", Name: "kernel", Start: 0, End: 0.1, Outcome: "ok", Bytes: 8 * MiB},
				{Lane: "server", Name: "initramfs", Start: 0.75, End: 2, Outcome: "ok", Bytes: 20 * MiB},
				{Lane: "server", Name: "root", Start: 2.1, End: 2.1, Outcome: "ok", Bytes: 100 * MiB},
			},
		},
		{
			// lower started and has not ended: running until the last
			// event, the root's download that ended meanwhile.
			"still running",
			append(slices.Clone(full[:13]), srv(8000, "root", "ok", 1, 64*MiB, "")),
			append(slices.Clone(fullBootSteps()[:9]),
				Step{Lane: "agent", Name: "lower", Start: 6.6, End: 8, Outcome: "running"},
				Step{Lane: "server", Name: "root", Start: 7, End: 8, Outcome: "ok", Bytes: 64 * MiB}),
		},
		{
			// The latest event is a start: running, no length yet.
			"just started a phase",
			full[:6],
			append(slices.Clone(fullBootSteps()[:5]),
				Step{Lane: "agent", Name: "modules", Start: 4.5, End: 4.5, Outcome: "running"}),
		},
		{
			// The reports of the phases before the network wait for it
			// and arrive together: each phase is laid back from the
			// next as long as the agent measured it.
			"reports queued until the network",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, ""),
				srv(3000, "initramfs", "ok", 1, 30*MiB, ""),
				agent(6300, "early", "running", 0, ""),
				agent(6300, "early", "ok", 0.5, ""),
				agent(6300, "modules", "running", 0, ""),
				agent(6300, "modules", "ok", 0.5, ""),
				agent(6300, "network", "running", 0, ""),
				agent(6300, "network", "ok", 1.2, ""),
				agent(6400, "document", "running", 0, ""),
				agent(6700, "document", "ok", 0.3, ""),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok"},
				{Lane: "server", Name: "initramfs", Start: 2, End: 3, Outcome: "ok", Bytes: 30 * MiB},
				{Lane: "agent", Name: KernelBoot, Start: 3, End: 4.1, Outcome: "ok", Message: "inferred: from the end of the initramfs download to the agent's first phase"},
				{Lane: "agent", Name: "early", Start: 4.1, End: 4.6, Outcome: "ok"},
				{Lane: "agent", Name: "modules", Start: 4.6, End: 5.1, Outcome: "ok"},
				{Lane: "agent", Name: "network", Start: 5.1, End: 6.3, Outcome: "ok"},
				{Lane: "agent", Name: "document", Start: 6.4, End: 6.7, Outcome: "ok"},
			},
		},
		{
			// A report sent twice counts once.
			"repeated start",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, ""),
				agent(1000, "early", "running", 0, ""),
				agent(1100, "early", "running", 0, ""),
				agent(1500, "early", "ok", 0.5, ""),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok"},
				{Lane: "agent", Name: "early", Start: 1, End: 1.5, Outcome: "ok"},
			},
		},
		{
			// At the same start the server's step comes first, whatever
			// the order the events were recorded in.
			"same start",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, ""),
				agent(1000, "early", "running", 0, ""),
				srv(1000, "entry", "ok", 0, 0, "linux"),
				agent(1500, "early", "ok", 0.5, ""),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok"},
				{Lane: "server", Name: "entry", Start: 1, End: 1, Outcome: "ok", Message: "linux"},
				{Lane: "agent", Name: "early", Start: 1, End: 1.5, Outcome: "ok"},
			},
		},
		{
			"server failure",
			[]state.BootEvent{
				srv(0, "script", "ok", 0, 0, "lab"),
				srv(2000, "login", "failed", 0, 0, "wrong username or password"),
			},
			[]Step{
				{Lane: "server", Name: "script", Outcome: "ok", Message: "lab"},
				{Lane: "server", Name: "login", Start: 2, End: 2, Outcome: "failed", Message: "wrong username or password"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Steps(tc.events)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("Steps (-want +got):\n%s", diff)
			}
		})
	}
}

// Events stored by several servers may come out of time order: Steps
// orders them by time.
func TestStepsUnordered(t *testing.T) {
	events := fullBoot()
	root := slices.IndexFunc(events, func(e state.BootEvent) bool { return e.Phase == "root" })
	doc := slices.IndexFunc(events, func(e state.BootEvent) bool { return e.Phase == "document" && e.Source == "server" })
	if root < 0 || doc < 0 || events[doc-1].Phase != "document" {
		t.Fatal("fullBoot changed: fix this test")
	}
	var moved []state.BootEvent
	for i, e := range events {
		switch i {
		case root:
		case doc - 1: // the agent's document start, after the server's document
			moved = append(moved, events[doc], e)
		case doc:
		default:
			moved = append(moved, e)
		}
	}
	moved = append(moved, events[root]) // recorded last by another server
	if diff := cmp.Diff(fullBootSteps(), Steps(moved), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Fatalf("Steps of unordered events (-want +got):\n%s", diff)
	}
}
