package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/vmtest"
)

// The boot section's machine and console: one QEMU command line for every
// boot (overboot and the anchors alike), and what the console says.

// Markers the bench init prints (see benchInit).
const (
	markerProgram = "OVERBOOT-BENCH-INIT" // the root's first program runs
	markerExec    = "OVERBOOT-BENCH-EXEC" // its first exec of a binary (/bin/true) returned
	markerRoot    = "OVERBOOT-BENCH-ROOT" // the root mount as the first program sees it
	markerMem     = "OVERBOOT-BENCH-MEM"  // RAM in use then: used_kb=N
	markerKernel  = "Run /init as init process"
	markerSeq     = "OVERBOOT-BENCH-SEQ" // seqScript: "http|dev BYTES bytes (...) copied, SECONDS s, ..."
)

// bootFailures end a boot at once: each tool's way of giving up.
var bootFailures = []string{
	"Kernel panic",            // any
	"overboot: BOOT FAILED",   // overboot's agent
	"Dropping to debug shell", // dracut without systemd
	"Entering emergency mode", // dracut with systemd
	"built-in shell (ash)",    // initramfs-tools (live-boot) rescue shell
}

// bootTimeout bounds one boot: TCG boots take 10-60 s here, more when other
// QEMU jobs share the machine.
const bootTimeout = 4 * time.Minute

// machine is the one QEMU machine of the boot section. Only the initramfs,
// the kernel command line and the host end of the guest's HTTP forward
// change from boot to boot.
type machine struct {
	Kernel, Initrd, Cmdline string
	Relay                   string // qemurelay (vmtest.Artifacts.Relay)
	Server                  string // 127.0.0.1:PORT the guest reaches as http://10.0.2.100/
}

// Argv is QEMU's command: vmtest's direct kernel boot with 2 GiB, one vCPU
// and virtio-net on user networking (restrict=on, one guestfwd), minus the
// two things vmtest adds for its own tests that the reference figures are
// taken without: "-cpu max" (QEMU's default model then, so no emulated
// RDRAND) and the virtio-rng device. No tool gets a source of early
// randomness the others lack.
func (m machine) Argv() ([]string, error) {
	o := vmtest.Options{
		Kernel: m.Kernel, Initrd: m.Initrd, Append: m.Cmdline,
		MemoryMB: 2048, CPUs: 1, Relay: m.Relay,
		Forwards: []vmtest.Forward{{GuestPort: 80, HostAddr: m.Server}},
	}
	argv, err := o.Argv()
	if err != nil {
		return nil, err
	}
	out := argv[:1:1]
	for i := 1; i < len(argv); i++ {
		switch {
		case argv[i] == "-cpu" && i+1 < len(argv):
			i++
		case argv[i] == "-device" && i+1 < len(argv) && strings.HasPrefix(argv[i+1], "virtio-rng"):
			i++
		default:
			out = append(out, argv[i])
		}
	}
	return out, nil
}

// bootTimes is what one boot's console says, as times since QEMU started.
type bootTimes struct {
	Kernel  time.Duration // the kernel runs the initramfs's /init
	Program time.Duration // the root's first program printed its first line
	Exec    time.Duration // ... and its first exec of a binary (/bin/true) returned
	Root    string        // the root mount the first program saw: source and type
	UsedKB  int64         // MemTotal - MemAvailable after the first exec
}

// parseBoot reads the bench init's markers from a console.
func parseBoot(lines []vmtest.Line) (bootTimes, error) {
	var t bootTimes
	var haveProgram, haveExec bool
	for _, l := range lines {
		switch {
		case t.Kernel == 0 && strings.Contains(l.Text, markerKernel):
			t.Kernel = l.At
		case !haveProgram && strings.Contains(l.Text, markerProgram):
			t.Program, haveProgram = l.At, true
		case !haveExec && strings.Contains(l.Text, markerExec):
			t.Exec, haveExec = l.At, true
		case strings.Contains(l.Text, markerMem+" used_kb="):
			_, v, _ := strings.Cut(l.Text, markerMem+" used_kb=")
			t.UsedKB, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case strings.Contains(l.Text, markerRoot+" "):
			_, t.Root, _ = strings.Cut(l.Text, markerRoot+" ")
		}
	}
	switch {
	case !haveProgram:
		return t, fmt.Errorf("no %q line: the root's first program never ran", markerProgram)
	case !haveExec:
		return t, fmt.Errorf("no %q line: the first program's exec of /bin/true never returned", markerExec)
	}
	return t, nil
}

// bootConsole runs one boot: QEMU with argv until the guest powers off, a
// failure text appears, or timeout. Every console line goes to log, stamped
// with the time since QEMU started.
func bootConsole(ctx context.Context, argv []string, timeout time.Duration, log io.Writer) ([]vmtest.Line, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	fmt.Fprintf(log, "# %s\n", strings.Join(argv, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	var lines []vmtest.Line
	failed := ""
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := vmtest.Line{At: time.Since(start), Text: strings.TrimRight(sc.Text(), "\r")}
		lines = append(lines, l)
		fmt.Fprintln(log, l)
		for _, f := range bootFailures {
			if failed == "" && strings.Contains(l.Text, f) {
				failed = l.Text
				cancel()
			}
		}
	}
	werr := cmd.Wait()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		fmt.Fprintf(log, "# qemu stderr: %s\n", s)
	}
	switch {
	case failed != "":
		return lines, fmt.Errorf("the boot failed: %q", failed)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return lines, fmt.Errorf("no power-off after %s", timeout)
	case werr != nil:
		return lines, fmt.Errorf("qemu: %w: %s", werr, strings.TrimSpace(stderr.String()))
	}
	return lines, nil
}

// consoleTail is the last n lines of a console, for error messages.
func consoleTail(lines []vmtest.Line, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}
