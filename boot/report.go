package boot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The agent's boot phases, as shown on its console and reported to the
// server. The agent's own Phase constants are these.
const (
	PhaseEarly      = "early"       // /proc /sys /dev /run
	PhaseModules    = "modules"     // kernel modules from the initramfs
	PhaseNetwork    = "network"     // link and DHCPv4
	PhaseAttest     = "attest"      // the TPM proves what booted (enroll = tpm)
	PhaseDocument   = "document"    // boot document from the server
	PhaseDisk       = "disk"        // a root partition on the firmware's iSCSI disk
	PhaseLower      = "lower"       // the read-only image
	PhaseUpper      = "upper"       // the writable layer
	PhaseOverlay    = "overlay"     // overlayfs as the new root
	PhaseSwitchRoot = "switch_root" // hand over to the image's init
)

// Phases lists every phase, in boot order. A boot runs a subsequence:
// attest only with overboot.attest, document only with overboot.doc or
// overboot.attest, disk only with overboot.root (which has no lower,
// upper or overlay).
var Phases = []string{PhaseEarly, PhaseModules, PhaseNetwork, PhaseAttest, PhaseDocument, PhaseDisk, PhaseLower, PhaseUpper, PhaseOverlay, PhaseSwitchRoot}

// Outcomes of a PhaseReport.
const (
	OutcomeRunning = "running" // the phase started
	OutcomeOK      = "ok"      // the phase ended well
	OutcomeFailed  = "failed"  // the phase failed: the boot stops here
)

// Outcomes lists every outcome.
var Outcomes = []string{OutcomeRunning, OutcomeOK, OutcomeFailed}

// MaxPhaseReportSize bounds a PhaseReport's JSON; anything larger is refused.
const MaxPhaseReportSize = 4 << 10

// MaxReportMessage bounds PhaseReport.Message, in bytes.
const MaxReportMessage = 1024

// PhaseReport is what the agent POSTs to the report URL (Params.Report or
// Document.Report) as the body of one request, Content-Type
// application/json, for every phase event: "running" when a phase starts,
// then "ok" or "failed" when it ends. Any 2xx answer means received. The
// reports of one boot come in order; some may be missing (reports are best
// effort), and the last phase, switch_root, never reports "ok": on success
// the agent has become the image's init.
type PhaseReport struct {
	Phase   string  `json:"phase"`             // one of Phases
	Outcome string  `json:"outcome"`           // one of Outcomes
	Seconds float64 `json:"seconds"`           // the phase's duration; 0 while running
	Uptime  float64 `json:"uptime"`            // seconds since the kernel started, at the event
	Message string  `json:"message,omitempty"` // failed: why; ok: the console note; one line, at most MaxReportMessage bytes
}

// phaseReportFields are the JSON keys, each required except message.
var phaseReportFields = []string{"phase", "outcome", "seconds", "uptime", "message"}

// ParsePhaseReport decodes and validates one report. It is strict: unknown
// or repeated fields, null values, a missing field other than message,
// trailing data and anything larger than MaxPhaseReportSize are errors,
// each naming the field.
func ParsePhaseReport(r io.Reader) (PhaseReport, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPhaseReportSize+1))
	if err != nil {
		return PhaseReport{}, fmt.Errorf("phase report: read: %w", err)
	}
	if len(data) > MaxPhaseReportSize {
		return PhaseReport{}, fmt.Errorf("phase report: larger than %d bytes", MaxPhaseReportSize)
	}
	bad := func(format string, args ...any) (PhaseReport, error) {
		return PhaseReport{}, fmt.Errorf("phase report: "+format, args...)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err == io.EOF {
		return bad("empty")
	} else if err != nil {
		return bad("%v", err)
	} else if tok != json.Delim('{') {
		return bad("want a JSON object")
	}
	var rep PhaseReport
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		key, _ := tok.(string) // inside an object, json.Decoder only yields string keys
		if !slices.Contains(phaseReportFields, key) {
			return bad("unknown field %q (known: %s)", key, strings.Join(phaseReportFields, ", "))
		}
		if seen[key] {
			return bad("%s: given more than once", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return bad("%s: %v", key, err)
		}
		if string(raw) == "null" {
			return bad("%s: is null", key)
		}
		var dst any
		switch key {
		case "phase":
			dst = &rep.Phase
		case "outcome":
			dst = &rep.Outcome
		case "seconds":
			dst = &rep.Seconds
		case "uptime":
			dst = &rep.Uptime
		case "message":
			dst = &rep.Message
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			var te *json.UnmarshalTypeError
			switch _, num := dst.(*float64); {
			case errors.As(err, &te) && num && strings.HasPrefix(te.Value, "number"):
				return bad("%s: %s is out of range", key, te.Value)
			case errors.As(err, &te) && num:
				return bad("%s: want a number, not %s", key, te.Value)
			case errors.As(err, &te):
				return bad("%s: want a string, not %s", key, te.Value)
			}
			return bad("%s: %v", key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("trailing data after the JSON object")
	}
	for _, k := range phaseReportFields[:4] {
		if !seen[k] {
			return bad("%s: missing", k)
		}
	}
	if err := rep.Validate(); err != nil {
		return PhaseReport{}, err
	}
	return rep, nil
}

// Validate checks each field and their combination. Errors name the field.
func (r PhaseReport) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("phase report: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !slices.Contains(Phases, r.Phase) {
		bad("phase", "%q: want one of %s", r.Phase, strings.Join(Phases, ", "))
	}
	if !slices.Contains(Outcomes, r.Outcome) {
		bad("outcome", "%q: want one of %s", r.Outcome, strings.Join(Outcomes, ", "))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"seconds", r.Seconds}, {"uptime", r.Uptime}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			bad(f.name, "%v: want a finite number of seconds, 0 or more", f.v)
		}
	}
	if r.Outcome == OutcomeRunning {
		if r.Seconds != 0 {
			bad("seconds", "is %v: must be 0 while running", r.Seconds)
		}
		if r.Message != "" {
			bad("message", "must be empty while running")
		}
	}
	if len(r.Message) > MaxReportMessage {
		bad("message", "%d bytes: at most %d", len(r.Message), MaxReportMessage)
	}
	if !utf8.ValidString(r.Message) {
		bad("message", "is not UTF-8")
	} else if i := strings.IndexFunc(r.Message, notOneLine); i >= 0 {
		bad("message", "control character %U at byte %d: want one line", []rune(r.Message[i:])[0], i)
	}
	return errors.Join(errs...)
}

