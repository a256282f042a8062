package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/vmtest"
)

// The boot working set, beside RAM mode: document boots (the kernel
// arguments of the server's script for each machine, as iPXE would give
// them) of the small image in modes ram, fill and lazy; then one lazy
// boot that stays up past the keeper's minute and reports what it read;
// then the same modes again, fill and lazy now with the working set in
// their documents. Per boot: the requests and bytes of the image and its
// tree the server answered, and the time from the agent's "switching
// root" line to the root's first program (host stamps of the console).

// markerSwitch is the agent's last line before switch_root.
const markerSwitch = "overboot: switching root"

// wsStay keeps the recording boot up past the keeper's minute.
const wsStay = 75 * time.Second

// wsMachine is one of the section's machines: a MAC and its profile.
type wsMachine struct {
	Label   string // the rows' name
	MAC     string
	Profile string
}

var wsMachines = []wsMachine{
	{"RAM", "52:54:00:be:00:01", "ws-ram"},
	{"fill", "52:54:00:be:00:02", "ws-fill"},
	{"lazy", "52:54:00:be:00:03", "ws-lazy"},
}

// wsRecorder is the machine whose boot reports the working set.
var wsRecorder = wsMachine{"lazy, recording", "52:54:00:be:00:09", "ws-record"}

// imageCounter counts the requests for the image and its tree, and the
// bytes of their answers' bodies.
type imageCounter struct {
	h      http.Handler
	prefix []string

	mu              sync.Mutex
	requests, bytes int64
}

func (c *imageCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, p := range c.prefix {
		if r.Method == http.MethodGet && r.URL.Path == p {
			cw := &countingWriter{ResponseWriter: w}
			c.h.ServeHTTP(cw, r)
			c.mu.Lock()
			c.requests++
			c.bytes += cw.n
			c.mu.Unlock()
			return
		}
	}
	c.h.ServeHTTP(w, r)
}

// take returns the counts and zeroes them.
func (c *imageCounter) take() (requests, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	requests, bytes = c.requests, c.bytes
	c.requests, c.bytes = 0, 0
	return requests, bytes
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// wsBoot is one boot's figures.
type wsBoot struct {
	Switch   time.Duration // "switching root" to the first program
	Program  time.Duration // QEMU start to the first program
	Requests int64
	Bytes    int64
}

var scriptArgsRE = regexp.MustCompile(`initrd=overboot-initrd0 (.*) \|\| goto`)

// runWorkingSet is the working set's part of the boot section.
func runWorkingSet(ctx context.Context, env *Env, a *vmtest.Artifacts, im benchImage, logs string) ([]Result, error) {
	var conf strings.Builder
	fmt.Fprintf(&conf, "[server]\nurl = http://%s\n\n", vmtest.GuestServer)
	for _, p := range []struct{ name, mode, cmdline string }{
		{"ws-ram", "ram", ""}, {"ws-fill", "fill", ""}, {"ws-lazy", "lazy", ""},
		{"ws-record", "lazy", fmt.Sprintf("OVERBOOT_BENCH_STAY=%d", int(wsStay.Seconds()))},
	} {
		fmt.Fprintf(&conf, "[profile %s]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = %s\nonfail = poweroff\nonfail-delay = 1s\n", p.name, a.Kernel, a.Initramfs, im.Path, p.mode)
		if p.cmdline != "" {
			fmt.Fprintf(&conf, "cmdline = %s\n", p.cmdline)
		}
		conf.WriteString("\n")
	}
	for _, m := range append(wsMachines, wsRecorder) {
		fmt.Fprintf(&conf, "[machine %s]\nprofile = %s\n\n", m.MAC, m.Profile)
	}
	cfg, err := config.Parse("ws.conf", strings.NewReader(conf.String()))
	if err != nil {
		return nil, err
	}
	cfg.Data = filepath.Join(env.WorkDir, "boot", "ws-store")
	os.RemoveAll(cfg.Data) // no working set from an earlier run
	srv, err := server.Open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	counter := &imageCounter{h: srv.Handler(), prefix: []string{server.BlobPrefix + im.Hex, server.TreePrefix + im.Hex}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: counter}
	go hs.Serve(ln)
	defer hs.Close()
	addr := ln.Addr().String()

	boot := func(m wsMachine, phase string, round int) (wsBoot, error) {
		resp, err := http.Get("http://" + addr + "/ipxe?mac=" + strings.ReplaceAll(m.MAC, ":", "-"))
		if err != nil {
			return wsBoot{}, err
		}
		script, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		args := scriptArgsRE.FindSubmatch(script)
		if args == nil {
			return wsBoot{}, fmt.Errorf("%s: no kernel arguments in the script:\n%s", m.MAC, script)
		}
		argv, err := machine{Kernel: a.Kernel, Initrd: a.Initramfs, Cmdline: strings.Join(append(append([]string{}, bootCmdline...), string(args[1])), " "), Relay: a.Relay, Server: addr}.Argv()
		if err != nil {
			return wsBoot{}, err
		}
		logPath := filepath.Join(logs, fmt.Sprintf("ws-%s-%s-%d.log", strings.NewReplacer(" ", "", ",", "").Replace(m.Label), phase, round))
		counter.take()
		lines, err := bootLog(ctx, argv, logPath)
		requests, bytes := counter.take()
		if err != nil {
			return wsBoot{}, fmt.Errorf("%w (console %s):\n%s", err, logPath, consoleTail(lines, 15))
		}
		t, err := parseBoot(lines)
		if err != nil {
			return wsBoot{}, fmt.Errorf("%w (console %s)", err, logPath)
		}
		var sw time.Duration
		for _, l := range lines {
			if strings.Contains(l.Text, markerSwitch) {
				sw = l.At
			}
			if strings.Contains(l.Text, "overboot-keeper: working set") {
				fmt.Fprintf(env.Out, "  %s\n", l.Text)
			}
		}
		if sw == 0 {
			return wsBoot{}, fmt.Errorf("no %q line (console %s)", markerSwitch, logPath)
		}
		return wsBoot{Switch: t.Program - sw, Program: t.Program, Requests: requests, Bytes: bytes}, nil
	}

	// figures[label] holds each boot's figures.
	figures := map[string][]wsBoot{}
	var errs []error
	run := func(phase string, suffix string) {
		for round := 1; round <= rounds(); round++ {
			for _, m := range wsMachines {
				if ctx.Err() != nil {
					return
				}
				b, err := boot(m, phase, round)
				if err != nil {
					errs = append(errs, fmt.Errorf("working set, %s, round %d, %s: %w", phase, round, m.Label, err))
					continue
				}
				label := m.Label
				if m.Label != "RAM" {
					label += suffix
				}
				fmt.Fprintf(env.Out, "round %d  %-28s switch_root to first program %5.2fs, first program %5.1fs; %d requests, %.1f MB of the image and its tree\n",
					round, label, b.Switch.Seconds(), b.Program.Seconds(), b.Requests, float64(b.Bytes)/1e6)
				figures[label] = append(figures[label], b)
			}
		}
	}
	run("before", "")
	// The recording boot: it stays up past the keeper's minute, whose
	// report reaches the server before it powers off.
	if _, err := boot(wsRecorder, "record", 1); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("working set: the recording boot: %w", err))...)
	}
	ws, n, err := srv.DB().WorkingSet(ctx, "sha256:"+im.Hex)
	if err != nil || n == 0 {
		return nil, errors.Join(append(errs, fmt.Errorf("working set: no working set recorded (%d, %v)", n, err))...)
	}
	fmt.Fprintf(env.Out, "working set of the %s image after one boot: %d chunks of the image and %d of its tree, %d bytes each (%.1f MB)\n", im.Label, ws.Image.Count(), ws.Tree.Count(), ws.ChunkSize, float64(ws.Count()*ws.ChunkSize)/1e6)
	run("after", " + working set")
	return wsResults(figures, im), errors.Join(errs...)
}

