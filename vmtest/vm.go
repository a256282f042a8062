package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Line is one line of the guest's serial console, stamped with the time
// since QEMU started.
type Line struct {
	At   time.Duration
	Text string
}

func (l Line) String() string { return fmt.Sprintf("[%7.3fs] %s", l.At.Seconds(), l.Text) }

// VM is a running QEMU process whose serial console is read line by line.
type VM struct {
	cmd   *exec.Cmd
	start time.Time
	log   io.Writer
	stdin io.WriteCloser // the serial console's input

	mu    sync.Mutex // guards lines, done, err, and wakes waiters via cond
	cond  *sync.Cond
	lines []Line
	done  bool // console closed: QEMU exited
	err   error

	exited chan struct{}
	tpm    *swtpmProc // the machine's swtpm (Options.TPMState), stopped once QEMU exited
}

// Type sends text to the guest's serial console, as typed on it.
func (v *VM) Type(text string) error {
	_, err := io.WriteString(v.stdin, text)
	return err
}

// ErrExited is returned by Expect when QEMU exits before the text appears.
var ErrExited = errors.New("qemu exited")

// ErrTimeout is returned by Expect when the text does not appear in time.
var ErrTimeout = errors.New("timed out")

// Start runs QEMU with o. Every console line is also written to log (nil:
// nowhere). The VM is killed when ctx is done.
func Start(ctx context.Context, o Options, log io.Writer) (*VM, error) {
	argv, err := o.Argv()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	vm := &VM{cmd: cmd, log: log, stdin: in, exited: make(chan struct{})}
	vm.cond = sync.NewCond(&vm.mu)
	if o.TPMState != "" {
		if vm.tpm, err = startSwtpm(ctx, o.TPMState, func(l string) { fmt.Fprintln(log, l) }); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "# %s\n", strings.Join(argv, " "))
	vm.start = time.Now()
	if err := cmd.Start(); err != nil {
		if vm.tpm != nil {
			vm.tpm.stop()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := Line{At: time.Since(vm.start), Text: strings.TrimRight(sc.Text(), "\r")}
			fmt.Fprintln(vm.log, l)
			vm.mu.Lock()
			vm.lines = append(vm.lines, l)
			vm.cond.Broadcast()
			vm.mu.Unlock()
		}
		werr := cmd.Wait()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			fmt.Fprintf(vm.log, "# qemu stderr: %s\n", s)
		}
		if vm.tpm != nil {
			vm.tpm.stop()
		}
		vm.mu.Lock()
		vm.done = true
		if werr != nil {
			vm.err = fmt.Errorf("qemu: %w: %s", werr, strings.TrimSpace(stderr.String()))
		}
		vm.cond.Broadcast()
		vm.mu.Unlock()
		close(vm.exited)
	}()
	return vm, nil
}

// Expect waits until a console line contains text, and returns it. It
// fails with ErrExited when QEMU exits first, ErrTimeout after timeout.
// Lines already seen count, so Expect calls can run in any order.
func (vm *VM) Expect(text string, timeout time.Duration) (Line, error) {
	l, _, err := vm.ExpectAny(timeout, text)
	return l, err
}

// ExpectAny waits for the first line containing any of texts and returns
// it with the index of the text it matched.
func (vm *VM) ExpectAny(timeout time.Duration, texts ...string) (Line, int, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer timer.Stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for i := 0; ; {
		for ; i < len(vm.lines); i++ {
			for j, t := range texts {
				if strings.Contains(vm.lines[i].Text, t) {
					return vm.lines[i], j, nil
				}
			}
		}
		if vm.done {
			return Line{}, -1, fmt.Errorf("waiting for %q: %w", texts, ErrExited)
		}
		if !time.Now().Before(deadline) {
			return Line{}, -1, fmt.Errorf("waiting %s for %q: %w", timeout, texts, ErrTimeout)
		}
		vm.cond.Wait()
	}
}

// Lines returns the console so far.
func (vm *VM) Lines() []Line {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Line(nil), vm.lines...)
}

// Contains reports whether any console line so far contains text.
func (vm *VM) Contains(text string) bool {
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, text) {
			return true
		}
	}
	return false
}

// Wait waits for QEMU to exit (the guest powered off or rebooted) and
// returns how long it ran.
func (vm *VM) Wait(timeout time.Duration) (time.Duration, error) {
	select {
	case <-vm.exited:
	case <-time.After(timeout):
		return 0, fmt.Errorf("qemu still running after %s: %w", timeout, ErrTimeout)
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return time.Since(vm.start), vm.err
}

// Kill stops QEMU if it is still running and waits for it.
func (vm *VM) Kill() {
	select {
	case <-vm.exited:
		return
	default:
	}
	_ = vm.cmd.Process.Kill()
	<-vm.exited
}

// Tail returns the last n console lines, for failure messages.
func (vm *VM) Tail(n int) string {
	lines := vm.Lines()
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

// FindKernel returns the newest /boot/vmlinuz-* and its release, or the
// one named by $OVERBOOT_KERNEL.
func FindKernel() (path, release string, err error) {
	if p := os.Getenv("OVERBOOT_KERNEL"); p != "" {
		return p, strings.TrimPrefix(baseName(p), "vmlinuz-"), nil
	}
	return findKernel("/boot")
}
