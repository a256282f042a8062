package swtpmtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/internal/testneed"
)

// Machine is one test machine's TPM: swtpm on a state directory that
// outlives Boot's restarts (its EK stays, its PCRs reset).
type Machine struct {
	t     testing.TB
	swtpm string
	dir   string
	cmd   *exec.Cmd
	done  chan error
	tpm   *attest.TPM
}

// New makes a machine's TPM in a new state directory under t.TempDir();
// it is stopped in t.Cleanup. Without swtpm the test is skipped (or
// fails, when strict).
func New(t testing.TB) *Machine {
	t.Helper()
	m := &Machine{t: t, swtpm: testneed.Tool(t, "swtpm"), dir: t.TempDir()}
	t.Cleanup(m.stop)
	return m
}

// Boot powers the machine on again: it stops swtpm if it runs, starts
// it on the same state (TPM2_Startup(CLEAR): every PCR zero), extends
// each event's SHA-256 digest into its PCR, as the firmware and the boot
// loaders would, and opens the TPM with go-attestation, its measurement
// log the encoding of events.
func (m *Machine) Boot(events []Event) *attest.TPM {
	m.t.Helper()
	m.stop()
	sock := filepath.Join(m.dir, "s")
	os.Remove(sock)
	m.cmd = exec.Command(m.swtpm, "socket", "--tpm2", "--tpmstate", "dir="+m.dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(m.dir, "c"),
		"--flags", "startup-clear,not-need-init")
	var stderr bytes.Buffer
	m.cmd.Stderr = &stderr
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start swtpm: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.cmd.Wait() }()
	m.done = done
	conn, err := dial(sock, done)
	if err != nil {
		m.t.Fatalf("swtpm on %s: %v: %s", m.dir, err, stderr.Bytes())
	}
	for i, e := range events {
		if err := extend(conn, e.PCR, e.Digest); err != nil {
			conn.Close()
			m.t.Fatalf("event %d (PCR %d): %v", i, e.PCR, err)
		}
	}
	tpm, err := attest.OpenTPM(&attest.OpenConfig{CommandChannel: &channel{Conn: conn, log: Encode(events)}})
	if err != nil {
		conn.Close()
		m.t.Fatalf("open the TPM: %v", err)
	}
	m.tpm = tpm
	return tpm
}

// dial connects to swtpm's socket once swtpm listens on it (it is
// made after the process starts), or fails when swtpm exits first.
func dial(sock string, done chan error) (net.Conn, error) {
	var last error
	for range 1500 {
		select {
		case err := <-done:
			done <- err
			return nil, fmt.Errorf("swtpm exited: %v", err)
		default:
		}
		c, err := net.Dial("unix", sock)
		if err == nil {
			return c, nil
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no socket after 30 s: %v", last)
}

// Dir is the TPM's state directory (another TPM client may start swtpm
// on it once PowerOff has returned).
func (m *Machine) Dir() string { return m.dir }

// PowerOff closes the TPM and ends swtpm; its state stays in Dir.
func (m *Machine) PowerOff() { m.stop() }

// stop closes the TPM and ends swtpm (SIGTERM: it saves its state).
func (m *Machine) stop() {
	if m.tpm != nil {
		m.tpm.Close()
		m.tpm = nil
	}
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	<-m.done
	m.cmd, m.done = nil, nil
}

// channel is go-attestation's command channel to swtpm, with the
// measurement log the test made.
type channel struct {
	net.Conn
	log []byte
}

func (c *channel) MeasurementLog() ([]byte, error) { return c.log, nil }

// extend sends TPM2_PCR_Extend(pcr, SHA-256 digest) with an empty
// password, and reads its answer.
func extend(conn net.Conn, pcr int, digest [sha256.Size]byte) error {
	var b bytes.Buffer
	be := binary.BigEndian
	binary.Write(&b, be, uint16(0x8002)) // TPM_ST_SESSIONS
	binary.Write(&b, be, uint32(0))      // size, below
	binary.Write(&b, be, uint32(0x182))  // TPM_CC_PCR_Extend
	binary.Write(&b, be, uint32(pcr))
	binary.Write(&b, be, uint32(9))          // authorization area size
	binary.Write(&b, be, uint32(0x40000009)) // TPM_RS_PW
	binary.Write(&b, be, uint16(0))          // nonce
	b.WriteByte(0)                           // session attributes
	binary.Write(&b, be, uint16(0))          // hmac (the empty password)
	binary.Write(&b, be, uint32(1))          // TPML_DIGEST_VALUES.count
	binary.Write(&b, be, uint16(0x000b))     // TPM_ALG_SHA256
	b.Write(digest[:])
	cmd := b.Bytes()
	be.PutUint32(cmd[2:], uint32(len(cmd)))
	if _, err := conn.Write(cmd); err != nil {
		return fmt.Errorf("PCR_Extend: %w", err)
	}
	resp := make([]byte, 4096)
	n, err := conn.Read(resp)
	if err != nil {
		return fmt.Errorf("PCR_Extend: %w", err)
	}
	if n < 10 {
		return errors.New("PCR_Extend: short answer")
	}
	if rc := be.Uint32(resp[6:]); rc != 0 {
		return fmt.Errorf("PCR_Extend: TPM response code %#x", rc)
	}
	return nil
}
