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
	"sync"
	"syscall"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/internal/nbd"
)

// Argv0 is the keeper's process name; the leading '@' asks systemd not to
// kill it at shutdown.
const Argv0 = "@overboot-keeper"

// Config is what the agent tells the keeper: a lazy root to serve, iSCSI
// sessions to keep logged in, or both.
type Config struct {
	// Image, when set, is served to the kernel's NBD device on the
	// inherited socket.
	Image *Image `json:"image,omitempty"`
	// ISCSI are sessions whose failed connections the keeper logs in
	// again (initiator.Watcher), CHAP secrets included: they travel only
	// over the inherited pipe and live only in the keeper's memory.
	ISCSI []initiator.Session `json:"iscsi,omitempty"`
}

// Image is a lazily read root.
type Image struct {
	URL string `json:"url"`
	// Mirrors and TreeMirrors are other URLs of the image and of its
	// tree, read from when the first fails (fetch.WithMirrors).
	Mirrors     []string `json:"mirrors,omitempty"`
	TreeMirrors []string `json:"tree_mirrors,omitempty"`
	Size        int64    `json:"size"`
	// TreeURL and TreeSize are the image's dm-verity tree, superblock
	// first, which the keeper serves right behind the image on the same
	// device (from byte Size on), read on demand like the image:
	// dm-verity checks each tree block it reads against the root hash the
	// agent gives it, so neither needs checking here.
	TreeURL  string `json:"tree_url,omitempty"`
	TreeSize int64  `json:"tree_size,omitempty"`
	// Fill completes the image in RAM in the background; then the server
	// is no longer needed.
	Fill bool `json:"fill,omitempty"`
	// CacheBytes bounds the blocks kept in RAM (lazy mode).
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	// Name is the image for messages (its digest).
	Name string `json:"name"`
	// Report, when set, is the boot's report URL: the keeper reports
	// there what the kernel read in its first minute (recordWindow).
	// It carries a token: never logged.
	Report string `json:"report,omitempty"`
	// WorkingSet, when set, is what earlier boots of the image read
	// first: the keeper fetches it while the agent sets up.
	WorkingSet *boot.WorkingSet `json:"working_set,omitempty"`
}

// The keeper's inherited files: the control pipe (the Config, then more
// sessions, until the agent closes it), the NBD socket (with an Image),
// and the pipe it answers on ("ready", then "ok" for each addition, or
// what went wrong).
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

// Keeper is a running keeper as the agent sees it. One per machine: the
// agent starts it for a lazy root or for iSCSI sessions, and hands it the
// sessions it attaches later (Watch) until it Releases it.
type Keeper struct {
	proc  *os.Process
	ctl   *os.File      // the control pipe's write end; nil once released
	ready *bufio.Reader // the answers
	rf    *os.File
}

// Start runs the keeper as a child of this process with cfg and, for an
// Image, sock (its end of the NBD socket pair; nil without an Image), and
// waits until it has reached the image server and checked the image's
// size, so the caller can hand the kernel its end, and is watching cfg's
// sessions.
func Start(cfg Config, sock *os.File) (*Keeper, error) {
	if (cfg.Image == nil) != (sock == nil) {
		return nil, errors.New("keeper: an image needs its NBD socket, and a socket an image")
	}
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
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{Argv0},
		Env:        []string{},
		ExtraFiles: []*os.File{cfgR, sock, readyW}, // a nil sock leaves fd 4 closed
		// Its own session: no terminal signals from the console.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		cfgW.Close()
		readyR.Close()
		readyW.Close()
		return nil, fmt.Errorf("start the keeper: %w", err)
	}
	readyW.Close()
	k := &Keeper{proc: cmd.Process, ctl: cfgW, ready: bufio.NewReader(readyR), rf: readyR}
	err = k.send(cfg, "ready", readyTimeout)
	if err != nil {
		k.Kill()
		cmd.Wait()
		if cfg.Image != nil && errors.Is(err, errNoAnswer) {
			return nil, fmt.Errorf("the keeper did not reach the image server in %v", readyTimeout)
		}
		return nil, fmt.Errorf("the keeper could not start: %w", err)
	}
	return k, nil
}

