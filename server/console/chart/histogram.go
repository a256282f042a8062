package chart

import (
	"fmt"
	"io"
	"math"
	"unicode/utf8"
)

// Series is one group of values of a histogram, e.g. one image's boots'
// seconds from script to switch_root.
type Series struct {
	Label  string
	Values []float64 // seconds
}

// HistogramOptions shape a histogram. The zero value is the default.
type HistogramOptions struct {
	Width    int     // pixels, 0 means DefaultWidth; at least MinWidth
	Height   int     // of the plot area, pixels; 0 means 160
	BinWidth float64 // seconds; 0 chooses 1, 2 or 5 times a power of ten for 8 to 21 bins
	Title    string  // the picture's accessible name (its <title>); "" for none
}

// MaxBins bounds a histogram's bins (a fixed BinWidth over a wide range
// could ask for millions).
const MaxBins = 200

// palette colours the series in turn.
var palette = []string{"#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777"}

// Geometry of a histogram, in pixels.
const (
	hgLeft   = 36.0 // room for the counts
	hgRight  = 14.0
	hgLegend = 16.0 // a legend row
	hgHeight = 160  // default plot height
)

// Histogram draws the values of every series as one SVG: bins shared by all
// series, each bin's counts stacked in series order and coloured by series
// with a legend, counts up the side and seconds along the bottom. Each bar's
// <title> reads "LABEL: 12 boots in 20–25 s". Series without values are
// left out; none with values draws a small picture saying "no boots in this
// window".
func Histogram(w io.Writer, series []Series, o HistogramOptions) error {
	width, err := pictureWidth(o.Width)
	if err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	ph := o.Height
	switch {
	case ph == 0:
		ph = hgHeight
	case ph < 40 || ph > 4096:
		return fmt.Errorf("histogram: height %d: want 40 to 4096 pixels, or 0 for %d", ph, hgHeight)
	}
	if o.BinWidth < 0 || !finite(o.BinWidth) {
		return fmt.Errorf("histogram: bin width %v: want positive seconds, or 0 to choose", o.BinWidth)
	}
	lo, hi, n := math.Inf(1), math.Inf(-1), 0
	for _, se := range series {
		for i, v := range se.Values {
			if !finite(v) {
				return fmt.Errorf("histogram: series %q: value %d is %v", se.Label, i, v)
			}
			lo, hi, n = min(lo, v), max(hi, v), n+1
		}
	}
	if n == 0 {
		return empty(w, width, o.Title, "no boots in this window")
	}

	bw := o.BinWidth
	if bw == 0 {
		bw = niceStep(hi-lo, 20)
		if hi == lo {
			bw = niceStep(max(math.Abs(hi), 1), 10)
		}
	}
	k0 := math.Floor(lo/bw + 1e-9)
	bins := int(math.Floor(hi/bw+1e-9)-k0) + 1
	if bins > MaxBins {
		return fmt.Errorf("histogram: bin width %v s over %v–%v s makes %d bins: at most %d", bw, lo, hi, bins, MaxBins)
	}
	counts := make([][]int, len(series))
	sums := make([]int, bins)
	for j, se := range series {
		counts[j] = make([]int, bins)
		for _, v := range se.Values {
			b := min(max(int(math.Floor(v/bw+1e-9)-k0), 0), bins-1)
			counts[j][b]++
			sums[b]++
		}
	}
	top := 0
	for _, c := range sums {
		top = max(top, c)
	}

	W := float64(width)
	plotW := W - hgLeft - hgRight

	// The legend flows over as many rows as it needs.
	type entry struct {
		x, y  float64
		label string
		col   string
	}
	var legend []entry
	x, y := hgLeft, 14.0
	for j, se := range series {
		if len(se.Values) == 0 {
			continue
		}
		l := clip(seriesLabel(se, j), 40)
		ew := 11 + 6.5*float64(utf8.RuneCountInString(l)) + 14
		if x > hgLeft && x+ew > W-hgRight {
			x, y = hgLeft, y+hgLegend
		}
		legend = append(legend, entry{x, y, l, palette[j%len(palette)]})
		x += ew
	}
	plotTop := y + 12
	plotBottom := plotTop + float64(ph)
	H := plotBottom + 20

	var s svg
	s.open(W, H, o.Title)
	for _, e := range legend {
		s.swatch(e.x+4, e.y-4, e.col)
		s.label(e.x+11, e.y, e.label)
	}

	ystep := max(1, niceStep(float64(top), 5))
	ymax := math.Ceil(float64(top)/ystep) * ystep
	ky := float64(ph) / ymax // pixels per count
	s.raw(`<path stroke="` + colGrid + `" d="`)
	for c := ystep; c <= ymax; c += ystep {
		s.raw("M")
		s.num(hgLeft)
		s.raw(" ")
		s.num(plotBottom - c*ky)
		s.raw("H")
		s.num(W - hgRight)
	}
	s.raw(`"/>`)
	s.raw(`<g fill="` + colMuted + `" text-anchor="end">`)
	for c := 0.0; c <= ymax; c += ystep {
		s.label(hgLeft-4, plotBottom-c*ky+4, seconds(c))
	}
	s.raw(`</g><g fill="` + colMuted + `" text-anchor="middle">`)

	binPx := plotW / float64(bins)
	every := int(math.Ceil(40 / binPx)) // a seconds label every this many edges
	for i := 0; i <= bins; i += every {
		s.label(hgLeft+float64(i)*binPx, plotBottom+14, seconds((k0+float64(i))*bw)+" s")
	}
	s.raw("</g>")

	gap := 0.0
	if binPx > 3 {
		gap = 1
	}
	for b := range bins {
		from, to := seconds((k0+float64(b))*bw), seconds((k0+float64(b)+1)*bw)
		stacked := 0
		for j, se := range series {
			c := counts[j][b]
			if c == 0 {
				continue
			}
			s.raw("<rect")
			s.attr("x", hgLeft+float64(b)*binPx+gap/2)
			s.attr("y", plotBottom-float64(stacked+c)*ky)
			s.attr("width", binPx-gap)
			s.attr("height", float64(c)*ky)
			s.raw(` fill="` + palette[j%len(palette)] + `"><title>`)
			noun := "boots"
			if c == 1 {
				noun = "boot"
			}
			s.text(fmt.Sprintf("%s: %d %s in %s–%s s", seriesLabel(se, j), c, noun, from, to))
			s.raw("</title></rect>")
			stacked += c
		}
	}
	s.raw(`<path stroke="` + colMuted + `" d="M`)
	s.num(hgLeft)
	s.raw(" ")
	s.num(plotBottom)
	s.raw("H")
	s.num(W - hgRight)
	s.raw(`"/></svg>`)
	return s.flush(w)
}

// seriesLabel names series j, which may have no label.
func seriesLabel(se Series, j int) string {
	if se.Label == "" {
		return fmt.Sprintf("series %d", j+1)
	}
	return se.Label
}
