package console

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/telemetry"
)

// States of a machine, as the console counts and filters them.
const (
	StateBooting = "booting" // its latest boot is under way
	StateUp      = "up"      // its latest boot handed over to the image
	StateFailed  = "failed"  // its latest boot failed
	StatePending = "pending" // it waits for an operator's approval
	StateOffline = "offline" // never booted, or its boot went silent
)

// States lists every state, in the overview's order.
var States = []string{StateBooting, StateUp, StateFailed, StatePending, StateOffline}

// SilentAfter is how long a boot under way may go without an event
// before its machine counts as offline: it stopped (powered off, hung in
// its firmware) without saying why.
const SilentAfter = telemetry.ConflictWindow

// StateOf says where a machine stands at now. overboot hears nothing of a
// machine after its boot's hand-over, so up means "its latest boot
// reached switch_root", not "answering now".
func StateOf(r telemetry.Row, now time.Time) string {
	switch {
	case r.Enrolment == "pending":
		return StatePending
	case r.Outcome == telemetry.Failed:
		return StateFailed
	case r.Phase == boot.PhaseSwitchRoot:
		return StateUp
	case r.Phase == "" || now.Sub(r.UpdatedAt) > SilentAfter:
		return StateOffline
	}
	return StateBooting
}

// Filter is what the machine list shows: the rows matching every field
// set, sorted, one page of them.
type Filter struct {
	Query   string // in MAC, host, user, profile, image, address
	State   string
	Profile string
	Image   string // an image label (name@version) or a digest prefix
	Phase   string // of the latest boot
	Error   string // the failure message, exactly
	Sort    string // a column, "-" first for descending
	Page    int    // from 1
}

// PageSize is how many machines a page of the list shows.
const PageSize = 50

// Sort columns of the machine list.
var sortColumns = []string{"mac", "host", "profile", "state", "image", "user", "updated"}

// ParseFilter reads a Filter from the list's query, naming the first
// parameter it cannot use.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for k, vs := range q {
		if len(vs) != 1 {
			return f, &inputError{k + ": given " + strconv.Itoa(len(vs)) + " times"}
		}
		v := vs[0]
		if len(v) > 256 {
			return f, &inputError{k + ": longer than 256 bytes"}
		}
		switch k {
		case "q":
			f.Query = strings.TrimSpace(v)
		case "state":
			if v != "" && !slices.Contains(States, v) {
				return f, &inputError{"state " + strconv.Quote(v) + ": want one of " + strings.Join(States, ", ")}
			}
			f.State = v
		case "profile":
			f.Profile = v
		case "image":
			f.Image = v
		case "phase":
			f.Phase = v
		case "error":
			f.Error = v
		case "sort":
			if v != "" && !slices.Contains(sortColumns, strings.TrimPrefix(v, "-")) {
				return f, &inputError{"sort " + strconv.Quote(v) + ": want one of " + strings.Join(sortColumns, ", ") + " (a leading - sorts down)"}
			}
			f.Sort = v
		case "page":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return f, &inputError{"page " + strconv.Quote(v) + ": want a number from 1"}
			}
			f.Page = n
		default:
			return f, &inputError{"query parameter " + strconv.Quote(k) + ": the list takes q, state, profile, image, phase, error, sort and page"}
		}
	}
	return f, nil
}

// values is f as the list's query, page left out when it is 1.
func (f Filter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"q": f.Query, "state": f.State, "profile": f.Profile, "image": f.Image, "phase": f.Phase, "error": f.Error, "sort": f.Sort} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Page > 1 {
		v.Set("page", strconv.Itoa(f.Page))
	}
	return v
}

// Machine is one row of the console's machine list.
type Machine struct {
	telemetry.Row
	State string
	// ImageLabel names the image its latest boot got: name@version when
	// a published name pointed at it, else the digest's start.
	ImageLabel string
}

// Listing is one page of the machine list.
type Listing struct {
	Machines []Machine
	Total    int // matching the filter
	Page     int
	Pages    int
}

