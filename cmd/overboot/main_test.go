package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestMachineCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		if strings.Contains(r.URL.Path, "99") {
			http.Error(w, "no such machine", http.StatusNotFound)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	ctx := context.Background()
	t.Setenv("OVERBOOT_TOKEN", "obt_test")
	for _, args := range [][]string{{"reset", "52:54:00:00:00:01"}, {"rotate", "52:54:00:00:00:01"}, {"delete", "52:54:00:00:00:01"}} {
		if err := runMachine(ctx, append(args, "-server", srv.URL), io.Discard, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	want := []string{"POST /api/v1/machines/52:54:00:00:00:01/reset", "POST /api/v1/machines/52:54:00:00:00:01/rotate", "DELETE /api/v1/machines/52:54:00:00:00:01"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
	if err := runMachine(ctx, []string{"reset", "52:54:00:00:00:99", "-server", srv.URL}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no such machine") {
		t.Errorf("404 not reported: %v", err)
	}
	if err := runMachine(ctx, []string{"explode", "x"}, io.Discard, io.Discard); !errors.As(err, new(usageError)) {
		t.Errorf("bad action: %v", err)
	}
}
