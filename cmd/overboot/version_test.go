package main

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: overboot version prints the build information's version,
// revision, time and modified flag, "(devel)" and no revision without it;
// -o json and --version too.
func TestVersion(t *testing.T) {
	var b strings.Builder
	versionOf(nil).text(&b)
	if out := b.String(); !strings.HasPrefix(out, "overboot (devel)\nrevision: unknown") || !strings.Contains(out, "go:       go1.") {
		t.Errorf("no build information:\n%s", out)
	}
	b.Reset()
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/overboot/overboot", Version: "v0.0.0-20261206072747-324c6298dc13+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "324c6298dc1362a3854ac94be4d36f7c3aa9db00"}, {Key: "vcs.time", Value: "2026-12-06T07:27:47Z"}, {Key: "vcs.modified", Value: "true"}}}
	versionOf(bi).text(&b)
	want := "overboot v0.0.0-20261206072747-324c6298dc13+dirty\nrevision: 324c6298dc1362a3854ac94be4d36f7c3aa9db00, modified (changes not committed)\ntime:     2026-12-06T07:27:47Z\ngo:       go1.26.8 "
	if out := b.String(); !strings.HasPrefix(out, want) {
		t.Errorf("with VCS information:\n%s\nwant\n%s", out, want)
	}
	if out, err := cli(t, "", "version"); err != nil || !strings.HasPrefix(out, "overboot ") || !strings.Contains(out, "revision: ") {
		t.Errorf("version: %q %v", out, err)
	}
	out, err := cli(t, "", "version", "-o", "json")
	var v map[string]any
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["version"] == nil || v["go"] == nil {
		t.Errorf("version -o json: %q %v", out, err)
	}
	if out, err := cli(t, "", "--version"); err != nil || out != "overboot "+moduleVersion()+"\n" {
		t.Errorf("--version: %q %v", out, err)
	}
}
