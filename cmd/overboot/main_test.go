package main

import (
	"flag"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantPos []string
		wantO   string
		wantQ   bool
	}{
		{[]string{"-o", "f", "src"}, []string{"src"}, "f", false},
		{[]string{"src", "-o", "f", "-q"}, []string{"src"}, "f", true},
		{[]string{"a", "b", "-q"}, []string{"a", "b"}, "", true},
		{[]string{"-q", "--", "-o"}, []string{"-o"}, "", true},
		{nil, nil, "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := fs.String("o", "", "")
		q := fs.Bool("q", false, "")
		pos, err := parseFlags(fs, tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if d := cmp.Diff(tc.wantPos, pos); d != "" || *o != tc.wantO || *q != tc.wantQ {
			t.Errorf("%q: -o %q -q %v, positionals (-want +got):\n%s", tc.args, *o, *q, d)
		}
	}
}
