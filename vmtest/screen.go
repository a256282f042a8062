package vmtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Screen is one screendump: RGB pixels, row by row.
type Screen struct {
	W, H int
	Pix  []byte // 3 bytes a pixel
}

// RGB is one pixel's colour.
type RGB struct{ R, G, B uint8 }

func (c RGB) String() string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

// At returns the colour of pixel (x, y).
func (s *Screen) At(x, y int) RGB {
	i := (y*s.W + x) * 3
	return RGB{s.Pix[i], s.Pix[i+1], s.Pix[i+2]}
}

// DecodePPM reads a binary PPM (P6) with a maxval of 255, as QEMU's
// screendump writes it.
func DecodePPM(r io.Reader) (*Screen, error) {
	br := bufio.NewReader(r)
	// The header: magic, width, height, maxval, separated by whitespace
	// (comments allowed), then exactly one whitespace byte.
	var fields []int
	magic := make([]byte, 2)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "P6" {
		return nil, fmt.Errorf("ppm: not a binary PPM (P6)")
	}
	for len(fields) < 3 {
		c, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("ppm: header: %w", err)
		}
		switch {
		case c == '#':
			if _, err := br.ReadString('\n'); err != nil {
				return nil, fmt.Errorf("ppm: header comment: %w", err)
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		case c >= '0' && c <= '9':
			n := int(c - '0')
			for {
				c, err = br.ReadByte()
				if err != nil {
					return nil, fmt.Errorf("ppm: header: %w", err)
				}
				if c < '0' || c > '9' {
					break
				}
				if n = n*10 + int(c-'0'); n > 1<<16 {
					return nil, errors.New("ppm: header number too large")
				}
			}
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				return nil, fmt.Errorf("ppm: header: unexpected %q after a number", c)
			}
			fields = append(fields, n)
		default:
			return nil, fmt.Errorf("ppm: header: unexpected %q", c)
		}
	}
	w, h, maxval := fields[0], fields[1], fields[2]
	if maxval != 255 {
		return nil, fmt.Errorf("ppm: maxval %d: only 255 (one byte a sample) is supported", maxval)
	}
	if w <= 0 || h <= 0 || w*h > 1<<26 {
		return nil, fmt.Errorf("ppm: bad size %dx%d", w, h)
	}
	s := &Screen{W: w, H: h, Pix: make([]byte, w*h*3)}
	if _, err := io.ReadFull(br, s.Pix); err != nil {
		return nil, fmt.Errorf("ppm: pixels: %w", err)
	}
	return s, nil
}

// ReadPPM reads a PPM file.
func ReadPPM(path string) (*Screen, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodePPM(f)
}

// Image returns the screen as an image.
func (s *Screen) Image() image.Image {
	img := image.NewRGBA(image.Rect(0, 0, s.W, s.H))
	for y := 0; y < s.H; y++ {
		for x := 0; x < s.W; x++ {
			c := s.At(x, y)
			img.SetRGBA(x, y, color.RGBA{c.R, c.G, c.B, 255})
		}
	}
	return img
}