var errNoAnswer = errors.New("no answer")

// send writes one message to the keeper and waits for its answer.
func (k *Keeper) send(v any, want string, timeout time.Duration) error {
	if k.ctl == nil {
		return errors.New("keeper: released")
	}
	if err := json.NewEncoder(k.ctl).Encode(v); err != nil {
		return err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := k.ready.ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		switch s {
		case want:
			return nil
		case "":
			return errors.New("it exited")
		}
		return errors.New(s)
	case <-time.After(timeout):
		return errNoAnswer
	}
}

// Pid is the keeper's process id.
func (k *Keeper) Pid() int { return k.proc.Pid }

// Watch hands the keeper more sessions to keep logged in, and waits
// until it watches them.
func (k *Keeper) Watch(sessions []initiator.Session) error {
	if err := k.send(Config{ISCSI: sessions}, "ok", 30*time.Second); err != nil {
		return fmt.Errorf("hand the iSCSI sessions to the keeper (pid %d): %w", k.Pid(), err)
	}
	return nil
}

// Release closes the agent's ends of the pipes: the keeper gets no more
// sessions and carries on.
func (k *Keeper) Release() {
	if k.ctl != nil {
		k.ctl.Close()
		k.rf.Close()
		k.ctl = nil
	}
}

// Kill ends a keeper that is of no use (its setup failed).
func (k *Keeper) Kill() {
	k.Release()
	k.proc.Kill()
}

// Main is the keeper's whole life; it returns only on a fatal error, or
// when the NBD device it serves is disconnected (the root is gone).
func Main() error {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	log := newKmsg()
	// The OOM killer must not take the process the root depends on.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	ready := os.NewFile(fdReady, "ready")
	fail := func(err error) error {
		fmt.Fprintf(ready, "%v\n", err)
		ready.Close()
		log.printf("stopped: %v", err)
		return err
	}
	ctl := json.NewDecoder(os.NewFile(fdConfig, "config"))
	var cfg Config
	if err := ctl.Decode(&cfg); err != nil {
		return fail(fmt.Errorf("configuration: %w", err))
	}
	ctx := context.Background()
	var dev *device
	var conn net.Conn
	if cfg.Image != nil {
		sockFile := os.NewFile(fdSocket, "nbd")
		var err error
		conn, err = net.FileConn(sockFile)
		sockFile.Close()
		if err != nil {
			return fail(fmt.Errorf("nbd socket: %w", err))
		}
		dev, err = openDevice(ctx, *cfg.Image, log.printf)
		if err != nil {
			return fail(err)
		}
	}
	w := &watch{log: log}
	if err := w.add(ctx, cfg.ISCSI); err != nil {
		return fail(err)
	}
	fmt.Fprintln(ready, "ready")
	// More sessions, until the agent closes the pipe.
	go func() {
		defer ready.Close()
		for {
			var more Config
			if err := ctl.Decode(&more); err != nil {
				return
			}
			if err := w.add(ctx, more.ISCSI); err != nil {
				fmt.Fprintf(ready, "%v\n", err)
				continue
			}
			fmt.Fprintln(ready, "ok")
		}
	}()
	if cfg.Image == nil {
		// Only sessions to keep: for as long as the machine runs.
		err := <-w.stopped()
		log.printf("stopped: %v", err)
		return err
	}
	return serveImage(ctx, log, *cfg.Image, dev, conn)
}

