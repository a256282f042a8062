package chart

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// svg builds one picture. Markup goes in through raw (constants only) and
// the number helpers; every other string goes through text, which escapes.
type svg struct{ b bytes.Buffer }

func (s *svg) raw(m string) { s.b.WriteString(m) }

// text writes t escaped for XML character data or an attribute value.
func (s *svg) text(t string) { _ = xml.EscapeText(&s.b, []byte(t)) } // a bytes.Buffer does not fail

// num writes x rounded to a tenth, without needless digits.
func (s *svg) num(x float64) {
	s.b.Write(strconv.AppendFloat(nil, math.Round(x*10)/10, 'f', -1, 64))
}

// attr writes name="x" for a number x; name is a constant.
func (s *svg) attr(name string, x float64) {
	s.raw(" " + name + `="`)
	s.num(x)
	s.raw(`"`)
}

// open writes the <svg> element and its accessible title.
func (s *svg) open(width, height float64, title string) {
	s.raw(`<svg xmlns="http://www.w3.org/2000/svg"`)
	s.attr("width", width)
	s.attr("height", height)
	s.raw(` viewBox="0 0 `)
	s.num(width)
	s.raw(" ")
	s.num(height)
	s.raw(`" font-family="sans-serif" font-size="11" role="img">`)
	if title != "" {
		s.raw("<title>")
		s.text(title)
		s.raw("</title>")
	}
}

// label writes a <text> at x, y; its anchor and colour are its group's.
func (s *svg) label(x, y float64, t string) {
	s.raw("<text")
	s.attr("x", x)
	s.attr("y", y)
	s.raw(">")
	s.text(t)
	s.raw("</text>")
}

// swatch writes a legend's coloured dot (a circle, so that every <rect>
// of a chart is a bar).
func (s *svg) swatch(x, y float64, fill string) {
	s.raw("<circle")
	s.attr("cx", x)
	s.attr("cy", y)
	s.attr("r", 4)
	s.raw(` fill="` + fill + `"/>`)
}

func (s *svg) flush(w io.Writer) error {
	_, err := w.Write(s.b.Bytes())
	return err
}

// empty writes a small picture saying msg.
func empty(w io.Writer, width int, title, msg string) error {
	var s svg
	s.open(float64(width), 30, title)
	s.raw(`<g text-anchor="middle" fill="` + colMuted + `">`)
	s.label(float64(width)/2, 19, msg)
	s.raw("</g>")
	s.raw("</svg>")
	return s.flush(w)
}

// niceStep is the smallest of 1, 2 or 5 times a power of ten that splits
// span into at most n parts.
func niceStep(span float64, n int) float64 {
	if !(span > 0) || n < 1 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// seconds formats a tick value of a nice step: "0", "2.5", "10".
func seconds(x float64) string {
	return strconv.FormatFloat(math.Round(x*1e6)/1e6, 'f', -1, 64)
}

// size is n bytes for a person: "512 B", "1.5 KiB", "45.6 MiB".
func size(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || u == "TiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	panic("unreachable")
}

// clip shortens t to at most n runes, marking the cut.
func clip(t string, n int) string {
	if utf8.RuneCountInString(t) <= n {
		return t
	}
	r := []rune(t)
	return string(r[:n-1]) + "…"
}

// finite reports whether x is neither NaN nor infinite.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
