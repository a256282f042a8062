package chart

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func histogram(t *testing.T, series []Series, o HistogramOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Histogram(&b, series, o); err != nil {
		t.Fatalf("Histogram: %v", err)
	}
	return b.Bytes()
}

// hbar is a bar parsed back: its place and its tooltip.
type hbar struct {
	x, y, w, h float64
	title      string
}

func hbars(t *testing.T, elems []element) []hbar {
	t.Helper()
	var out []hbar
	for _, e := range only(elems, "rect") {
		out = append(out, hbar{e.num(t, "x"), e.num(t, "y"), e.num(t, "width"), e.num(t, "height"), e.title})
	}
	return out
}

func TestHistogram(t *testing.T) {
	series := []Series{
		{"image a", []float64{12, 14, 21, 22, 23}},
		{"no boots", nil},
		{"image b", []float64{22.5, 40}},
	}
	// Values 12 to 40 s: bins of 2 s (14 parts of 28 s; 1 s would make
	// 29 bins) from 12 to 42 s, i.e. 15 bins.
	out := histogram(t, series, HistogramOptions{})
	_, elems := parse(t, out)
	bars := hbars(t, elems)
	var titles []string
	for _, b := range bars {
		titles = append(titles, b.title)
	}
	want := []string{
		"image a: 1 boot in 12–14 s",
		"image a: 1 boot in 14–16 s",
		"image a: 1 boot in 20–22 s",
		"image a: 2 boots in 22–24 s",
		"image b: 1 boot in 22–24 s",
		"image b: 1 boot in 40–42 s",
	}
	if diff := cmp.Diff(want, titles); diff != "" {
		t.Fatalf("bars (-want +got):\n%s", diff)
	}
	counts := []float64{1, 1, 1, 2, 1, 1}
	bins := []float64{0, 1, 4, 5, 5, 14} // (start-12)/2

	// Same width, x by bin, height by count, stacked in series order.
	binPx := (bars[5].x - bars[0].x) / 14
	perCount := bars[0].h
	for i, b := range bars {
		if math.Abs(b.w-bars[0].w) > 0.11 {
			t.Errorf("bar %d: width %v, want %v like the others", i, b.w, bars[0].w)
		}
		if want := bars[0].x + bins[i]*binPx; math.Abs(b.x-want) > 0.11 {
			t.Errorf("bar %d (%s): x %v, want %v", i, b.title, b.x, want)
		}
		if want := counts[i] * perCount; math.Abs(b.h-want) > 0.11 {
			t.Errorf("bar %d (%s): height %v, want %v", i, b.title, b.h, want)
		}
	}
	if got, want := bars[4].y+bars[4].h, bars[3].y; math.Abs(got-want) > 0.11 {
		t.Errorf("image b's 22–24 s bar ends at %v, want on top of image a's at %v", got, want)
	}
	if got, want := bars[0].y+bars[0].h, bars[3].y+bars[3].h; got != want {
		t.Errorf("bars stand on %v and %v, want one baseline", got, want)
	}
	// 15 bins over the plot's width: the last bin's right edge is
	// where the 42 s label is, at the axis's end.
	if got := math.Round(binPx*15*10) / 10; math.Abs(got-(DefaultWidth-hgLeft-hgRight)) > 1.6 {
		t.Errorf("15 bins span %v pixels, want the plot's %v", got, DefaultWidth-hgLeft-hgRight)
	}

	txt := texts(elems)
	for _, l := range []string{"image a", "image b", "12 s", "42 s", "0", "2"} {
		if !containsText(txt, l) {
			t.Errorf("no text %q in %q", l, txt)
		}
	}
	if containsText(txt, "no boots") {
		t.Errorf("a series without values in the legend: %q", txt)
	}
	if n := len(only(elems, "circle")); n != 2 {
		t.Errorf("%d legend entries, want 2", n)
	}
}

func TestHistogramBins(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		o      HistogramOptions
		want   []string
	}{
		{"fixed width", []float64{20, 21, 24.9, 25, 38}, HistogramOptions{BinWidth: 5}, []string{
			"x: 3 boots in 20–25 s", "x: 1 boot in 25–30 s", "x: 1 boot in 35–40 s",
		}},
		// 0.3/0.1 is 2.9999999999999996 in floating point: still the
		// 0.3–0.4 s bin.
		{"edges", []float64{0.3, 0.35, 0.1}, HistogramOptions{BinWidth: 0.1}, []string{
			"x: 1 boot in 0.1–0.2 s", "x: 2 boots in 0.3–0.4 s",
		}},
		{"one value", []float64{42, 42}, HistogramOptions{}, []string{"x: 2 boots in 40–45 s"}},
		{"zero", []float64{0}, HistogramOptions{}, []string{"x: 1 boot in 0–0.1 s"}},
		{"fine", []float64{1.05, 1.95}, HistogramOptions{}, []string{"x: 1 boot in 1.05–1.1 s", "x: 1 boot in 1.95–2 s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, elems := parse(t, histogram(t, []Series{{"x", tc.values}}, tc.o))
			var got []string
			for _, b := range hbars(t, elems) {
				got = append(got, b.title)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("bars (-want +got):\n%s", diff)
			}
		})
	}
}

