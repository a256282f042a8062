package chart

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestStrip(t *testing.T) {
	steps := []Step{
		{Lane: LaneServer, Name: "script", Outcome: OutcomeOK},
		{Lane: LaneServer, Name: "kernel", Start: 0.5, End: 2, Outcome: OutcomeOK, Bytes: 8 << 20},
		{Lane: LaneAgent, Name: "early", Start: 2.99, End: 3, Outcome: OutcomeOK}, // 0.2 px: left out
		{Lane: LaneAgent, Name: "network", Start: 3, End: 4, Outcome: OutcomeOK},
		{Lane: LaneAgent, Name: "lower", Start: 4, End: 6, Outcome: OutcomeFailed, Message: `<script>alert(1)</script>`},
	}
	var b strings.Builder
	if err := Strip(&b, steps, StripOptions{Width: 200, Axis: 10}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	type rect struct {
		X     float64 `xml:"x,attr"`
		Width float64 `xml:"width,attr"`
		Fill  string  `xml:"fill,attr"`
		Title string  `xml:"title"`
	}
	type group struct {
		Fill  string `xml:"fill,attr"`
		Rects []rect `xml:"rect"`
	}
	var pic struct {
		Groups []group `xml:"g"`
		Rects  []rect
	}
	parse := func(out string) {
		t.Helper()
		pic.Groups, pic.Rects = nil, nil
		if err := xml.Unmarshal([]byte(out), &pic); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, g := range pic.Groups {
			for _, r := range g.Rects {
				r.Fill = g.Fill
				pic.Rects = append(pic.Rects, r)
			}
		}
	}
	parse(out)
	// The two agent phases.
	if len(pic.Rects) != 2 {
		t.Fatalf("%d rects: %s", len(pic.Rects), out)
	}
	// On a 10 s axis 200 px wide: 20 px a second.
	if r := pic.Rects[0]; r.X != 60 || r.Width != 19.5 || r.Fill != colAgent {
		t.Errorf("network: %+v", r)
	}
	if r := pic.Rects[1]; r.X != 80 || r.Width != 39.5 || r.Fill != colFailed || r.Title != "lower 2.00 s" {
		t.Errorf("lower: %+v", r)
	}
	if strings.Contains(out, "<script>") {
		t.Error("a message went out unescaped")
	}
	// Past the axis: clipped to the width.
	b.Reset()
	Strip(&b, steps, StripOptions{Width: 200, Axis: 5})
	if parse(b.String()); pic.Rects[1].X+pic.Rects[1].Width > 200 {
		t.Errorf("clipped: %+v", pic.Rects[1])
	}
	if err := Strip(&b, []Step{{Name: "x", Start: 2, End: 1}}, StripOptions{}); err == nil {
		t.Error("a step ending before it starts drew")
	}
}
