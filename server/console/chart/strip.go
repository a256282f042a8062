package chart

import (
	"fmt"
	"io"
	"math"
)

// StripOptions shape a strip.
type StripOptions struct {
	Width int // pixels, 0 means StripWidth
	// Axis is the seconds the strip's width stands for: the same for
	// every boot of a list, so that their strips share one time axis.
	// 0 means the boot's own length.
	Axis float64
}

// StripWidth is a strip's default width.
const StripWidth = 240

const stripHeight = 12

// Strip draws one boot as a single row: the agent's phases side by side
// (failed red, still running amber; those under a pixel left out), each
// titled with its name and duration, on a time axis of o.Axis seconds. It is small (a machine's
// page draws 100): the server's steps and the messages are the
// waterfall's. A list of boots drawn as strips with one
// Axis compares them at a glance; Waterfall shows one in full.
func Strip(w io.Writer, steps []Step, o StripOptions) error {
	width := o.Width
	if width == 0 {
		width = StripWidth
	}
	if width < 20 || width > MaxWidth {
		return fmt.Errorf("chart: strip width %d: want 20 to %d pixels", width, MaxWidth)
	}
	axis := o.Axis
	for _, st := range steps {
		if st.End < st.Start || math.IsNaN(st.Start) || math.IsNaN(st.End) {
			return fmt.Errorf("chart: step %q ends before it starts", st.Name)
		}
		if o.Axis == 0 {
			axis = max(axis, st.End)
		}
	}
	if axis <= 0 || math.IsNaN(axis) || math.IsInf(axis, 0) {
		axis = 1
	}
	W := float64(width)
	x := func(t float64) float64 { return min(t, axis) / axis * W }
	var s svg
	// No text, no title: the bare element.
	s.raw(`<svg xmlns="http://www.w3.org/2000/svg"`)
	s.attr("width", W)
	s.attr("height", stripHeight)
	s.raw(` viewBox="0 0 `)
	s.num(W)
	s.raw(" ")
	s.num(stripHeight)
	s.raw(`">`)
	// One group per colour, so that a bar is only its place and title.
	for _, g := range []struct{ outcome, fill string }{{OutcomeOK, colAgent}, {OutcomeFailed, colFailed}, {OutcomeRunning, colRunning}} {
		opened := false
		for _, st := range steps {
			o := st.Outcome
			if o != OutcomeFailed && o != OutcomeRunning {
				o = OutcomeOK
			}
			// Phases under a pixel wide are left out: they would not
			// show, and a page draws a hundred strips.
			if st.Lane != LaneAgent || x(st.End)-x(st.Start) < 1 || o != g.outcome {
				continue
			}
			if !opened {
				s.raw(`<g fill="` + g.fill + `">`)
				opened = true
			}
			s.raw("<rect")
			s.attr("x", x(st.Start))
			s.raw(` y="1"`)
			s.attr("width", max(x(st.End)-x(st.Start)-.5, .5))
			s.raw(` height="10"><title>`)
			s.text(fmt.Sprintf("%s %.2f s", st.Name, st.End-st.Start))
			s.raw("</title></rect>")
		}
		if opened {
			s.raw("</g>")
		}
	}
	s.raw("</svg>")
	return s.flush(w)
}
