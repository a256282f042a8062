package verity

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
)

// veritysetup returns the path of veritysetup (cryptsetup-bin), the
// reference these tests hold Build and the Verifier to (testneed.Tool: a
// failure under make test). go test -short skips these checks: asked for.
func veritysetup(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the checks against veritysetup")
	}
	return testneed.Tool(t, "veritysetup")
}

// runVeritysetup runs veritysetup with args and returns its stdout; a
// non-zero exit is an *exec.ExitError carrying the output.
func runVeritysetup(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(veritysetup(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &vsError{args, err, stdout.String() + stderr.String()}
	}
	return stdout.String(), nil
}

type vsError struct {
	args   []string
	err    error
	output string
}

func (e *vsError) Error() string {
	return "veritysetup " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.output
}

func (e *vsError) Unwrap() error { return e.err }

// exitCode is veritysetup's exit status, or -1 if it did not exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// parseDump reads `veritysetup dump` into field name -> value, units cut:
// "Data block size: \t4096 [bytes]" is "Data block size" -> "4096".
func parseDump(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.HasPrefix(k, "VERITY header") {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "[bytes]"))
		m[strings.TrimSpace(k)] = v
	}
	return m
}

// randomFile writes blocks random data blocks to a new file in dir.
func randomFile(t *testing.T, dir, name string, blocks int) (string, []byte) {
	t.Helper()
	b := make([]byte, blocks*BlockSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// buildFile runs Build on the file at data and writes the hash device to
// a new file beside it.
func buildFile(t *testing.T, data string, p Params) (string, *Tree) {
	t.Helper()
	f, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hashPath := data + ".hash"
	h, err := os.Create(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tree, err := Build(f, fi.Size(), h, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return hashPath, tree
}

// flipByte inverts one byte of the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// The level boundaries: 1 block has no hash level, 2..128 one, 129 two
// (2 + 1 hash blocks), 16385 three (129 + 2 + 1).
var levelSizes = []struct {
	blocks     int
	hashBlocks int // veritysetup dump's "Hash blocks"
}{
	{1, 0},
	{2, 1},
	{127, 1},
	{128, 1},
	{129, 3},
	{16384, 129},
	{16385, 132},
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