// WritePNG writes the screen as a PNG file, for people to look at.
func (s *Screen) WritePNG(path string) error {
	var b bytes.Buffer
	if err := png.Encode(&b, s.Image()); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Reading the screen. In VGA text mode (what the BIOS and iPXE use) every
// character is drawn from the 8x16 font the VGA BIOS loaded into the card,
// in cells 9 pixels wide (the ninth column is the background, except for
// the line-drawing characters 0xC0-0xDF) or 8. The same font, taken from
// the very ROM file QEMU loads, turns each cell's pixels back into its
// character exactly: no guessing, no trained OCR.

// Font maps the 16 rows of a glyph (one byte each, bit 7 the leftmost
// pixel) to its character.
type Font struct {
	glyphs map[[16]byte]rune
	top    map[[cursorRow]byte]rune // rows above the cursor only
}

// cursorRow is the first row of the text cursor (an underline on rows
// 14-15 of the cell in mode 3): a cell under it is matched without them.
const cursorRow = 14

// glyphA is the VGA font's "A": how the font is found in a ROM.
var glyphA = [16]byte{0x00, 0x00, 0x10, 0x38, 0x6c, 0xc6, 0xc6, 0xfe, 0xc6, 0xc6, 0xc6, 0xc6, 0x00, 0x00, 0x00, 0x00}

// FontFromROM finds the 256-glyph 8x16 font in a VGA BIOS image.
func FontFromROM(rom []byte) (*Font, error) {
	i := bytes.Index(rom, glyphA[:])
	if i < 0 || bytes.Contains(rom[i+1:], glyphA[:]) {
		return nil, errors.New("vga font: no single 8x16 font in the ROM")
	}
	start := i - 'A'*16
	if start < 0 || start+256*16 > len(rom) {
		return nil, errors.New("vga font: the font is cut off in the ROM")
	}
	f := &Font{glyphs: map[[16]byte]rune{}, top: map[[cursorRow]byte]rune{}}
	add := func(code int, r rune) {
		var g [16]byte
		copy(g[:], rom[start+code*16:])
		if _, ok := f.glyphs[g]; !ok {
			f.glyphs[g] = r
		}
		var t [cursorRow]byte
		copy(t[:], g[:])
		if _, ok := f.top[t]; !ok {
			f.top[t] = r
		}
	}
	// Printable ASCII first: it wins over look-alikes and blanks (0x00,
	// 0xFF) elsewhere in the table.
	for c := 0x20; c < 0x7f; c++ {
		add(c, rune(c))
	}
	for c := 0; c < 256; c++ {
		if c < 0x20 || c >= 0x7f {
			add(c, NonASCII)
		}
	}
	if f.glyphs[[16]byte{}] != ' ' {
		return nil, errors.New("vga font: the space is not blank: not a VGA font")
	}
	return f, nil
}

// NonASCII stands for a character outside printable ASCII (line drawing,
// accented letters) in the text read from a screen.
const NonASCII = '\uFFFD'

// Unreadable stands for a cell no glyph of the font matches (more than two
// colours, or a graphics screen).
const Unreadable = '\u2592'

// LoadVGAFont reads the font of the standard VGA card's BIOS
// (vgabios-stdvga.bin), from the first of QEMU's firmware directories
// (qemu -L help) that has it.
func LoadVGAFont(qemu string) (*Font, error) {
	path, err := VGABIOS(qemu)
	if err != nil {
		return nil, err
	}
	rom, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := FontFromROM(rom)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// VGABIOS returns the path of the ROM QEMU loads for its "VGA" device.
func VGABIOS(qemu string) (string, error) {
	if qemu == "" {
		qemu = Options{}.Program()
	}
	out, err := exec.Command(qemu, "-L", "help").Output()
	if err != nil {
		return "", fmt.Errorf("vga font: %s -L help: %w", qemu, err)
	}
	dirs := strings.Fields(string(out))
	for _, dir := range dirs {
		p := filepath.Join(dir, "vgabios-stdvga.bin")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("vga font: no vgabios-stdvga.bin in %s's firmware directories %q", qemu, dirs)
}

// Cell is one character of a text screen and its colours.
type Cell struct {
	Ch     rune // ' ' for a blank cell, Unreadable for one no glyph matches
	FG, BG RGB
}

// Text is a text-mode screen read back into characters.
type Text struct {
	Rows, Cols int
	Cells      [][]Cell
	Unknown    int // cells that matched no glyph (drawn with more than two colours, or not from the font)
}

// Read reads a text-mode screen: rows 16 pixels high, columns 9 pixels
// wide (or 8), 40 to 132 of them; mode 3, iPXE's, is 80x25 cells of 9x16
// (720x400). It fails on a screen whose size is no such grid (graphics).
func (f *Font) Read(s *Screen) (*Text, error) {
	if s.H%16 != 0 {
		return nil, fmt.Errorf("screen %dx%d: not a text mode of 16-pixel rows", s.W, s.H)
	}
	cw := 0
	switch {
	case s.W%9 == 0 && s.W/9 <= 132 && s.W/9 >= 40:
		cw = 9
	case s.W%8 == 0 && s.W/8 <= 132 && s.W/8 >= 40:
		cw = 8
	default:
		return nil, fmt.Errorf("screen %dx%d: not a text mode of 8- or 9-pixel columns", s.W, s.H)
	}
	t := &Text{Rows: s.H / 16, Cols: s.W / cw}
	for r := 0; r < t.Rows; r++ {
		row := make([]Cell, t.Cols)
		for c := range row {
			row[c] = f.cell(s, c*cw, r*16, cw)
			if row[c].Ch == Unreadable {
				t.Unknown++
			}
		}
		t.Cells = append(t.Cells, row)
	}
	return t, nil
}

// bitmap is the cell's glyph: the pixels (of its first 8 columns) that are
// not bg, and the colour they have.
func bitmap(s *Screen, x0, y0 int, bg RGB) (g [16]byte, fg RGB) {
	for y := 0; y < 16; y++ {
		for x := 0; x < 8; x++ {
			if p := s.At(x0+x, y0+y); p != bg {
				g[y] |= 0x80 >> x
				fg = p
			}
		}
	}
	return g, fg
}

func (f *Font) cell(s *Screen, x0, y0, cw int) Cell {
	// The colours of the cell, most frequent first.
	counts := map[RGB]int{}
	for y := 0; y < 16; y++ {
		for x := 0; x < cw; x++ {
			counts[s.At(x0+x, y0+y)]++
		}
	}
	var cols []RGB
	for c := range counts {
		cols = append(cols, c)
	}
	if len(cols) == 1 {
		return Cell{Ch: ' ', FG: cols[0], BG: cols[0]}
	}
	if len(cols) > 2 {
		return Cell{Ch: Unreadable, BG: mostFrequent(counts)}
	}
	// Two colours: the background is the ninth column's (9-pixel cells),
	// else the more frequent; the other choice is tried too (line
	// drawing, inverse glyphs).
	first := mostFrequent(counts)
	if cw == 9 {
		col := map[RGB]int{}
		for y := 0; y < 16; y++ {
			col[s.At(x0+8, y0+y)]++
		}
		first = mostFrequent(col)
	}
	second := cols[0]
	if second == first {
		second = cols[1]
	}
	for _, bg := range []RGB{first, second} {
		g, fg := bitmap(s, x0, y0, bg)
		if r, ok := f.glyphs[g]; ok {
			return Cell{Ch: r, FG: fg, BG: bg}
		}
	}
	// The cursor underlines one cell: match it without its rows.
	for _, bg := range []RGB{first, second} {
		g, fg := bitmap(s, x0, y0, bg)
		var t [cursorRow]byte
		copy(t[:], g[:])
		if r, ok := f.top[t]; ok {
			return Cell{Ch: r, FG: fg, BG: bg}
		}
	}
	return Cell{Ch: Unreadable, BG: first}
}

func mostFrequent(counts map[RGB]int) RGB {
	var best RGB
	n := -1
	for c, k := range counts {
		// Ties: the darker colour, so the result does not depend on
		// map order.
		if k > n || k == n && int(c.R)+int(c.G)+int(c.B) < int(best.R)+int(best.G)+int(best.B) {
			best, n = c, k
		}
	}
	return best
}

// Line returns row r as text, trailing blanks removed.
func (t *Text) Line(r int) string {
	var b strings.Builder
	for _, c := range t.Cells[r] {
		b.WriteRune(c.Ch)
	}
	return strings.TrimRight(b.String(), " ")
}

// Lines returns every row as text.
func (t *Text) Lines() []string {
	out := make([]string, t.Rows)
	for r := range out {
		out[r] = t.Line(r)
	}
	return out
}

// String is the screen's text, its blank rows at the end removed.
func (t *Text) String() string {
	return strings.TrimRight(strings.Join(t.Lines(), "\n"), "\n")
}

// Find returns the row and column where s first appears on one row.
func (t *Text) Find(s string) (row, col int, ok bool) {
	for r := 0; r < t.Rows; r++ {
		line := t.Line(r)
		if i := strings.Index(line, s); i >= 0 {
			return r, utf8.RuneCountInString(line[:i]), true
		}
	}
	return 0, 0, false
}

// Contains reports whether s appears on one row of the screen.
func (t *Text) Contains(s string) bool {
	_, _, ok := t.Find(s)
	return ok
}

// RowBG returns the most frequent background colour of row r between
// columns from and to (exclusive).
func (t *Text) RowBG(r, from, to int) RGB {
	counts := map[RGB]int{}
	for c := max(from, 0); c < min(to, t.Cols); c++ {
		counts[t.Cells[r][c].BG]++
	}
	return mostFrequent(counts)
}
