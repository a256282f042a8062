package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit: dist/overboot.service is a valid unit for systemd
// (systemd-analyze verify, with ExecStart pointed at a binary that
// exists here) and keeps its sandbox.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("../../dist/overboot.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "StateDirectory=overboot", "User=overboot"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (package systemd) is needed to check the unit: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "overboot.service")
	if err := os.WriteFile(dst, []byte(strings.ReplaceAll(unit, "/usr/local/bin/overboot", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", dst).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