// List filters, sorts and pages ms (left as they are). It sorts
// pointers by keys made once per machine: 10,000 machines take
// milliseconds.
func List(ms []Machine, f Filter) Listing {
	q := strings.ToLower(f.Query)
	var qmac string
	if mac, err := boot.ParseMAC(q); err == nil {
		qmac = mac.String()
	}
	type entry struct {
		m   *Machine
		key string
	}
	col, desc := strings.CutPrefix(f.Sort, "-")
	out := make([]entry, 0, len(ms))
	for i := range ms {
		m := &ms[i]
		if f.State != "" && m.State != f.State ||
			f.Profile != "" && m.Profile != f.Profile ||
			f.Phase != "" && m.Phase != f.Phase ||
			f.Error != "" && m.Error != f.Error ||
			f.Image != "" && m.ImageLabel != f.Image && !(len(f.Image) >= 12 && strings.HasPrefix(m.ImageDigest, f.Image)) {
			continue
		}
		if q != "" && !matches(m, q, qmac) {
			continue
		}
		out = append(out, entry{m, sortKey(m, col)})
	}
	slices.SortStableFunc(out, func(a, b entry) int {
		c := cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.m.MAC, b.m.MAC))
		if desc {
			return -c
		}
		return c
	})
	l := Listing{Total: len(out), Page: max(f.Page, 1)}
	l.Pages = max(1, (len(out)+PageSize-1)/PageSize)
	l.Page = min(l.Page, l.Pages)
	from := (l.Page - 1) * PageSize
	for _, e := range out[from:min(from+PageSize, len(out))] {
		l.Machines = append(l.Machines, *e.m)
	}
	return l
}

// sortKey is m's key for sorting by col.
func sortKey(m *Machine, col string) string {
	switch col {
	case "host":
		return m.Hostname
	case "profile":
		return m.Profile
	case "state":
		return m.State
	case "image":
		return m.ImageLabel
	case "user":
		return m.User
	case "updated":
		// Fixed width, so that strings sort as times do.
		return fmt.Sprintf("%020d", m.UpdatedAt.UnixNano())
	}
	return m.MAC
}

// matches reports whether q (lower case) is in any of m's names, or
// qmac (q read as a MAC address typed with dashes or without
// separators; "" when it is none) is its MAC.
func matches(m *Machine, q, qmac string) bool {
	if qmac != "" && qmac == m.MAC {
		return true
	}
	for _, s := range []string{m.MAC, m.Hostname, m.User, m.Profile, m.ImageLabel, m.Address} {
		if containsFold(s, q) {
			return true
		}
	}
	return false
}

// containsFold reports whether s holds q (lower case), ignoring case,
// without making a lower-case copy of s when it is ASCII.
func containsFold(s, q string) bool {
	if len(q) > len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.Contains(strings.ToLower(s), q)
		}
	}
	for i := 0; i+len(q) <= len(s); i++ {
		j := 0
		for ; j < len(q); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != q[j] {
				break
			}
		}
		if j == len(q) {
			return true
		}
	}
	return false
}

// Counts is how many machines are in each state.
func Counts(ms []Machine) map[string]int {
	c := map[string]int{}
	for _, m := range ms {
		c[m.State]++
	}
	return c
}

// Failure is one kind of failure: the machines whose latest boot failed
// in one phase with one message.
type Failure struct {
	Phase, Message string
	MACs           []string // sorted
}

// Failures groups the failed machines by phase and message, the most
// machines first.
func Failures(ms []Machine) []Failure {
	idx := map[[2]string]int{}
	var out []Failure
	for _, m := range ms {
		if m.State != StateFailed {
			continue
		}
		k := [2]string{m.Phase, m.Error}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Failure{Phase: m.Phase, Message: m.Error})
		}
		out[i].MACs = append(out[i].MACs, m.MAC)
	}
	for i := range out {
		slices.Sort(out[i].MACs)
	}
	slices.SortStableFunc(out, func(a, b Failure) int {
		return cmp.Or(len(b.MACs)-len(a.MACs), strings.Compare(a.Phase, b.Phase), strings.Compare(a.Message, b.Message))
	})
	return out
}

// inputError is a request the console cannot use: a 400 naming why.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }
