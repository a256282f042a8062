package vmtest

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/internal/testneed"
)

func TestDecodePPM(t *testing.T) {
	s, err := DecodePPM(strings.NewReader("P6\n# by QEMU\n2 1\n255\n\x01\x02\x03\xff\x00\x80"))
	if err != nil {
		t.Fatal(err)
	}
	if s.W != 2 || s.H != 1 || s.At(0, 0) != (RGB{1, 2, 3}) || s.At(1, 0) != (RGB{255, 0, 128}) {
		t.Errorf("decoded %+v", s)
	}
	for _, bad := range []string{
		"P3\n1 1\n255\n0 0 0",          // ASCII PPM
		"P6\n1 1\n65535\n\x00\x00\x00", // two bytes a sample
		"P6\n2 2\n255\n\x00\x00\x00",   // cut short
		"P6\n0 1\n255\n",
		"P6\n1x1\n255\n\x00\x00\x00",
	} {
		if _, err := DecodePPM(strings.NewReader(bad)); err == nil {
			t.Errorf("DecodePPM(%q): no error", bad)
		}
	}
}

func TestWritePNG(t *testing.T) {
	s := &Screen{W: 2, H: 2, Pix: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}
	p := filepath.Join(t.TempDir(), "s.png")
	if err := s.WritePNG(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r, g, b, _ := img.At(1, 1).RGBA(); r>>8 != 10 || g>>8 != 11 || b>>8 != 12 {
		t.Errorf("pixel (1,1) = %d %d %d", r>>8, g>>8, b>>8)
	}
}

// testROM is a VGA BIOS image whose font has the real "A" (how the font
// is found) and, for every other printable character, some unique glyph.
func testROM() []byte {
	rom := bytes.Repeat([]byte{0x5a}, 100) // code before the font
	for c := 0; c < 256; c++ {
		var g [16]byte
		switch {
		case c == 'A':
			g = glyphA
		case c == 0 || c == ' ' || c == 0xff:
		default:
			g[3], g[4], g[5], g[9] = byte(c), ^byte(c), byte(c*7), 0x81
		}
		rom = append(rom, g[:]...)
	}
	return append(rom, 0x5a, 0x5a)
}

// render draws lines in VGA text mode from rom's font: 9x16 cells, the
// ninth column background; row r's colours are cols[r] (fg, bg).
func render(rom []byte, rows, cols int, lines []string, colours map[int][2]RGB) *Screen {
	start := bytes.Index(rom, glyphA[:]) - 'A'*16
	s := &Screen{W: cols * 9, H: rows * 16, Pix: make([]byte, cols*9*rows*16*3)}
	set := func(x, y int, c RGB) {
		i := (y*s.W + x) * 3
		s.Pix[i], s.Pix[i+1], s.Pix[i+2] = c.R, c.G, c.B
	}
	for r := 0; r < rows; r++ {
		fg, bg := RGB{0xa8, 0xa8, 0xa8}, RGB{}
		if c, ok := colours[r]; ok {
			fg, bg = c[0], c[1]
		}
		line := ""
		if r < len(lines) {
			line = lines[r]
		}
		for c := 0; c < cols; c++ {
			ch := byte(' ')
			if c < len(line) {
				ch = line[c]
			}
			g := rom[start+int(ch)*16:]
			for y := 0; y < 16; y++ {
				for x := 0; x < 9; x++ {
					col := bg
					if x < 8 && g[y]&(0x80>>x) != 0 {
						col = fg
					}
					set(c*9+x, r*16+y, col)
				}
			}
		}
	}
	return s
}

func TestReadText(t *testing.T) {
	rom := testROM()
	f, err := FontFromROM(rom)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{"", "   overboot: menu", "", "   Log in (your own root)       (59)", "   Boot guest", "Username:", "alice_______"}
	red, blue, white := RGB{0xa8, 0, 0}, RGB{0, 0, 0xa8}, RGB{0xfc, 0xfc, 0xfc}
	s := render(rom, 25, 80, lines, map[int][2]RGB{3: {white, red}, 4: {white, blue}})
	// The cursor underlines a blank cell.
	for x := 0; x < 9; x++ {
		for y := 14; y < 16; y++ {
			i := ((6*16+y)*s.W + 20*9 + x) * 3
			s.Pix[i], s.Pix[i+1], s.Pix[i+2] = 0xa8, 0xa8, 0xa8
		}
	}
	x, err := f.Read(s)
	if err != nil {
		t.Fatal(err)
	}
	if x.Rows != 25 || x.Cols != 80 || x.Unknown != 0 {
		t.Errorf("read %dx%d, %d unknown cells", x.Cols, x.Rows, x.Unknown)
	}
	if d := cmp.Diff(strings.Join(lines, "\n"), x.String()); d != "" {
		t.Errorf("text (-want +got):\n%s", d)
	}
	r, c, ok := x.Find("Boot guest")
	if !ok || r != 4 || c != 3 {
		t.Errorf("Find: %d %d %v", r, c, ok)
	}
	if bg := x.RowBG(3, 3, 25); bg != red {
		t.Errorf("highlighted row: background %s", bg)
	}
	if bg := x.RowBG(4, 3, 13); bg != blue {
		t.Errorf("other row: background %s", bg)
	}
	if c := x.Cells[3][3]; c.Ch != 'L' || c.FG != white {
		t.Errorf("cell: %+v", c)
	}
	// A screen that is no text grid, and a cell of three colours.
	if _, err := f.Read(&Screen{W: 800, H: 600, Pix: make([]byte, 800*600*3)}); err == nil {
		t.Errorf("Read of 800x600: no error")
	}
	s.Pix[0], s.Pix[3] = 0x11, 0x22
	if x, _ := f.Read(s); x.Unknown != 1 || x.Cells[0][0].Ch != Unreadable {
		t.Errorf("three colours: %d unknown, cell %q", x.Unknown, x.Cells[0][0].Ch)
	}
}

func TestFontFromROM(t *testing.T) {
	rom := testROM()
	for name, bad := range map[string][]byte{
		"no font":  bytes.Repeat([]byte{1}, 8192),
		"two":      append(append([]byte(nil), rom...), glyphA[:]...),
		"cut":      rom[:bytes.Index(rom, glyphA[:])+16*10],
		"no blank": bytes.Replace(rom, make([]byte, 16), bytes.Repeat([]byte{1}, 16), -1),
	} {
		if _, err := FontFromROM(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestVGAFontQEMU reads text drawn with the font of the ROM QEMU loads,
// which is what TestLoginMenu relies on.
func TestVGAFontQEMU(t *testing.T) {
	path, err := VGABIOS(testneed.Tool(t, Options{}.Program()))
	if err != nil {
		t.Fatal(err)
	}
	rom, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := FontFromROM(rom)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for c := byte(0x20); c < 0x7f; c++ {
		all = append(all, c)
	}
	lines := []string{string(all[:64]), string(all[64:]), "Wrong username or password: try again"}
	x, err := f.Read(render(rom, 25, 80, lines, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(strings.Join(lines, "\n"), x.String()); d != "" {
		t.Errorf("text (-want +got):\n%s", d)
	}
}
