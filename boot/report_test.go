package boot

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParsePhaseReport(t *testing.T) {
	tests := []struct {
		name string
		json string
		want PhaseReport
	}{
		{"running", `{"phase":"network","outcome":"running","seconds":0,"uptime":1.25}`,
			PhaseReport{Phase: "network", Outcome: "running", Uptime: 1.25}},
		{"ok with note", `{"phase":"network","outcome":"ok","seconds":0.5,"uptime":1.75,"message":"eth0 10.0.2.15/24 via 10.0.2.2"}`,
			PhaseReport{Phase: "network", Outcome: "ok", Seconds: 0.5, Uptime: 1.75, Message: "eth0 10.0.2.15/24 via 10.0.2.2"}},
		{"failed", `{"phase":"lower","outcome":"failed","seconds":3,"uptime":9,"message":"image http://s/i: digest mismatch"}`,
			PhaseReport{Phase: "lower", Outcome: "failed", Seconds: 3, Uptime: 9, Message: "image http://s/i: digest mismatch"}},
		{"any field order, whitespace", " {\"uptime\":2,\n\"seconds\":1e-3, \"outcome\":\"ok\",\"phase\":\"switch_root\"}\n",
			PhaseReport{Phase: "switch_root", Outcome: "ok", Seconds: 0.001, Uptime: 2}},
		{"empty message", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0,"message":""}`,
			PhaseReport{Phase: "early", Outcome: "ok"}},
		{"escaped unicode", `{"phase":"disk","outcome":"failed","seconds":1,"uptime":2,"message":"caf\u00e9 \u003cok\u003e"}`,
			PhaseReport{Phase: "disk", Outcome: "failed", Seconds: 1, Uptime: 2, Message: "café <ok>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePhaseReport(strings.NewReader(tt.json))
			if err != nil {
				t.Fatalf("ParsePhaseReport(%s): %v", tt.json, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			b, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParsePhaseReport(bytes.NewReader(b))
			if err != nil || again != got {
				t.Errorf("round trip of %s: %+v, %v", b, again, err)
			}
		})
	}
}

func TestParsePhaseReportErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"empty", ``, "empty"},
		{"not an object", `["phase"]`, "want a JSON object"},
		{"not json", `phase: early`, "phase report: invalid character"},
		{"unknown field", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0,"colour":"red"}`, `unknown field "colour"`},
		{"field in other case", `{"Phase":"early","outcome":"ok","seconds":0,"uptime":0}`, `unknown field "Phase"`},
		{"repeated field", `{"phase":"early","phase":"modules","outcome":"ok","seconds":0,"uptime":0}`, "phase: given more than once"},
		{"null", `{"phase":"early","outcome":"ok","seconds":null,"uptime":0}`, "seconds: is null"},
		{"missing phase", `{"outcome":"ok","seconds":0,"uptime":0}`, "phase: missing"},
		{"missing uptime", `{"phase":"early","outcome":"ok","seconds":0}`, "uptime: missing"},
		{"unknown phase", `{"phase":"boot","outcome":"ok","seconds":0,"uptime":0}`, `phase: "boot": want one of early, modules`},
		{"unknown outcome", `{"phase":"early","outcome":"done","seconds":0,"uptime":0}`, `outcome: "done"`},
		{"negative seconds", `{"phase":"early","outcome":"ok","seconds":-1,"uptime":0}`, "seconds: -1: want a finite number"},
		{"negative uptime", `{"phase":"early","outcome":"ok","seconds":0,"uptime":-0.5}`, "uptime: -0.5"},
		{"infinite seconds", `{"phase":"early","outcome":"ok","seconds":1e400,"uptime":0}`, "seconds: number 1e400 is out of range"},
		{"NaN literal", `{"phase":"early","outcome":"ok","seconds":NaN,"uptime":0}`, "invalid character 'N'"},
		{"seconds as string", `{"phase":"early","outcome":"ok","seconds":"1","uptime":0}`, "seconds: want a number, not string"},
		{"phase as number", `{"phase":1,"outcome":"ok","seconds":0,"uptime":0}`, "phase: want a string, not number"},
		{"message as object", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0,"message":{}}`, "message: want a string, not object"},
		{"running with seconds", `{"phase":"early","outcome":"running","seconds":1,"uptime":0}`, "seconds: is 1: must be 0 while running"},
		{"running with message", `{"phase":"early","outcome":"running","seconds":0,"uptime":0,"message":"x"}`, "message: must be empty while running"},
		{"two lines", `{"phase":"early","outcome":"failed","seconds":0,"uptime":0,"message":"a\nb"}`, "message: control character U+000A at byte 1"},
		{"line separator", `{"phase":"early","outcome":"failed","seconds":0,"uptime":0,"message":"a\u2028b"}`, "message: control character U+2028"},
		{"long message", `{"phase":"early","outcome":"failed","seconds":0,"uptime":0,"message":"` + strings.Repeat("x", MaxReportMessage+1) + `"}`, "message: 1025 bytes: at most 1024"},
		{"trailing object", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0}{}`, "trailing data"},
		{"trailing junk", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0} x`, "trailing data"},
		{"unterminated", `{"phase":"early","outcome":"ok"`, "phase report:"},
		{"too large", `{"phase":"early","outcome":"ok","seconds":0,"uptime":0}` + strings.Repeat(" ", MaxPhaseReportSize), "larger than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParsePhaseReport(strings.NewReader(tt.json))
			if err == nil {
				t.Fatalf("ParsePhaseReport accepted %+v, want an error containing %q", r, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPhaseReportValidate(t *testing.T) {
	ok := PhaseReport{Phase: PhaseLower, Outcome: OutcomeOK, Seconds: 1, Uptime: 2, Message: "note"}
	tests := []struct {
		name   string
		change func(*PhaseReport)
		want   string // "" = valid
	}{
		{"valid", func(*PhaseReport) {}, ""},
		{"NaN seconds", func(r *PhaseReport) { r.Seconds = math.NaN() }, "seconds: NaN"},
		{"infinite uptime", func(r *PhaseReport) { r.Uptime = math.Inf(1) }, "uptime: +Inf"},
		{"no phase", func(r *PhaseReport) { r.Phase = "" }, "phase: \"\""},
		{"not UTF-8", func(r *PhaseReport) { r.Message = "\xff" }, "message: is not UTF-8"},
		{"tab", func(r *PhaseReport) { r.Message = "a\tb" }, "message: control character U+0009"},
		{"max message", func(r *PhaseReport) { r.Message = strings.Repeat("é", MaxReportMessage/2) }, ""},
		{"several errors", func(r *PhaseReport) { r.Phase, r.Outcome = "x", "y" }, "outcome: \"y\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.change(&r)
			err := r.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := r.Marshal(); err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if _, merr := r.Marshal(); merr == nil {
				t.Errorf("Marshal accepted an invalid report")
			}
		})
	}
}

func TestReportMessage(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "eth0 10.0.2.15/24", "eth0 10.0.2.15/24"},
		{"lines", "overboot.a: bad\noverboot.b: bad\r\n", "overboot.a: bad; overboot.b: bad"},
		{"blank lines and tabs", "\n\ta\tb \n\n c", "a b; c"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"separators", "a\u2028b\u0085c", "a; b c"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReportMessage(tt.in); got != tt.want {
				t.Errorf("ReportMessage(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	long := ReportMessage(strings.Repeat("é", MaxReportMessage))
	if len(long) > MaxReportMessage || !utf8.ValidString(long) || !strings.HasSuffix(long, "...") {
		t.Errorf("long message cut to %d bytes, valid UTF-8 %v: %q...", len(long), utf8.ValidString(long), long[len(long)-10:])
	}
	r := PhaseReport{Phase: PhaseEarly, Outcome: OutcomeFailed, Message: long}
	if err := r.Validate(); err != nil {
		t.Errorf("a ReportMessage is not a valid message: %v", err)
	}
}

func FuzzParsePhaseReport(f *testing.F) {
	f.Add(`{"phase":"network","outcome":"running","seconds":0,"uptime":1.25}`)
	f.Add(`{"phase":"lower","outcome":"failed","seconds":3.5,"uptime":9.001,"message":"image: digest mismatch"}`)
	f.Add(`{"phase":"switch_root","outcome":"ok","seconds":1e-9,"uptime":1e9,"message":"caf\u00e9 \u2028"}`)
	f.Add(`{"phase":"early","phase":"early","outcome":"ok","seconds":0,"uptime":0} {}`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePhaseReport(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed report does not validate: %v", err)
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatalf("valid report does not marshal: %v", err)
		}
		again, err := ParsePhaseReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

// FuzzReportMessage: whatever the agent has to say fits a report.
func FuzzReportMessage(f *testing.F) {
	f.Add("a\nb\r\n\tc")
	f.Add(strings.Repeat("é", MaxReportMessage) + "\n")
	f.Add("\xff\u2029 x ")
	f.Fuzz(func(t *testing.T, s string) {
		m := ReportMessage(s)
		r := PhaseReport{Phase: PhaseEarly, Outcome: OutcomeFailed, Message: m}
		if err := r.Validate(); err != nil {
			t.Fatalf("ReportMessage(%q) = %q: %v", s, m, err)
		}
		if again := ReportMessage(m); again != m {
			t.Fatalf("ReportMessage not stable: %q then %q", m, again)
		}
	})
}
