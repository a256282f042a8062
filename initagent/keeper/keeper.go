package keeper

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/overboot/overboot/internal/httprange"
	"github.com/overboot/overboot/internal/nbd"
)

// Argv0 is the keeper's process name; the leading '@' asks systemd not to
// kill it at shutdown.
const Argv0 = "@overboot-keeper"

// Config is what the agent tells the keeper.
type Config struct {
	URL  string `json:"url"`
	Size int64  `json:"size"`
	// Fill completes the image in RAM in the background; then the server
	// is no longer needed.
	Fill bool `json:"fill,omitempty"`
	// CacheBytes bounds the blocks kept in RAM (lazy mode).
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	// Name is the image for messages (its digest).
	Name string `json:"name"`
	// Stderr sends the log to the keeper's stderr instead of the kernel
	// log (tests).
	Stderr bool `json:"stderr,omitempty"`
}

// The keeper's inherited files: its configuration, then the NBD socket,
// then the pipe it reports readiness on.
const (
	fdConfig = 3
	fdSocket = 4
	fdReady  = 5
)

// readyTimeout bounds the wait for the keeper's first answer from the
// server.
const readyTimeout = 2 * time.Minute

// IsKeeper reports whether this process was started as the keeper.
func IsKeeper() bool { return len(os.Args) > 0 && os.Args[0] == Argv0 }

// Start runs the keeper as a child of this process with cfg and sock (its
// end of the NBD socket pair) and waits until it has reached the server and
// checked the image's size, so the caller can hand the kernel its end.
func Start(cfg Config, sock *os.File) (*os.Process, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		cfgW.Close()
		return nil, err
	}
	defer readyR.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{Argv0},
		Env:        []string{},
		ExtraFiles: []*os.File{cfgR, sock, readyW},
		// Its own session: no terminal signals from the console.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		cfgW.Close()
		readyW.Close()
		return nil, fmt.Errorf("start the keeper: %w", err)
	}
	readyW.Close()
	err = json.NewEncoder(cfgW).Encode(cfg)
	cfgW.Close()
	if err != nil {
		cmd.Process.Kill()
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readyR).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s == "ready" {
			return cmd.Process, nil
		}
		cmd.Process.Kill()
		cmd.Wait()
		if s == "" {
			s = "it exited"
		}
		return nil, fmt.Errorf("the keeper could not start: %s", s)
	case <-time.After(readyTimeout):
		cmd.Process.Kill()
		return nil, fmt.Errorf("the keeper did not reach the image server in %v", readyTimeout)
	}
}

// Main is the keeper's whole life; it returns only on a fatal error.
func Main() error {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	ready := os.NewFile(fdReady, "ready")
	var cfg Config
	cfgErr := json.NewDecoder(os.NewFile(fdConfig, "config")).Decode(&cfg)
	log := newKmsg(cfg.Stderr)
	fail := func(err error) error {
		fmt.Fprintf(ready, "%v\n", err)
		ready.Close()
		log.printf("stopped: %v", err)
		return err
	}
	if cfgErr != nil {
		return fail(fmt.Errorf("configuration: %w", cfgErr))
	}
	sockFile := os.NewFile(fdSocket, "nbd")
	conn, err := net.FileConn(sockFile)
	sockFile.Close()
	if err != nil {
		return fail(fmt.Errorf("nbd socket: %w", err))
	}
	ctx := context.Background()
	r, err := httprange.Open(ctx, nil, cfg.URL, httprange.Options{ExpectSize: cfg.Size, Fill: cfg.Fill, CacheBytes: cfg.CacheBytes, Logf: log.printf})
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", cfg.Name, err))
	}
	fmt.Fprintln(ready, "ready")
	ready.Close()
	mode := "lazy"
	if cfg.Fill {
		mode = "fill"
		go func() {
			t0 := time.Now()
			<-r.FillDone()
			if err := r.FillErr(); err != nil {
				log.printf("image %s: fill stopped: %v", cfg.Name, err)
				return
			}
			log.printf("image %s is complete in RAM after %.1fs: the server is no longer needed", cfg.Name, time.Since(t0).Seconds())
		}()
	}
	log.printf("serving image %s (%d bytes, %s) to the kernel's NBD device", cfg.Name, cfg.Size, mode)
	s := &nbd.Server{Backend: r, OnError: func(err error) { log.printf("image %s: %v", cfg.Name, err) }}
	err = s.Serve(ctx, conn)
	if err == nil || errors.Is(err, io.EOF) {
		// The kernel disconnected the device: the root is gone.
		log.printf("NBD device disconnected; exiting")
		return nil
	}
	log.printf("stopped: %v", err)
	return err
}

// kmsg writes to the kernel log, the one log that exists before and after
// switch_root; without /dev/kmsg, to stderr.
type kmsg struct{ w io.Writer }

func newKmsg(stderr bool) *kmsg {
	if !stderr {
		if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			return &kmsg{w: f}
		}
	}
	return &kmsg{w: os.Stderr}
}

func (k *kmsg) printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	// One record per line; <6> is KERN_INFO.
	for _, l := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		fmt.Fprintf(k.w, "<6>overboot-keeper: %s\n", l)
	}
}