// Marshal encodes a valid report.
func (r PhaseReport) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// notOneLine is true for the characters a report message may not carry:
// control characters (line breaks and tabs among them) and the Unicode
// line and paragraph separators.
func notOneLine(c rune) bool {
	return unicode.IsControl(c) || c == '\u2028' || c == '\u2029'
}

// ReportMessage makes s fit PhaseReport.Message: lines joined with "; ",
// other control characters as spaces, invalid UTF-8 as U+FFFD, and cut to
// MaxReportMessage bytes (ending in "...") at a character boundary.
func ReportMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for _, l := range strings.FieldsFunc(s, func(c rune) bool { return c == '\n' || c == '\r' || c == '\u2028' || c == '\u2029' }) {
		l = strings.TrimSpace(strings.Map(func(c rune) rune {
			if notOneLine(c) {
				return ' '
			}
			return c
		}, l))
		if l == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	s = b.String()
	if len(s) <= MaxReportMessage {
		return s
	}
	const more = "..."
	cut := MaxReportMessage - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

// WorkingSetPath is appended to a boot's report URL (Document.Report)
// for its WorkingSetReport: POST REPORT/working-set, once per boot.
const WorkingSetPath = "/working-set"

// MaxWorkingSetReportSize bounds a WorkingSetReport's JSON.
const MaxWorkingSetReportSize = 32 << 10

// WorkingSetReport is what the keeper POSTs, once per boot, to the report
// URL plus WorkingSetPath (Content-Type application/json): the chunks of
// the image and of its tree the machine read in the first Seconds after
// its root was mounted. The server checks the image is the boot's and
// every chunk within it.
type WorkingSetReport struct {
	Image   Digest     `json:"image"`   // the image's digest, as the document gave it
	Seconds float64    `json:"seconds"` // how long the keeper recorded, from the kernel's first read
	Set     WorkingSet `json:"working_set"`
}

// ParseWorkingSetReport decodes and validates one report, strictly:
// unknown fields, trailing data and anything larger than
// MaxWorkingSetReportSize are errors. The chunks are checked against the
// sizes by the caller (WorkingSet.Check), which knows them.
func ParseWorkingSetReport(r io.Reader) (WorkingSetReport, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxWorkingSetReportSize+1))
	if err != nil {
		return WorkingSetReport{}, fmt.Errorf("working set report: read: %w", err)
	}
	if len(data) > MaxWorkingSetReportSize {
		return WorkingSetReport{}, fmt.Errorf("working set report: larger than %d bytes", MaxWorkingSetReportSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rep WorkingSetReport
	if err := dec.Decode(&rep); err != nil {
		return WorkingSetReport{}, fmt.Errorf("working set report: %w", err)
	}
	if dec.More() {
		return WorkingSetReport{}, errors.New("working set report: trailing data after the JSON object")
	}
	if err := rep.Validate(); err != nil {
		return WorkingSetReport{}, err
	}
	return rep, nil
}

// Validate checks each field. Errors name the field.
func (r WorkingSetReport) Validate() error {
	var errs []error
	if _, err := ParseDigest(string(r.Image)); err != nil {
		errs = append(errs, fmt.Errorf("working set report: image: %w", err))
	}
	if math.IsNaN(r.Seconds) || math.IsInf(r.Seconds, 0) || r.Seconds < 0 {
		errs = append(errs, fmt.Errorf("working set report: seconds: %v: want a finite number of seconds, 0 or more", r.Seconds))
	}
	if err := r.Set.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("working set report: working_set: %w", err))
	}
	return errors.Join(errs...)
}

// Marshal encodes a valid report.
func (r WorkingSetReport) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}
