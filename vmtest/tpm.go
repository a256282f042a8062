package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A machine's TPM 2.0 is a swtpm of its own (Options.TPMState): started
// before QEMU with its state in a directory the caller keeps across that
// machine's reboots (the EK, and the SRK go-attestation persists, stay
// the machine's), joined by QEMU through its control socket (QEMU's
// tpm emulator backend, a tpm-crb device on q35), and stopped when QEMU
// has exited (swtpm exits by itself when QEMU disconnects).

// tpmSocket is the control socket's name in the state directory.
const tpmSocket = "sock"

// tpmArgs are QEMU's arguments for a TPM whose swtpm listens in dir.
func tpmArgs(dir string) []string {
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + filepath.Join(dir, tpmSocket),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-crb,tpmdev=tpm0",
	}
}

// SwtpmArgv is the swtpm command line for a TPM with its state in dir.
func SwtpmArgv(dir string) []string {
	return []string{"swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + dir,
		"--ctrl", "type=unixio,path=" + filepath.Join(dir, tpmSocket)}
}

// checkTPMState checks a TPM state directory's path for QEMU's and
// swtpm's option syntax and unix sockets' length.
func checkTPMState(dir string) error {
	switch {
	case !filepath.IsAbs(dir):
		return fmt.Errorf("qemu: TPM state directory %q: want an absolute path", dir)
	case strings.ContainsAny(dir, ", "):
		return fmt.Errorf("qemu: TPM state directory %q must not contain commas or spaces", dir)
	case len(filepath.Join(dir, tpmSocket)) >= 108:
		return fmt.Errorf("qemu: TPM state directory %q: too long for a unix socket path", dir)
	}
	return nil
}

// swtpmProc is a running swtpm.
type swtpmProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited
	err    error         // how, once exited is closed
	stderr *strings.Builder
}

// stop ends swtpm (it has usually exited already, QEMU gone) and waits
// for it.
func (p *swtpmProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// startSwtpm starts swtpm for the state directory dir (made if missing)
// and returns once its control socket exists, or fails. ctx ends it.
func startSwtpm(ctx context.Context, dir string, log func(string)) (*swtpmProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, tpmSocket)
	// A socket left by an earlier run of this machine would look ready.
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	argv := SwtpmArgv(dir)
	p := &swtpmProc{cmd: exec.CommandContext(ctx, argv[0], argv[1:]...), exited: make(chan struct{}), stderr: &strings.Builder{}}
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	log("# " + strings.Join(argv, " "))
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	// A backstop, not a measure: swtpm listens within milliseconds.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(sock); err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("swtpm exited: %v: %s", p.err, strings.TrimSpace(p.stderr.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("swtpm made no socket %s in a minute: %s", sock, strings.TrimSpace(p.stderr.String()))
		}
	}
}
