package console

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/telemetry"
)

func TestStateOf(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		row  telemetry.Row
		want string
	}{
		{telemetry.Row{Enrolment: "pending", Outcome: telemetry.Failed}, StatePending},
		{telemetry.Row{Enrolment: "approved", Phase: "lower", Outcome: telemetry.Failed, UpdatedAt: now}, StateFailed},
		{telemetry.Row{Phase: boot.PhaseSwitchRoot, Outcome: telemetry.Running, UpdatedAt: now.Add(-48 * time.Hour)}, StateUp},
		{telemetry.Row{Phase: "kernel", Outcome: telemetry.OK, UpdatedAt: now.Add(-time.Minute)}, StateBooting},
		{telemetry.Row{Phase: "lower", Outcome: telemetry.Running, UpdatedAt: now.Add(-SilentAfter - time.Second)}, StateOffline},
		{telemetry.Row{Enrolment: "none"}, StateOffline}, // never booted
	} {
		if got := StateOf(c.row, now); got != c.want {
			t.Errorf("%+v: %s, want %s", c.row, got, c.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	f, err := ParseFilter(url.Values{"q": {" lab-1 "}, "state": {"failed"}, "sort": {"-updated"}, "page": {"3"}})
	if err != nil || f.Query != "lab-1" || f.State != "failed" || f.Sort != "-updated" || f.Page != 3 {
		t.Fatalf("%+v %v", f, err)
	}
	for q, want := range map[string]string{
		"state=gone":                    `state "gone": want one of booting, up, failed, pending, offline`,
		"sort=password":                 `sort "password"`,
		"page=0":                        `page "0"`,
		"page=x":                        `page "x"`,
		"color=red":                     `query parameter "color"`,
		"q=a&q=b":                       "q: given 2 times",
		"q=" + strings.Repeat("a", 300): "q: longer than 256 bytes",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseFilter(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
}

// fleetOf makes n machines: every third failed in lower, every fifth
// pending, the rest up, on two profiles and two images.
func fleetOf(n int) []Machine {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var ms []Machine
	for i := range n {
		m := Machine{Row: telemetry.Row{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), Hostname: fmt.Sprintf("node-%04d", i),
			Profile: []string{"lab", "hpc"}[i%2], UpdatedAt: t0.Add(time.Duration(i) * time.Second)}, State: StateUp, ImageLabel: []string{"debian@3", "debian@2"}[i%2]}
		switch {
		case i%5 == 0:
			m.State = StatePending
		case i%3 == 0:
			m.State, m.Phase, m.Error = StateFailed, "lower", "image digest mismatch"
		}
		if i%7 == 0 && m.State == StateFailed {
			m.Error = "no lease"
			m.Phase = "network"
		}
		ms = append(ms, m)
	}
	return ms
}

func TestList(t *testing.T) {
	ms := fleetOf(1000)
	l := List(ms, Filter{})
	if l.Total != 1000 || l.Pages != 20 || l.Page != 1 || len(l.Machines) != PageSize || l.Machines[0].MAC != "52:54:00:00:00:00" {
		t.Fatalf("all: total %d pages %d page %d len %d", l.Total, l.Pages, l.Page, len(l.Machines))
	}
	// Past the last page: the last page.
	if l := List(ms, Filter{Page: 99}); l.Page != 20 || len(l.Machines) != PageSize || l.Machines[PageSize-1].MAC != "52:54:00:00:03:e7" {
		t.Errorf("page 99: %d %d", l.Page, len(l.Machines))
	}
	want := 0
	for _, m := range ms {
		if m.State == StateFailed && m.Profile == "hpc" {
			want++
		}
	}
	l = List(ms, Filter{State: StateFailed, Profile: "hpc"})
	if l.Total != want || want == 0 {
		t.Errorf("failed on hpc: %d, want %d", l.Total, want)
	}
	for _, m := range l.Machines {
		if m.State != StateFailed || m.Profile != "hpc" {
			t.Errorf("%+v matched", m)
		}
	}
	// Search: a host name, a MAC written with dashes, a label.
	if l := List(ms, Filter{Query: "NODE-0042"}); l.Total != 1 || l.Machines[0].Hostname != "node-0042" {
		t.Errorf("host search: %+v", l)
	}
	if l := List(ms, Filter{Query: "52-54-00-00-00-2a"}); l.Total != 1 || l.Machines[0].Hostname != "node-0042" {
		t.Errorf("MAC search: %d", l.Total)
	}
	if l := List(ms, Filter{Image: "debian@2"}); l.Total != 500 {
		t.Errorf("image: %d", l.Total)
	}
	// Sort down by update: the newest first, across pages.
	l = List(ms, Filter{Sort: "-updated", Page: 2})
	if l.Machines[0].Hostname != fmt.Sprintf("node-%04d", 1000-PageSize-1) {
		t.Errorf("sorted down, page 2 starts with %s", l.Machines[0].Hostname)
	}
	if !slices.IsSortedFunc(l.Machines, func(a, b Machine) int { return b.UpdatedAt.Compare(a.UpdatedAt) }) {
		t.Error("not sorted by update, newest first")
	}
	if l := List(ms, Filter{Query: "nothing-like-this"}); l.Total != 0 || l.Pages != 1 || len(l.Machines) != 0 {
		t.Errorf("no match: %+v", l)
	}
}

func TestFailures(t *testing.T) {
	ms := fleetOf(100)
	fs := Failures(ms)
	n := 0
	for _, m := range ms {
		if m.State == StateFailed {
			n++
		}
	}
	total := 0
	for i, f := range fs {
		total += len(f.MACs)
		if i > 0 && len(f.MACs) > len(fs[i-1].MACs) {
			t.Error("not the most machines first")
		}
		if !slices.IsSorted(f.MACs) {
			t.Error("MACs not sorted")
		}
	}
	if len(fs) != 2 || total != n || fs[0].Message != "image digest mismatch" || fs[1].Phase != "network" {
		t.Errorf("%d groups, %d machines of %d: %+v", len(fs), total, n, fs)
	}
}