// wsResults turns the boots into rows, each beside RAM mode.
func wsResults(figures map[string][]wsBoot, im benchImage) []Result {
	ram := figures["RAM"]
	if len(ram) == 0 {
		return nil
	}
	med := func(bs []wsBoot, f func(wsBoot) time.Duration) float64 {
		ds := make([]time.Duration, len(bs))
		for i, b := range bs {
			ds[i] = f(b)
		}
		return median(ds).Seconds()
	}
	sw := func(b wsBoot) time.Duration { return b.Switch }
	prog := func(b wsBoot) time.Duration { return b.Program }
	reqs := func(b wsBoot) time.Duration { return time.Duration(b.Requests) * time.Second }
	mb := func(b wsBoot) time.Duration { return time.Duration(float64(b.Bytes) / 1e6 * float64(time.Second)) }
	var rs []Result
	for _, label := range []string{"RAM", "fill", "lazy", "fill + working set", "lazy + working set"} {
		bs := figures[label]
		if len(bs) == 0 {
			continue
		}
		goal := ""
		if label == "lazy + working set" {
			goal = "<= 1x"
		}
		note := fmt.Sprintf("median of %d and %d boots, document boots", len(bs), len(ram))
		rs = append(rs,
			Result{Section: "boot", Metric: fmt.Sprintf("%s: switch_root to first program, %s image, s", label, im.Label), Ours: med(bs, sw), Ref: med(ram, sw), RefName: "overboot RAM mode", Better: "lower", Goal: goal, Note: note},
			Result{Section: "boot", Metric: fmt.Sprintf("%s: first program, %s image, s", label, im.Label), Ours: med(bs, prog), Ref: med(ram, prog), RefName: "overboot RAM mode", Better: "lower", Note: note},
			Result{Section: "boot", Metric: fmt.Sprintf("%s: image and tree requests per boot", label), Ours: med(bs, reqs), Ref: med(ram, reqs), RefName: "overboot RAM mode", Better: "lower", Note: note},
			Result{Section: "boot", Metric: fmt.Sprintf("%s: image and tree MB per boot", label), Ours: med(bs, mb), Ref: med(ram, mb), RefName: "overboot RAM mode", Better: "lower", Note: note + "; fill: until power-off, ~1 s after the first program"},
		)
	}
	return rs
}