// serveImage answers the kernel's NBD requests for the image until the
// device is disconnected.
func serveImage(ctx context.Context, log *kmsg, img Image, dev *device, conn net.Conn) error {
	mode := "lazy"
	if img.Fill {
		mode = "fill"
		go func() {
			t0 := time.Now()
			if err := dev.filled(); err != nil {
				log.printf("image %s: fill stopped: %v", img.Name, err)
				return
			}
			log.printf("image %s is complete in RAM after %.1fs: the server is no longer needed", img.Name, time.Since(t0).Seconds())
		}()
	}
	if img.WorkingSet != nil {
		go dev.prefetchWorkingSet(*img.WorkingSet, img.Fill, log.printf)
	} else {
		go dev.prefetch(log.printf)
	}
	if dev.rec != nil {
		post := func(ctx context.Context, url string, body []byte) error {
			return fetch.Post(ctx, nil, url, "application/json", body)
		}
		go reportWorkingSet(ctx, img, dev.rec, post, reportPause, log.printf)
	}
	tree := ""
	if dev.tree != nil {
		tree = fmt.Sprintf(" and its dm-verity tree (%d bytes)", dev.tree.Size())
	}
	log.printf("serving image %s (%d bytes, %s)%s to the kernel's NBD device", img.Name, img.Size, mode, tree)
	s := &nbd.Server{Backend: dev, OnError: func(err error) { log.printf("image %s: %v", img.Name, err) }}
	err := s.Serve(ctx, conn)
	if err == nil || errors.Is(err, io.EOF) {
		// The kernel disconnected the device: the root is gone.
		log.printf("NBD device disconnected; exiting")
		return nil
	}
	log.printf("stopped: %v", err)
	return err
}

// watch is the keeper's iSCSI side: a Watcher on the kernel's netlink
// interface, opened with the first sessions.
type watch struct {
	log *kmsg

	mu   sync.Mutex // guards w, done and devs
	w    *initiator.Watcher
	done chan error
	// devs are the sessions' block devices, opened when handed over
	// (before switch_root moves /dev away): a recovery reads the
	// device's identity through them.
	devs map[uint32]*os.File
}

// identify reads the identity of s's device through the file opened
// when the session was handed over.
func (w *watch) identify(s initiator.Session) (string, error) {
	w.mu.Lock()
	f := w.devs[s.SID]
	w.mu.Unlock()
	if f == nil {
		return "", fmt.Errorf("%s was not open", s.Device)
	}
	return initiator.DeviceIdentity(f)
}

func (w *watch) add(ctx context.Context, sessions []initiator.Session) error {
	if len(sessions) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.w == nil {
		nl, err := initiator.OpenNetlink()
		if err != nil {
			return err
		}
		w.w = initiator.NewWatcher(nl, w.log.printf)
		w.w.SetIdentify(w.identify)
		w.devs = map[uint32]*os.File{}
		w.done = make(chan error, 1)
		go func() {
			err := w.w.Run(ctx)
			w.log.printf("no longer watching iSCSI sessions: %v", err)
			w.done <- err
		}()
	}
	for _, s := range sessions {
		if s.DeviceID != "" && s.Device != "" {
			f, err := os.Open(s.Device)
			if err != nil {
				return fmt.Errorf("%s: open its device to check it at recovery: %w", s, err)
			}
			w.devs[s.SID] = f
		}
		w.w.Watch(ctx, s)
	}
	return nil
}

// stopped delivers the Watcher's end; never, without sessions.
func (w *watch) stopped() <-chan error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done == nil {
		return make(chan error)
	}
	return w.done
}

// kmsg writes to the kernel log, the one log that exists before and after
// switch_root; without /dev/kmsg, to stderr.
type kmsg struct{ w io.Writer }

// kmsgPath is the kernel log; tests that run the keeper set it to "" so
// that it logs to stderr, not to their host's kernel log.
var kmsgPath = "/dev/kmsg"

func newKmsg() *kmsg {
	if kmsgPath != "" {
		if f, err := os.OpenFile(kmsgPath, os.O_WRONLY, 0); err == nil {
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
