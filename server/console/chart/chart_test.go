package chart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// element is one element of a picture, with its attributes and the text
// directly inside it or inside its <title> child.
type element struct {
	name  string
	attr  map[string]string
	text  string
	title string
}

func (e element) num(t *testing.T, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(e.attr[name], 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", e.name, name, e.attr[name], err)
	}
	return v
}

// parse decodes a whole picture as XML: one <svg> root in the SVG
// namespace and nothing else. It returns the root's own <title> and every
// element below the root in order.
func parse(t *testing.T, data []byte) (title string, elems []element) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []int // indexes into elems; -1 for the root
	roots := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, data)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				roots++
				if tok.Name.Local != "svg" || tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("root is %v, want svg in the SVG namespace", tok.Name)
				}
				stack = append(stack, -1)
				continue
			}
			e := element{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			elems = append(elems, e)
			stack = append(stack, len(elems)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(tok)) > 0 {
					t.Fatalf("text outside the root: %q", tok)
				}
				continue
			}
			top := stack[len(stack)-1]
			parent := -1
			if len(stack) > 1 {
				parent = stack[len(stack)-2]
			}
			switch {
			case top >= 0 && elems[top].name == "title" && parent == -1:
				title += string(tok)
			case top >= 0 && elems[top].name == "title":
				elems[parent].title += string(tok)
			case top >= 0:
				elems[top].text += string(tok)
			}
		case xml.ProcInst, xml.Directive:
			t.Fatalf("unexpected %T in a picture", tok)
		}
	}
	if roots != 1 {
		t.Fatalf("%d root elements, want 1", roots)
	}
	return title, elems
}

