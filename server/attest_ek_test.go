package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/swtpmtest"
	"github.com/overboot/overboot/internal/testneed"
)

// TestEKFingerprintIsTPM2Tools: the EK fingerprint the server pins and
// the agent shows is what an administrator computes on the machine with
// the reference tools (docs/enrolment.md): tpm2_createek, tpm2_readpublic
// -f der, sha256sum. The same TPM is read by go-attestation, then by
// tpm2-tools (TCTI swtpm on a loopback port).
func TestEKFingerprintIsTPM2Tools(t *testing.T) {
	createek := testneed.Tool(t, "tpm2_createek")
	readpublic := testneed.Tool(t, "tpm2_readpublic")
	swtpm := testneed.Tool(t, "swtpm")
	m := swtpmtest.New(t)
	ours := EKFingerprint(ekOf(t, m.Boot(nil)))
	m.PowerOff()

	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, swtpm, "socket", "--tpm2", "--tpmstate", "dir="+m.Dir(),
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		// TCTI swtpm finds the control channel on the next port.
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "startup-clear,not-need-init")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm on port %d: %v: %s", port, err, stderr.Bytes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir := t.TempDir()
	env := append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=%d", port))
	for _, argv := range [][]string{
		{createek, "-c", filepath.Join(dir, "ek.ctx"), "-G", "rsa", "-u", filepath.Join(dir, "ek.pub")},
		{readpublic, "-c", filepath.Join(dir, "ek.ctx"), "-f", "der", "-o", filepath.Join(dir, "ek.der")},
	} {
		c := exec.Command(argv[0], argv[1:]...)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	der, err := os.ReadFile(filepath.Join(dir, "ek.der"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if theirs := "sha256:" + hex.EncodeToString(sum[:]); theirs != ours {
		t.Errorf("EK fingerprint: ours %s, tpm2-tools %s", ours, theirs)
	}
}

// freePort is a TCP port on loopback free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
