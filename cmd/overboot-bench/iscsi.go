package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/server/target"
)

func iscsiSection() Section {
	return Section{Name: "iscsi", Run: runISCSI}
}

const (
	iscsiLUNSize  = 512 << 20
	iscsiUser     = "bench"
	iscsiSecret   = "bench-secret-16b"
	iscsiPerfSecs = 8
	iscsiOurIQN   = "iqn.2026-11.org.overboot:bench"
	iscsiCowIQN   = "iqn.2026-11.org.overboot:bench-cow"
	iscsiTgtdIQN  = "iqn.2026-11.org.overboot:tgtd"
)

var perfRE = regexp.MustCompile(`iops average ([0-9]+) \(([0-9]+) MB/s\)`)

// iscsiPerf runs iscsi-perf for a while and returns the last average IOPS
// and MB/s.
func iscsiPerf(ctx context.Context, url string, args ...string) (float64, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, (iscsiPerfSecs+20)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "iscsi-perf", append(append([]string{"-t", "10", "-m", "32"}, args...), url)...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("iscsi-perf (apt-get install libiscsi-bin): %w", err)
	}
	timer := time.AfterFunc(iscsiPerfSecs*time.Second, func() { cmd.Process.Signal(os.Interrupt) })
	defer timer.Stop()
	b, _ := io.ReadAll(out)
	cmd.Wait()
	m := perfRE.FindAllStringSubmatch(strings.ReplaceAll(string(b), "\r", "\n"), -1)
	if len(m) == 0 {
		return 0, 0, fmt.Errorf("iscsi-perf %s: no figures:\n%s", url, tail(string(b), 10))
	}
	iops, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	mbs, _ := strconv.ParseFloat(m[len(m)-1][2], 64)
	return iops, mbs, nil
}

func runISCSI(ctx context.Context, env *Env) ([]Result, error) {
	dir := filepath.Join(env.WorkDir, "iscsi")
	os.MkdirAll(dir, 0o755)
	file := filepath.Join(dir, "lun.img")
	if fileSize(file) != iscsiLUNSize {
		f, err := os.Create(file)
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(f, rand.Reader, iscsiLUNSize); err != nil {
			return nil, err
		}
		f.Close()
	}
	// overboot's target, in this process: a plain read-only file LUN and a
	// copy-on-write LUN over the same file.
	plain, err := target.OpenFile(file, true)
	if err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(dir, "cow.delta"))
	os.Remove(filepath.Join(dir, "cow.delta.log"))
	cow, err := target.OpenCow(file, filepath.Join(dir, "cow.delta"))
	if err != nil {
		return nil, err
	}
	// A machine that has been used: a quarter of the disk rewritten, in
	// 1 MiB pieces spread over it, so reads hit the delta and the base.
	piece := make([]byte, 1<<20)
	for off := int64(0); off < iscsiLUNSize; off += 4 << 20 {
		rand.Read(piece)
		if _, err := cow.WriteAt(piece, off); err != nil {
			return nil, fmt.Errorf("populate the COW layer: %w", err)
		}
	}
	srv := target.New(nil)
	chap := target.CHAP{User: iscsiUser, Secret: iscsiSecret}
	if err := srv.AddTarget(target.TargetConfig{IQN: iscsiOurIQN, LUNs: []target.Backing{plain}, CHAP: chap}); err != nil {
		return nil, err
	}
	if err := srv.AddTarget(target.TargetConfig{IQN: iscsiCowIQN, LUNs: []target.Backing{cow}, CHAP: chap}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Serve(sctx, ln)

	// tgtd serving the same file.
	tgtPort := freePort()
	stopTgtd, err := startTgtd(ctx, tgtPort, file)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			stopTgtd()
		}
	}()

	url := func(addr, iqn string, lun int) string {
		return fmt.Sprintf("iscsi://%s%%%s@%s/%s/%d", iscsiUser, iscsiSecret, addr, iqn, lun)
	}
	ours, cowURL, ref := url(ln.Addr().String(), iscsiOurIQN, 0), url(ln.Addr().String(), iscsiCowIQN, 0), url("127.0.0.1:"+tgtPort, iscsiTgtdIQN, 1)
	type fig struct{ iops, mbs float64 }
	measure := func(u string, args ...string) (fig, error) {
		i, m, err := iscsiPerf(ctx, u, args...)
		return fig{i, m}, err
	}
	// Three rounds, the targets interleaved in each, and the median of
	// each figure: this machine is shared, and one run can be 15% off.
	const rounds = 3
	var runs [3][2][rounds]fig // [ours, tgtd, cow][seq, rand][round]
	for r := range rounds {
		for i, u := range []string{ours, ref, cowURL} {
			if runs[i][0][r], err = measure(u, "-b", "256"); err != nil {
				return nil, err
			}
			if runs[i][1][r], err = measure(u, "-r"); err != nil {
				return nil, err
			}
		}
	}
	var res [3][2]fig // medians
	for i := range res {
		for k := range res[i] {
			f := runs[i][k][:]
			slices.SortFunc(f, func(a, b fig) int { return cmp.Compare(a.iops+a.mbs, b.iops+b.mbs) })
			res[i][k] = f[rounds/2]
		}
		fmt.Fprintf(env.Out, "%s: sequential 128 KiB %.0f MB/s, random 4 KiB %.0f IOPS (median of %d)\n", []string{"overboot", "tgtd", "overboot cow"}[i], res[i][0].mbs, res[i][1].iops, rounds)
	}
	stopTgtd()
	stopped = true

	// iscsi-test-cu over every family, on fresh 64 MB LUNs, both targets.
	cuOurs, err := cuOverboot(ctx, dir)
	if err != nil {
		return nil, err
	}
	cuFile := filepath.Join(dir, "cu-tgtd.img")
	os.Remove(cuFile)
	if err := os.WriteFile(cuFile, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(cuFile, 64<<20); err != nil {
		return nil, err
	}
	stopCu, err := startTgtd(ctx, tgtPort, cuFile)
	if err != nil {
		return nil, err
	}
	cuRef, err := cuRun(ctx, url("127.0.0.1:"+tgtPort, iscsiTgtdIQN, 1))
	stopCu()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Out, "iscsi-test-cu -d (all families): overboot %d ran, %d passed, %d failed; tgtd %d ran, %d passed, %d failed\n",
		cuOurs[0], cuOurs[1], cuOurs[2], cuRef[0], cuRef[1], cuRef[2])

	return []Result{
		{Section: "iscsi", Metric: "iscsi-test-cu -d: tests passed (CUnit count)", Ours: float64(cuOurs[1]), Ref: float64(cuRef[1]), RefName: "tgtd", Better: "higher", Goal: "report", Note: fmt.Sprintf("failed: ours %d, tgtd %d", cuOurs[2], cuRef[2])},
		{Section: "iscsi", Metric: "iscsi-perf sequential 128 KiB, MB/s", Ours: res[0][0].mbs, Ref: res[1][0].mbs, RefName: "tgtd", Better: "higher", Goal: ">= 1.0x"},
		{Section: "iscsi", Metric: "iscsi-perf random 4 KiB, IOPS", Ours: res[0][1].iops, Ref: res[1][1].iops, RefName: "tgtd", Better: "higher", Goal: ">= 1.0x"},
		{Section: "iscsi", Metric: "COW LUN (25% rewritten) random 4 KiB, IOPS", Ours: res[2][1].iops, Ref: res[0][1].iops, RefName: "file LUN", Better: "higher", Goal: ">= 0.9x"},
		{Section: "iscsi", Metric: "COW LUN (25% rewritten) seq 128 KiB, MB/s", Ours: res[2][0].mbs, Ref: res[0][0].mbs, RefName: "file LUN", Better: "higher", Goal: ">= 0.9x"},
	}, nil
}

