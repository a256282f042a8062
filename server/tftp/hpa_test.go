package tftp

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
)

// TestTFTPHPAClient fetches with tftp-hpa's client (Debian package
// tftp-hpa), an implementation that is not ours: no options, 512-byte
// blocks, lock-step.
func TestTFTPHPAClient(t *testing.T) {
	tftp := testneed.Tool(t, "tftp")
	content := randomBytes(300000)
	ts := startServer(t, &Server{Root: writeRoot(t, map[string][]byte{"boot/file.bin": content})})
	host, port, _ := net.SplitHostPort(ts.addr)
	out := t.TempDir()
	run := func(mode string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		cmd := exec.CommandContext(ctx, tftp, append([]string{"-m", mode, host, port, "-c"}, args...)...)
		cmd.Dir = out
		b, err := cmd.CombinedOutput()
		if err != nil && ctx.Err() != nil {
			t.Fatalf("tftp %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}

	t.Run("get", func(t *testing.T) {
		if msg := run("binary", "get", "boot/file.bin", "got"); msg != "" {
			t.Errorf("tftp get said %q", msg)
		}
		got, err := os.ReadFile(filepath.Join(out, "got"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("got %d bytes, want %d", len(got), len(content))
		}
	})
	tests := []struct {
		name string
		mode string
		args []string
		want string
	}{
		{"put refused", "binary", []string{"put", "got", "up"}, "Error code 2: read-only server: WRQ refused"},
		{"missing", "binary", []string{"get", "nope", "nope"}, "Error code 1: nope: file not found"},
		{"traversal", "binary", []string{"get", "../etc/passwd", "passwd"}, `Error code 2: "../etc/passwd" is not a path inside the served directory`},
		{"netascii refused", "ascii", []string{"get", "boot/file.bin", "text"}, "Error code 0: mode netascii not served: only octet (binary)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := run(tt.mode, tt.args...); !strings.Contains(msg, tt.want) {
				t.Errorf("tftp %s said %q, want %q", strings.Join(tt.args, " "), msg, tt.want)
			}
		})
	}
}