func only(elems []element, name string) []element {
	var out []element
	for _, e := range elems {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

func texts(elems []element) []string {
	var out []string
	for _, e := range only(elems, "text") {
		out = append(out, e.text)
	}
	return out
}

func render(t *testing.T, steps []Step, o WaterfallOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Waterfall(&b, steps, o); err != nil {
		t.Fatalf("Waterfall: %v", err)
	}
	return b.Bytes()
}

func TestWaterfall(t *testing.T) {
	steps := fullBootSteps()
	steps[9].Outcome, steps[9].Message = OutcomeFailed, "mount: permission denied"
	steps[10].Outcome = OutcomeRunning
	out := render(t, steps, WaterfallOptions{Title: "boot 7 of n1"})
	title, elems := parse(t, out)
	if title != "boot 7 of n1" {
		t.Errorf("title %q, want the option's", title)
	}

	bars := only(elems, "rect")
	if len(bars) != len(steps) {
		t.Fatalf("%d bars, want one per step: %d", len(bars), len(steps))
	}
	// Bars lie on one axis: x = x0 + k*Start, width = k*(End-Start), an
	// instant a marker centred on its time. Take x0 and k from two bars.
	a, b := bars[1], bars[9] // kernel 0.2–1.7, lower 6.6–9.1
	k := (b.num(t, "x") - a.num(t, "x")) / (steps[9].Start - steps[1].Start)
	x0 := a.num(t, "x") - k*steps[1].Start
	if k <= 0 {
		t.Fatalf("scale %v pixels per second", k)
	}
	const tol = 0.11 // coordinates are rounded to a tenth
	for i, st := range steps {
		bar := bars[i]
		x, w := bar.num(t, "x"), bar.num(t, "width")
		if st.Instant() {
			x += w / 2
			if w > 3 {
				t.Errorf("step %d (%s): instant %v pixels wide", i, st.Name, w)
			}
		} else if want := k * (st.End - st.Start); math.Abs(w-want) > tol {
			t.Errorf("step %d (%s): width %v, want %v", i, st.Name, w, want)
		}
		if want := x0 + k*st.Start; math.Abs(x-want) > tol {
			t.Errorf("step %d (%s): x %v, want %v", i, st.Name, x, want)
		}
		// Rows in order, one per step.
		if i > 0 && bar.num(t, "y") <= bars[i-1].num(t, "y") {
			t.Errorf("step %d (%s): y %v not below the previous row's %v", i, st.Name, bar.num(t, "y"), bars[i-1].num(t, "y"))
		}
		if !strings.HasPrefix(bar.title, st.Name+" ("+st.Lane+", "+st.Outcome+"): ") {
			t.Errorf("step %d: title %q, want its name, lane and outcome first", i, bar.title)
		}
		if st.Message != "" && !strings.HasSuffix(bar.title, "\n"+st.Message) {
			t.Errorf("step %d: title %q, want its message last", i, bar.title)
		}
	}
	for _, c := range []struct {
		i    int
		fill string
	}{{1, colServer}, {4, colAgent}, {9, colFailed}, {10, colRunning}} {
		if got := bars[c.i].attr["fill"]; got != c.fill {
			t.Errorf("step %d (%s, %s): fill %q, want %q", c.i, steps[c.i].Name, steps[c.i].Outcome, got, c.fill)
		}
	}
	if bars[10].attr["stroke-dasharray"] == "" || bars[9].attr["stroke-dasharray"] != "" {
		t.Errorf("only the running bar is dashed: %v, %v", bars[10].attr, bars[9].attr)
	}
	for i, want := range map[int]string{
		1:  "kernel (server, ok): 1.50 s, 0.20–1.70 s, 12.0 MiB",
		0:  "script (server, ok): at 0.00 s\nlab",
		10: "root (server, running): 2.00 s, 7.00–9.00 s, 300.0 MiB",
	} {
		if bars[i].title != want {
			t.Errorf("step %d: title %q, want %q", i, bars[i].title, want)
		}
	}

	// Names in rows, the total, the ticks: round steps from "0 s" to at
	// least the total, each at its time on the bars' axis.
	txt := texts(elems)
	if !containsText(txt, "total 9.50 s") {
		t.Errorf("no total in %q", txt)
	}
	for _, st := range steps {
		if !containsText(txt, st.Name) {
			t.Errorf("no label %q in %q", st.Name, txt)
		}
	}
	var ticks []float64
	for _, e := range only(elems, "text") {
		v, ok := strings.CutSuffix(e.text, " s")
		if !ok || strings.HasPrefix(e.text, "total") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("tick %q: %v", e.text, err)
		}
		if x := e.num(t, "x"); math.Abs(x-(x0+k*f)) > tol {
			t.Errorf("tick %q at x %v, want %v", e.text, x, x0+k*f)
		}
		ticks = append(ticks, f)
	}
	if len(ticks) < 3 || ticks[0] != 0 || ticks[len(ticks)-1] < 9.5 {
		t.Fatalf("ticks %v: want from 0 past the total 9.5", ticks)
	}
	step := ticks[1]
	if step != niceStep(step, 1) {
		t.Errorf("tick step %v is not 1, 2 or 5 times a power of ten", step)
	}
	for i, f := range ticks {
		if math.Abs(f-float64(i)*step) > 1e-9 {
			t.Errorf("ticks %v: not evenly spaced", ticks)
			break
		}
	}
}

func containsText(txt []string, s string) bool {
	for _, t := range txt {
		if t == s {
			return true
		}
	}
	return false
}

func TestWaterfallWidth(t *testing.T) {
	steps := fullBootSteps()
	for _, w := range []int{0, MinWidth, 400, 1200, MaxWidth} {
		parse(t, render(t, steps, WaterfallOptions{Width: w}))
	}
	out := render(t, steps, WaterfallOptions{Width: 1200})
	if !bytes.Contains(out, []byte(`width="1200"`)) {
		t.Errorf("width 1200 not used: %.200s", out)
	}
	// The last bar ends within the picture, the same fraction of the
	// way whatever the width.
	end := func(w int) float64 {
		_, elems := parse(t, render(t, steps, WaterfallOptions{Width: w}))
		bars := only(elems, "rect")
		lower := bars[8]
		return (lower.num(t, "x") + lower.num(t, "width") - wfLabel) / (float64(w) - wfLabel - wfRight)
	}
	if a, b := end(DefaultWidth), end(1200); a <= 0 || a > 1 || b <= 0 || b > 1 {
		t.Errorf("lower ends at %v and %v of the axis", a, b)
	}
}

func TestWaterfallEscapes(t *testing.T) {
	hostile := []string{
		`<script>alert(1)</script>`,
		`"><svg onload=alert(1)>`,
		`' onmouseover='alert(1)`,
		"&amp; ]]> <!-- \x00 \xff\xfe \u2028",
	}
	var steps []Step
	for i, h := range hostile {
		steps = append(steps, Step{Lane: LaneAgent, Name: h, Start: float64(i), End: float64(i + 1), Outcome: OutcomeFailed, Message: h})
	}
	out := render(t, steps, WaterfallOptions{Title: hostile[0]})
	for _, raw := range []string{"<script", "<svg onload", "<!--", "onmouseover='", "]]>"} {
		if bytes.Contains(out, []byte(raw)) {
			t.Errorf("output carries %q unescaped:\n%s", raw, out)
		}
	}
	title, elems := parse(t, out)
	if title != hostile[0] {
		t.Errorf("title %q, want %q back", title, hostile[0])
	}
	bars := only(elems, "rect")
	for i, h := range hostile[:3] {
		if !strings.HasSuffix(bars[i].title, "\n"+h) {
			t.Errorf("bar %d title %q: want the message %q back as text", i, bars[i].title, h)
		}
		if !containsText(texts(elems), clip(h, 20)) { // long names are cut
			t.Errorf("no label %q as text", h)
		}
	}
	for _, e := range elems {
		for k := range e.attr {
			if strings.HasPrefix(k, "on") {
				t.Errorf("<%s> has attribute %s", e.name, k)
			}
		}
	}
}

func TestWaterfallEmpty(t *testing.T) {
	out := render(t, nil, WaterfallOptions{})
	_, elems := parse(t, out)
	if got := texts(elems); len(got) != 1 || got[0] != "no events" {
		t.Errorf("texts %q, want only \"no events\"", got)
	}
	if len(only(elems, "rect")) != 0 {
		t.Error("bars in an empty waterfall")
	}
}

func TestWaterfallErrors(t *testing.T) {
	good := fullBootSteps()
	tests := []struct {
		name  string
		steps []Step
		o     WaterfallOptions
		want  string
	}{
		{"narrow", good, WaterfallOptions{Width: 100}, "width 100"},
		{"negative width", good, WaterfallOptions{Width: -1}, "width -1"},
		{"ends before start", []Step{{Name: "kernel", Start: 2, End: 1}}, WaterfallOptions{}, `step 0 ("kernel"): ends at 1 before its start 2`},
		{"before the boot", []Step{{Name: "early", Start: -1, End: 1}}, WaterfallOptions{}, `step 0 ("early"): start -1`},
		{"NaN", []Step{{Name: "root", Start: 0, End: math.NaN()}}, WaterfallOptions{}, `step 0 ("root")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Waterfall(&b, tc.steps, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", b.Len())
			}
		})
	}
}

// A waterfall of a boot is a few kilobytes: the pages list many.
func TestWaterfallSize(t *testing.T) {
	var steps []Step
	for i := range 20 {
		steps = append(steps, Step{Lane: []string{LaneServer, LaneAgent}[i%2], Name: "phase" + strconv.Itoa(i), Start: float64(i), End: float64(i) + 0.75, Outcome: OutcomeOK, Bytes: int64(i) * MiB, Message: "eth0 10.0.0.5/24"})
	}
	out := render(t, steps, WaterfallOptions{})
	parse(t, out)
	if len(out) > 5000 {
		t.Errorf("20 steps take %d bytes, want at most 5000:\n%s", len(out), out)
	}
	t.Logf("20 steps: %d bytes", len(out))
}

// A failing writer's error is returned.
func TestWaterfallWriteError(t *testing.T) {
	want := errors.New("disk full")
	if err := Waterfall(failWriter{want}, fullBootSteps(), WaterfallOptions{}); !errors.Is(err, want) {
		t.Errorf("error %v, want %v", err, want)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestNiceStep(t *testing.T) {
	tests := []struct {
		span float64
		n    int
		want float64
	}{
		{9.5, 9, 2}, {10, 10, 1}, {60, 10, 10}, {61, 10, 10}, {0.3, 6, 0.05}, {1200, 8, 200}, {7, 7, 1}, {0, 5, 1}, {28, 20, 2},
	}
	for _, tc := range tests {
		if got := niceStep(tc.span, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tc.span, tc.n, got, tc.want)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 300 * MiB: "300.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