// Automatic bins number about 10 to 20 whatever the spread.
func TestHistogramBinCount(t *testing.T) {
	for _, spread := range []float64{0.7, 3, 9, 10, 28, 61, 99, 140, 1000, 12345} {
		var values []float64
		for i := range 50 {
			values = append(values, 5+spread*float64(i)/49)
		}
		_, elems := parse(t, histogram(t, []Series{{"x", values}}, HistogramOptions{}))
		bars := hbars(t, elems)
		span := bars[len(bars)-1].x + bars[len(bars)-1].w - bars[0].x
		bins := math.Round((span + 1) / (bars[0].w + 1)) // bars 1 pixel apart
		if bins < 8 || bins > 21 {
			t.Errorf("spread %v s: %v bins", spread, bins)
		}
	}
}

func TestHistogramEscapes(t *testing.T) {
	label := `<script>alert(1)</script>"><svg onload=alert(1)>`
	out := histogram(t, []Series{{label, []float64{1, 2, 3}}}, HistogramOptions{Title: label})
	for _, raw := range []string{"<script", "<svg onload"} {
		if bytes.Contains(out, []byte(raw)) {
			t.Errorf("output carries %q unescaped:\n%s", raw, out)
		}
	}
	title, elems := parse(t, out)
	if title != label {
		t.Errorf("title %q, want %q", title, label)
	}
	for _, b := range hbars(t, elems) {
		if !strings.HasPrefix(b.title, label+": ") {
			t.Errorf("bar title %q, want the label back as text", b.title)
		}
	}
	if !containsText(texts(elems), clip(label, 40)) {
		t.Errorf("legend %q, want the label as text", texts(elems))
	}
}

func TestHistogramEmpty(t *testing.T) {
	for _, series := range [][]Series{nil, {{"a", nil}, {"b", []float64{}}}} {
		_, elems := parse(t, histogram(t, series, HistogramOptions{}))
		if got := texts(elems); len(got) != 1 || got[0] != "no boots in this window" {
			t.Errorf("%v: texts %q, want only \"no boots in this window\"", series, got)
		}
	}
}

// Many series: the legend wraps and the plot moves down below it.
func TestHistogramLegendWraps(t *testing.T) {
	var series []Series
	for i := range 12 {
		series = append(series, Series{strings.Repeat("image ", 3) + string(rune('a'+i)), []float64{float64(i)}})
	}
	_, elems := parse(t, histogram(t, series, HistogramOptions{Width: 400}))
	rows := map[string]bool{}
	for _, c := range only(elems, "circle") {
		rows[c.attr["cy"]] = true
		if c.num(t, "cx") > 400 {
			t.Errorf("legend entry at x %v, outside the picture", c.num(t, "cx"))
		}
	}
	if len(rows) < 3 {
		t.Errorf("legend on %d rows, want it to wrap", len(rows))
	}
	var lowest float64
	for _, c := range only(elems, "circle") {
		lowest = max(lowest, c.num(t, "cy"))
	}
	for _, b := range hbars(t, elems) {
		if b.y < lowest {
			t.Errorf("bar at y %v above the legend's last row at %v", b.y, lowest)
		}
	}
}

func TestHistogramErrors(t *testing.T) {
	good := []Series{{"a", []float64{1, 2}}}
	tests := []struct {
		name   string
		series []Series
		o      HistogramOptions
		want   string
	}{
		{"NaN", []Series{{"img", []float64{1, math.NaN()}}}, HistogramOptions{}, `series "img": value 1 is NaN`},
		{"infinite", []Series{{"img", []float64{math.Inf(1)}}}, HistogramOptions{}, `series "img": value 0 is +Inf`},
		{"negative bin", good, HistogramOptions{BinWidth: -1}, "bin width -1"},
		{"too many bins", []Series{{"a", []float64{0, 1000}}}, HistogramOptions{BinWidth: 0.1}, "makes 10001 bins"},
		{"width", good, HistogramOptions{Width: 10}, "width 10"},
		{"height", good, HistogramOptions{Height: 5}, "height 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Histogram(&b, tc.series, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", b.Len())
			}
		})
	}
}
