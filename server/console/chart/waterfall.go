package chart

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WaterfallOptions shape a waterfall. The zero value is the default.
type WaterfallOptions struct {
	Width int    // pixels, 0 means DefaultWidth; at least MinWidth
	Title string // the picture's accessible name (its <title>); "" for none
}

// Widths of a picture, in pixels.
const (
	DefaultWidth = 720
	MinWidth     = 320
	MaxWidth     = 8192
)

// Colours, chosen to read on a light page.
const (
	colServer   = "#2563eb"
	colAgent    = "#16a34a"
	colFailed   = "#dc2626"
	colRunning  = "#fbbf24"
	colEdge     = "#b45309" // a running bar's dashed outline
	colServerTx = "#1e40af"
	colAgentTx  = "#166534"
	colGrid     = "#ddd"
	colMuted    = "#666"
)

// Geometry of a waterfall, in pixels.
const (
	wfLabel  = 124.0 // left column of step names
	wfRight  = 24.0  // room for the last tick's label ("120 s" centred)
	wfTop    = 36.0  // first row
	wfRow    = 16.0
	wfBar    = 10.0
	wfMarker = 2.0 // an instant's width
)

// Waterfall draws steps (as Steps returns them) as one SVG: a row per
// step, labelled with its name in its lane's colour, its bar on a time axis
// shared by all rows, in seconds since the boot's first event. Failed bars
// are red, running ones amber with a dashed outline, instants a thin
// marker; each bar's <title> gives its name, lane, outcome, duration,
// bytes and message. The total (the last step's end) is printed above.
// No steps draws a small picture saying "no events".
func Waterfall(w io.Writer, steps []Step, o WaterfallOptions) error {
	width, err := pictureWidth(o.Width)
	if err != nil {
		return fmt.Errorf("waterfall: %w", err)
	}
	total := 0.0
	for i, st := range steps {
		switch {
		case !finite(st.Start) || !finite(st.End):
			return fmt.Errorf("waterfall: step %d (%q): start %v, end %v: want finite seconds", i, st.Name, st.Start, st.End)
		case st.Start < 0:
			return fmt.Errorf("waterfall: step %d (%q): start %v: before the boot's first event", i, st.Name, st.Start)
		case st.End < st.Start:
			return fmt.Errorf("waterfall: step %d (%q): ends at %v before its start %v", i, st.Name, st.End, st.Start)
		}
		total = max(total, st.End)
	}
	if len(steps) == 0 {
		return empty(w, width, o.Title, "no events")
	}

	W := float64(width)
	H := wfTop + float64(len(steps))*wfRow + 4
	plot := W - wfLabel - wfRight
	step := niceStep(total, max(2, int(plot/60)))
	axis := math.Ceil(total/step-1e-9) * step
	if axis <= 0 {
		axis = step
	}
	k := plot / axis // pixels per second

	var s svg
	s.open(W, H, o.Title)
	s.label(4, 14, "total "+fmt.Sprintf("%.2f s", total))
	legend := []struct{ name, col string }{{"server", colServer}, {"agent", colAgent}}
	var failed, running bool
	for _, st := range steps {
		failed = failed || st.Outcome == OutcomeFailed
		running = running || st.Outcome == OutcomeRunning
	}
	if failed {
		legend = append(legend, struct{ name, col string }{"failed", colFailed})
	}
	if running {
		legend = append(legend, struct{ name, col string }{"running", colRunning})
	}
	x := W - wfRight - 60*float64(len(legend))
	for _, l := range legend {
		s.swatch(x+4, 10, l.col)
		s.label(x+11, 14, l.name)
		x += 60
	}

	// The grid: one path for every tick's line, then the labels.
	s.raw(`<path stroke="` + colGrid + `" d="`)
	n := int(math.Round(axis / step))
	for i := 0; i <= n; i++ {
		s.raw("M")
		s.num(wfLabel + float64(i)*step*k)
		s.raw(" ")
		s.num(wfTop - 3)
		s.raw("V")
		s.num(H - 2)
	}
	s.raw(`"/>`)
	s.raw(`<g text-anchor="middle" fill="` + colMuted + `">`)
	for i := 0; i <= n; i++ {
		s.label(wfLabel+float64(i)*step*k, wfTop-6, seconds(float64(i)*step)+" s")
	}
	s.raw("</g>")

	// Names, grouped by lane: one colour attribute for each group.
	for _, lane := range []struct{ name, col string }{{LaneServer, colServerTx}, {LaneAgent, colAgentTx}} {
		s.raw(`<g text-anchor="end" fill="` + lane.col + `">`)
		for i, st := range steps {
			if (st.Lane == LaneAgent) == (lane.name == LaneAgent) {
				s.label(wfLabel-6, wfTop+float64(i)*wfRow+12, clip(st.Name, 20))
			}
		}
		s.raw("</g>")
	}

	for i, st := range steps {
		y := wfTop + float64(i)*wfRow
		bar := colServer
		if st.Lane == LaneAgent {
			bar = colAgent
		}
		x, bw, by, bh := wfLabel+st.Start*k, (st.End-st.Start)*k, y+(wfRow-wfBar)/2, wfBar
		if st.Instant() {
			x, bw, by, bh = x-wfMarker/2, wfMarker, y+1, wfRow-2
		} else {
			bw = max(bw, 1)
		}
		s.raw("<rect")
		s.attr("x", x)
		s.attr("y", by)
		s.attr("width", bw)
		s.attr("height", bh)
		switch st.Outcome {
		case OutcomeFailed:
			bar = colFailed
		case OutcomeRunning:
			bar = colRunning
			s.raw(` stroke="` + colEdge + `" stroke-dasharray="3 2"`)
		}
		s.raw(` fill="` + bar + `"><title>`)
		s.text(stepTitle(st))
		s.raw("</title></rect>")
	}
	s.raw("</svg>")
	return s.flush(w)
}

// stepTitle is a bar's tooltip: "kernel (server, ok): 1.23 s, 0.50–1.73 s,
// 45.6 MiB" and the message on a line of its own.
func stepTitle(st Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s): ", st.Name, st.Lane, st.Outcome)
	if st.Instant() {
		fmt.Fprintf(&b, "at %.2f s", st.Start)
	} else {
		fmt.Fprintf(&b, "%.2f s, %.2f–%.2f s", st.End-st.Start, st.Start, st.End)
	}
	if st.Bytes != 0 {
		b.WriteString(", " + size(st.Bytes))
	}
	if st.Message != "" {
		b.WriteString("\n" + st.Message)
	}
	return b.String()
}

// pictureWidth validates a width option; 0 means DefaultWidth.
func pictureWidth(w int) (int, error) {
	switch {
	case w == 0:
		return DefaultWidth, nil
	case w < MinWidth || w > MaxWidth:
		return 0, fmt.Errorf("width %d: want %d to %d pixels, or 0 for %d", w, MinWidth, MaxWidth, DefaultWidth)
	}
	return w, nil
}