// startTgtd runs tgtd on 127.0.0.1:port with the file as LUN 1 behind
// CHAP, and returns how to stop it (tgtd ignores SIGTERM: ENV.md).
func startTgtd(ctx context.Context, port, file string) (func(), error) {
	cmd := exec.CommandContext(ctx, "tgtd", "-f", "--iscsi", "portal=127.0.0.1:"+port)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tgtd (apt-get install tgt): %w", err)
	}
	stop := func() {
		exec.Command("tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force").Run()
		exec.Command("tgtadm", "--op", "delete", "--mode", "system").Run()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	adm := func(args ...string) error {
		var err error
		for i := 0; i < 50; i++ { // tgtd needs a moment to open its control socket
			var out []byte
			out, err = exec.Command("tgtadm", append([]string{"--lld", "iscsi"}, args...)...).CombinedOutput()
			if err == nil {
				return nil
			}
			err = fmt.Errorf("tgtadm %s: %v: %s", strings.Join(args, " "), err, out)
			time.Sleep(100 * time.Millisecond)
		}
		return err
	}
	for _, a := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", "1", "-T", iscsiTgtdIQN},
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", file},
		{"--op", "new", "--mode", "account", "--user", iscsiUser, "--password", iscsiSecret},
		{"--op", "bind", "--mode", "account", "--tid", "1", "--user", iscsiUser},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := adm(a...); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

var cuSummaryRE = regexp.MustCompile(`(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

// cuRun runs iscsi-test-cu over every family and returns ran, passed,
// failed (CUnit counts skipped tests as passed).
func cuRun(ctx context.Context, url string) ([3]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "iscsi-test-cu", "-d", url).CombinedOutput()
	m := cuSummaryRE.FindStringSubmatch(string(out))
	if m == nil {
		return [3]int{}, fmt.Errorf("iscsi-test-cu %s: no summary:\n%s", url, tail(string(out), 20))
	}
	var r [3]int
	r[0], _ = strconv.Atoi(m[2])
	r[1], _ = strconv.Atoi(m[3])
	r[2], _ = strconv.Atoi(m[4])
	return r, nil
}

func cuOverboot(ctx context.Context, dir string) ([3]int, error) {
	path := filepath.Join(dir, "cu-overboot.img")
	os.Remove(path)
	b, err := target.CreateSparse(path, 64<<20)
	if err != nil {
		return [3]int{}, err
	}
	defer b.Close()
	srv := target.New(nil)
	if err := srv.AddTarget(target.TargetConfig{IQN: iscsiOurIQN, LUNs: []target.Backing{b}, CHAP: target.CHAP{User: iscsiUser, Secret: iscsiSecret}}); err != nil {
		return [3]int{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return [3]int{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Serve(sctx, ln)
	return cuRun(ctx, fmt.Sprintf("iscsi://%s%%%s@%s/%s/0", iscsiUser, iscsiSecret, ln.Addr(), iscsiOurIQN))
}
