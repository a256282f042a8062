package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/overboot/overboot/server/tftp"
)

func tftpSection() Section {
	return Section{Name: "tftp", Run: runTFTP}
}

const (
	tftpClients   = 32
	tftpRounds    = 15
	tftpBlockSize = 1468 // what PXE ROMs ask, and one Ethernet frame
	tftpFile      = "undionly.kpxe"
)

// runTFTP serves copies of the iPXE binaries from server/tftp (in this
// process) and from tftpd-hpa (in.tftpd, a child process), and fetches
// undionly.kpxe 32 times at once from each with the same Go client,
// blksize 1468, alternating, tftpRounds rounds after a warm-up round.
func runTFTP(ctx context.Context, env *Env) ([]Result, error) {
	root := filepath.Join(env.WorkDir, "tftp", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	// Copies: /usr/lib/ipxe/ipxe.efi is a symlink out of the directory,
	// which both servers would refuse.
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"} {
		b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", name))
		if err != nil {
			return nil, fmt.Errorf("%w (apt-get install ipxe)", err)
		}
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	want, err := os.ReadFile(filepath.Join(root, tftpFile))
	if err != nil {
		return nil, err
	}

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// The clients all come from 127.0.0.1: the per-address cap (8 by
	// default) would turn most of them away.
	srv := &tftp.Server{Root: root, MaxPerClient: tftpClients,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, conn) }()
	defer func() { cancel(); <-served }()
	ours := conn.LocalAddr().String()

	hpa, stop, err := startTFTPDHPA(ctx, root)
	if err != nil {
		return nil, err
	}
	defer stop()

	var oursTimes, hpaTimes []time.Duration
	for i := range tftpRounds + 1 {
		o, err := fetchAll(ctx, ours, want)
		if err != nil {
			return nil, fmt.Errorf("overboot: %w", err)
		}
		h, err := fetchAll(ctx, hpa, want)
		if err != nil {
			return nil, fmt.Errorf("tftpd-hpa: %w", err)
		}
		if i == 0 {
			continue // warm-up: page cache, first forks
		}
		oursTimes, hpaTimes = append(oursTimes, o), append(hpaTimes, h)
		fmt.Fprintf(env.Out, "round %2d: overboot %6.1f ms, tftpd-hpa %6.1f ms (%d x %s, %d bytes, blksize %d)\n",
			i, ms(o), ms(h), tftpClients, tftpFile, len(want), tftpBlockSize)
	}
	o, h := median(oursTimes), median(hpaTimes)
	mb := float64(tftpClients*len(want)) / 1e6
	return []Result{
		{Section: "tftp", Metric: fmt.Sprintf("%d concurrent %s fetches, ms (median)", tftpClients, tftpFile),
			Ours: ms(o), Ref: ms(h), RefName: "tftpd-hpa", Better: "lower", Goal: "<= 1.11x", Note: "the time form of >= 0.9x MB/s"},
		{Section: "tftp", Metric: fmt.Sprintf("%d concurrent %s fetches, MB/s (median)", tftpClients, tftpFile),
			Ours: mb / o.Seconds(), Ref: mb / h.Seconds(), RefName: "tftpd-hpa", Better: "higher", Goal: ">= 0.9x",
			Note: "blksize 1468, same Go client; overboot in-process, tftpd-hpa forks per request"},
	}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// fetchAll fetches tftpFile tftpClients times at once from addr and
// checks every copy.
func fetchAll(ctx context.Context, addr string, want []byte) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, tftpClients)
	t0 := time.Now()
	for i := range tftpClients {
		wg.Go(func() {
			var buf bytes.Buffer
			buf.Grow(len(want))
			c := &tftp.Client{BlockSize: tftpBlockSize}
			if _, err := c.Get(ctx, addr, tftpFile, &buf); err != nil {
				errs[i] = err
			} else if !bytes.Equal(buf.Bytes(), want) {
				errs[i] = fmt.Errorf("fetch %d: got %d bytes, not the file's %d", i, buf.Len(), len(want))
			}
		})
	}
	wg.Wait()
	return time.Since(t0), errors.Join(errs...)
}

// startTFTPDHPA runs in.tftpd in the foreground on 127.0.0.1 and a free
// port, serving root (chrooted there by --secure), and waits until it
// answers. stop kills it.
func startTFTPDHPA(ctx context.Context, root string) (addr string, stop func(), err error) {
	port, err := freeUDPPort()
	if err != nil {
		return "", nil, err
	}
	addr = net.JoinHostPort("127.0.0.1", port)
	cmd := exec.CommandContext(ctx, "in.tftpd", "--foreground", "--address", addr, "--secure", root)
	cmd.Stderr = os.Stderr
	// Its own process group: in.tftpd forks a child per request, and
	// stop ends those with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("in.tftpd (apt-get install tftpd-hpa): %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	for end := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-exited:
			exited <- err
			return "", nil, fmt.Errorf("in.tftpd exited: %v", err)
		default:
		}
		c := &tftp.Client{Timeout: 100 * time.Millisecond, Retries: 1}
		if _, err := c.Get(ctx, addr, tftpFile, io.Discard); err == nil {
			return addr, stop, nil
		} else if time.Now().After(end) {
			stop()
			return "", nil, fmt.Errorf("in.tftpd on %s does not answer: %w", addr, err)
		}
	}
}

func freeUDPPort() (string, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port), nil
}
