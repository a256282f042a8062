package fetch

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     contentRange
		bad      bool
	}{
		{name: "whole", in: "bytes 0-99/100", want: contentRange{0, 99, 100}},
		{name: "middle", in: "bytes 262144-524287/7340032", want: contentRange{262144, 524287, 7340032}},
		{name: "resumed", in: "bytes 10-19/20", want: contentRange{10, 19, 20}},
		{name: "one byte", in: "bytes 5-5/6", want: contentRange{5, 5, 6}},
		{name: "unknown total", in: "bytes 0-9/*", want: contentRange{0, 9, -1}},
		{name: "unsatisfied", in: "bytes */4096", want: contentRange{-1, -1, 4096}},
		{name: "empty image", in: "bytes */0", want: contentRange{-1, -1, 0}},
		{name: "unit case", in: "BYTES 0-0/1", want: contentRange{0, 0, 1}},
		{name: "empty", in: "", bad: true},
		{name: "other unit", in: "items 0-1/2", bad: true},
		{name: "no total", in: "bytes 0-1", bad: true},
		{name: "no dash", in: "bytes 01/2", bad: true},
		{name: "star star", in: "bytes */*", bad: true},
		{name: "last before first", in: "bytes 5-4/10", bad: true},
		{name: "last at total", in: "bytes 0-10/10", bad: true},
		{name: "beyond the total", in: "bytes 10-19/15", bad: true},
		{name: "sign", in: "bytes +0-5/10", bad: true},
		{name: "negative", in: "bytes -1-5/10", bad: true},
		{name: "space", in: "bytes 0 -5/10", bad: true},
		{name: "two spaces", in: "bytes  0-5/10", bad: true},
		{name: "overflow", in: "bytes 0-5/99999999999999999999", bad: true},
		{name: "hex", in: "bytes 0x0-5/10", bad: true},
		{name: "trailing", in: "bytes 0-5/10 ", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseContentRange(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseContentRange(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseContentRange(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes */0", "bytes 0-9/*", "bytes 5-4/10", "bytes +0-5/10", "bytes 0-18446744073709551615/1", "Bytes 1-1/2", "bytes 0-0/1", "bytes 5-9/*", "bytes 9-5/3", "bytes x-y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		switch {
		case cr.First < 0:
			if cr.First != -1 || cr.Last != -1 || cr.Total < 0 {
				t.Fatalf("%q: bad unsatisfied range %+v", s, cr)
			}
		case cr.Last < cr.First:
			t.Fatalf("%q: last before first: %+v", s, cr)
		case cr.Total >= 0 && cr.Last >= cr.Total:
			t.Fatalf("%q: beyond the total: %+v", s, cr)
		case cr.Total < -1:
			t.Fatalf("%q: bad total: %+v", s, cr)
		}
		// What parses formats back to something that parses the same.
		again, err := parseContentRange(cr.String())
		if err != nil {
			t.Fatalf("%q parsed as %+v, whose String %q does not parse: %v", s, cr, cr.String(), err)
		}
		if again != cr {
			t.Fatalf("%q: %+v, then %+v", s, cr, again)
		}
	})
}
