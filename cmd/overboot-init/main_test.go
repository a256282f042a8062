package main

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the plans printed now")

const digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// TestDryRun compares whole printed plans with testdata/NAME.golden: the
// plan the boot runs (initagent.Plan), as -dry-run prints it.
func TestDryRun(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"static", []string{"-cmdline", "overboot.lower=http://10.0.2.100/img overboot.digest=" + digest + " overboot.size=5000000 overboot.report=http://s/report/tok-0123456789"}},
		{"static-secret-url", []string{"-cmdline", "overboot.lower=http://u:pw@10.0.2.100/img?sig=presigned-0123456789 overboot.digest=" + digest}},
		{"document-without-file", []string{"-cmdline", "overboot.doc=http://s/doc/tok-0123456789 overboot.report=http://s/report/tok-0123456789"}},
		{"document", []string{"-cmdline", "overboot.doc=http://s/doc/tok-0123456789", "-doc", "testdata/document.json"}},
		{"document-modules", []string{"-cmdline", "overboot.doc=http://s/doc/tok-0123456789 overboot.modules=ext4,foo"}},
		{"disk", []string{"-cmdline", "overboot.root=ibft:2 overboot.report=http://s/r/tok-0123456789"}},
		{"static-lazy", []string{"-cmdline", "overboot.lower=http://10.0.2.100/img overboot.digest=" + digest + " overboot.size=1048576 overboot.lower.mode=lazy overboot.verity=http://10.0.2.100/img.verity overboot.verity.size=16384 overboot.verity.root=" + strings.Repeat("ab", 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := dryRun(append([]string{"-dry-run"}, tt.args...), &out); err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"0123456789", "pw@", "very-secret-value"} {
				if strings.Contains(out.String(), secret) {
					t.Errorf("the plan shows %q:\n%s", secret, out.String())
				}
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if d := cmp.Diff(string(want), out.String()); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
}

// TestDryRunErrors: each error names what was wrong, and no plan is
// printed (the usage is, where the arguments were the mistake).
func TestDryRunErrors(t *testing.T) {
	const usage = "usage: overboot-init -dry-run"
	for _, tc := range []struct {
		name      string
		args      []string
		want      []string // in the error
		is        error    // the error wraps it, when not nil
		wantUsage bool     // printed
	}{
		{"bad cmdline", []string{"-dry-run", "-cmdline", "overboot.bogus=1"}, []string{"kernel command line", "overboot.bogus: unknown parameter"}, nil, false},
		{"not pid 1", []string{"-cmdline", "overboot.root=ibft:1"}, []string{"not PID 1", "-dry-run"}, nil, true},
		{"unknown flag", []string{"-dry-run", "-frobnicate"}, []string{"-frobnicate"}, nil, true},
		{"missing document", []string{"-dry-run", "-cmdline", "overboot.doc=http://s/doc/t", "-doc", "testdata/absent.json"}, []string{"testdata/absent.json"}, fs.ErrNotExist, false},
		{"bad document", []string{"-dry-run", "-cmdline", "overboot.doc=http://s/doc/t", "-doc", "main_test.go"}, []string{"main_test.go: boot document: invalid character"}, nil, false},
	} {
		var out bytes.Buffer
		err := dryRun(tc.args, &out)
		if err == nil {
			t.Errorf("%s: no error; printed:\n%s", tc.name, out.String())
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %q is not %v", tc.name, err, tc.is)
		}
		if got := strings.Contains(out.String(), usage); got != tc.wantUsage || (!tc.wantUsage && out.Len() > 0) {
			t.Errorf("%s: printed %q; want the usage: %v, else nothing", tc.name, out.String(), tc.wantUsage)
		}
	}
}
