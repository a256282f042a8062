package rescue

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(t *testing.T) {
	script := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(script, []byte("echo script $1\nexit 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		args        []string
		stdin       string
		interactive bool
		want        int
		out, errOut string
	}{
		{"command", []string{"-c", "echo hi; exit 3"}, "", false, 3, "hi\n", ""},
		{"script with arguments", []string{script, "one"}, "", false, 5, "script one\n", ""},
		{"missing script", []string{"/nonexistent/s.sh"}, "", false, 1, "", "sh: open /nonexistent/s.sh"},
		{"stdin", nil, "x=1\necho $((x + 1))\n", false, 0, "2\n", ""},
		{"parse error", []string{"-c", "echo ("}, "", false, 2, "", "sh: -c:1:"},
		{"bad flag", []string{"-z"}, "", false, 2, "", "flag provided but not defined"},
		// The prompt comes before each statement; a failing command
		// does not end the session; exit does, with its status.
		{"interactive", nil, "PS1='r# '\necho a\n/nonexistent/cmd\nif true\nthen echo b\nfi\nexit 4\necho never\n", true, 4,
			"# r# a\nr# r# b\nr# ", "/nonexistent/cmd"},
		{"interactive end of input", nil, "echo a\n", true, 0, "# a\n# \n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			got := Main(tc.args, strings.NewReader(tc.stdin), &out, &errOut, tc.interactive)
			if got != tc.want || out.String() != tc.out || !strings.Contains(errOut.String(), tc.errOut) || tc.errOut == "" && errOut.Len() > 0 {
				t.Errorf("status %d, stdout %q, stderr %q; want %d, %q, %q", got, out.String(), errOut.String(), tc.want, tc.out, tc.errOut)
			}
		})
	}
}
