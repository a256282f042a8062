package target

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/testneed"
)

// fakeClock is a clock the test moves; safe for concurrent use (the
// server reads it while the test advances it).
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRefusalLog: one line per address per Interval, Burst lines in all
// per Interval, and each line counts the refusals it stands for.
func TestRefusalLog(t *testing.T) {
	type step struct {
		after  time.Duration // the clock moves this much first
		addr   string
		log    bool
		n      int // when log: refusals from addr the line stands for
		others int // when log: refusals from forgotten addresses
	}
	for _, tc := range []struct {
		name     string
		burst    int
		maxAddrs int
		steps    []step
	}{
		{"one line per address per interval", 10, 10, []step{
			{0, "a", true, 1, 0},
			{time.Second, "a", false, 0, 0},
			{time.Second, "a", false, 0, 0},
			{7*time.Second + 999*time.Millisecond, "a", false, 0, 0},
			{time.Millisecond, "a", true, 4, 0}, // 10s after its line
			{time.Second, "a", false, 0, 0},
			{time.Hour, "a", true, 2, 0},
		}},
		{"addresses apart", 10, 10, []step{
			{0, "a", true, 1, 0},
			{0, "b", true, 1, 0},
			{time.Second, "a", false, 0, 0},
			{0, "c", true, 1, 0},
			{0, "b", false, 0, 0},
		}},
		{"burst in all", 2, 10, []step{
			{0, "a", true, 1, 0},
			{0, "b", true, 1, 0},
			{0, "c", false, 0, 0}, // over the burst
			{5 * time.Second, "c", false, 0, 0},
			{0, "d", false, 0, 0},
			// A new window: c's line reports its own refusals and
			// d's (forgotten: no line within an Interval).
			{5 * time.Second, "c", true, 3, 1},
			{0, "e", true, 1, 0},
			{0, "a", false, 0, 0}, // over the burst again
		}},
		{"addresses over the map's cap", 10, 3, []step{
			{0, "a", true, 1, 0},
			{0, "b", true, 1, 0},
			{0, "c", true, 1, 0},
			{0, "d", false, 0, 0}, // not remembered: counted apart
			{0, "e", false, 0, 0},
			{time.Second, "a", false, 0, 0},
			{9 * time.Second, "f", true, 1, 3}, // a, b, c forgotten: d, e and a's second
			{0, "d", true, 1, 0},
		}},
		{"clock set back", 10, 10, []step{
			{0, "a", true, 1, 0},
			{time.Second, "a", false, 0, 0},
			{-time.Hour, "a", true, 2, 0},
			{time.Second, "a", false, 0, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			r := refusalLog{Now: clock.Now, Interval: 10 * time.Second, Burst: tc.burst, MaxAddrs: tc.maxAddrs}
			for i, st := range tc.steps {
				clock.Advance(st.after)
				log, n, others := r.refuse(st.addr)
				if log != st.log || n != st.n || others != st.others {
					t.Errorf("step %d (%s after %v): log=%v refused=%d others=%d, want log=%v refused=%d others=%d", i, st.addr, st.after, log, n, others, st.log, st.n, st.others)
				}
			}
		})
	}
}

// TestRefusalLogDefaults: the zero value rate-limits with the defaults
// and the real clock.
func TestRefusalLogDefaults(t *testing.T) {
	var r refusalLog
	lines := 0
	for i := range 1000 {
		if log, _, _ := r.refuse(fmt.Sprintf("192.0.2.%d", i%100)); log {
			lines++
		}
	}
	// Within 10s of the first refusal: one window, or two on a machine
	// that took 10s for this loop.
	if lines < defaultRefusalBurst || lines > 2*defaultRefusalBurst {
		t.Errorf("%d lines for 1000 refusals from 100 addresses, want %d", lines, defaultRefusalBurst)
	}
	if len(r.addrs) > defaultRefusalAddrs {
		t.Errorf("%d addresses remembered", len(r.addrs))
	}
}

// TestRefusalLogRandom: over random refusals, lines keep the bounds, the
// map its cap, and every refusal is in exactly one line or still waits
// for the next.
func TestRefusalLogRandom(t *testing.T) {
	const interval, burst, maxAddrs = 10 * time.Second, 3, 8
	rng := rand.New(rand.NewPCG(1, 2))
	clock := newFakeClock()
	r := refusalLog{Now: clock.Now, Interval: interval, Burst: burst, MaxAddrs: maxAddrs}
	lastLine := map[string]time.Time{}
	var lines []time.Time
	total, reported := 0, 0
	for range 20000 {
		clock.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
		addr := fmt.Sprintf("a%d", rng.IntN(20))
		total++
		log, n, others := r.refuse(addr)
		if len(r.addrs) > maxAddrs {
			t.Fatalf("%d addresses remembered, cap %d", len(r.addrs), maxAddrs)
		}
		if !log {
			continue
		}
		now := clock.Now()
		if last, ok := lastLine[addr]; ok && now.Sub(last) < interval {
			t.Fatalf("%s logged at %v and again %v later", addr, last, now.Sub(last))
		}
		lastLine[addr] = now
		lines = append(lines, now)
		// Fixed windows: at most 2*burst lines in any Interval.
		in := 0
		for _, l := range lines {
			if now.Sub(l) < interval {
				in++
			}
		}
		if in > 2*burst {
			t.Fatalf("%d lines within %v", in, interval)
		}
		if n < 1 || others < 0 {
			t.Fatalf("a line for refused=%d others=%d", n, others)
		}
		reported += n + others
	}
	waiting := r.dropped
	for _, e := range r.addrs {
		waiting += e.pending
	}
	if reported+waiting != total {
		t.Errorf("%d refusals in lines and %d waiting, want %d in all", reported, waiting, total)
	}
	if len(lines) < 100 {
		t.Errorf("only %d lines", len(lines))
	}
}

// TestRefusalLogThroughTarget: a flood of connections over the caps
// from many addresses logs a bounded number of warnings, and a later one
// counts the refusals that were not logged.
func TestRefusalLogThroughTarget(t *testing.T) {
	clock := newFakeClock()
	var log logBuffer
	s, addr, _, _ := startTargetServer(t, func(s *Target) {
		s.SetLimits(Limits{PerAddress: 1, LoginTimeout: time.Minute})
		s.log = slog.New(slog.NewTextHandler(&log, nil))
		s.refusals.Now = clock.Now
	})
	const addrs, over = 20, 5 // addresses, refusals each
	var held int
	for i := range addrs {
		from := fmt.Sprintf("127.0.0.%d", i+1)
		if _, err := dialFrom(t, addr, from); err != nil {
			testneed.Missing(t, "needs connections from %s (Linux routes all of 127.0.0.0/8 to lo): %v", from, err)
		}
		held++
		waitStats(t, s, Stats{Connections: held})
		for range over {
			nc, err := dialFrom(t, addr, from)
			if err != nil {
				t.Fatal(err)
			}
			// The warning, if any, is written before the close.
			if !closedByServer(t, nc) {
				t.Fatalf("a connection over the cap from %s is open %v later", from, patience)
			}
		}
	}
	warnings := func() []string {
		var out []string
		for l := range strings.Lines(log.String()) {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "over the limit") {
				out = append(out, l)
			}
		}
		return out
	}
	if w := warnings(); len(w) != defaultRefusalBurst {
		t.Fatalf("%d warnings for %d refusals from %d addresses within 10s, want %d:\n%s", len(w), addrs*over, addrs, defaultRefusalBurst, strings.Join(w, ""))
	}

	// Later, one more refusal: its line stands for those not logged.
	clock.Advance(defaultRefusalInterval)
	nc, err := dialFrom(t, addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !closedByServer(t, nc) {
		t.Fatalf("a connection over the cap is open %v later", patience)
	}
	w := warnings()
	if len(w) != defaultRefusalBurst+1 {
		t.Fatalf("%d warnings, want %d:\n%s", len(w), defaultRefusalBurst+1, strings.Join(w, ""))
	}
	last := w[len(w)-1]
	if !strings.Contains(last, `remote=127.0.0.1:`) || !strings.Contains(last, `limit="per address" max=1`) {
		t.Errorf("the last warning: %s", last)
	}
	count := func(l, key string) int {
		m := regexp.MustCompile(` ` + key + `=([0-9]+)`).FindStringSubmatch(l)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// 127.0.0.1's first refusal had a line, the rest did not.
	if n := count(last, "refused"); n != over {
		t.Errorf("the last warning stands for %d refusals from 127.0.0.1, want %d: %s", n, over, last)
	}
	// Every refusal is in exactly one line.
	sum := 0
	for _, l := range w {
		sum += count(l, "refused") + count(l, "refused_others")
	}
	if sum != addrs*over+1 {
		t.Errorf("the warnings count %d refusals, want %d:\n%s", sum, addrs*over+1, strings.Join(w, ""))
	}
	if !strings.Contains(last, "refused_others=") {
		t.Errorf("the last warning does not count the refusals of addresses that were not logged: %s", last)
	}
}
