package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/vmtest"
)

// The sequential read of a lazy root (the issue's "at least 0.8x of the
// HTTP download speed of the same image"): boots of overboot's lazy
// variant with the large image whose init runs seqScript, which reads the
// image both ways in the same guest, alternating which goes first.

// seqRead is one boot's reads, in bytes per second: the download, the
// device through dm-verity, and the NBD device alone.
type seqRead struct{ HTTP, Dev, Raw float64 }

var seqRE = regexp.MustCompile(markerSeq + ` (http|dev|raw) (\d+) bytes .*copied, ([0-9.]+) s`)

// parseSeq reads seqScript's lines from a console. The device read must
// cover the image (size bytes), the download at least that (the response
// headers come with it).
func parseSeq(lines []vmtest.Line, size int64) (seqRead, error) {
	var r seqRead
	for _, l := range lines {
		m := seqRE.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		secs, err := strconv.ParseFloat(m[3], 64)
		if err != nil || secs <= 0 {
			return r, fmt.Errorf("%q: no time", l.Text)
		}
		switch {
		case m[1] != "http" && n != size, m[1] == "http" && (n < size || n > size+4096):
			return r, fmt.Errorf("%q: %d bytes read, the image has %d", l.Text, n, size)
		case m[1] == "dev":
			r.Dev = float64(n) / secs
		case m[1] == "raw":
			r.Raw = float64(n) / secs
		default:
			r.HTTP = float64(n) / secs
		}
	}
	if r.HTTP == 0 || r.Dev == 0 || r.Raw == 0 {
		return r, fmt.Errorf("no %q lines for all three reads", markerSeq)
	}
	return r, nil
}

// runSeqReads boots c (overboot's lazy variant) with im rounds times and
// returns the section's row.
func runSeqReads(ctx context.Context, env *Env, a *vmtest.Artifacts, c contender, im benchImage, logs string) ([]Result, error) {
	var httpBps, devBps, rawBps []time.Duration // medians of float64s via median()
	var errs []error
	for round := 1; round <= rounds(); round++ {
		first := "http"
		if round%2 == 0 {
			first = "dev"
		}
		sc := c
		sc.Args = func(im benchImage) []string {
			return append(c.Args(im), "OVERBOOT_BENCH_SEQ="+server.BlobPrefix+im.Hex, "OVERBOOT_BENCH_SEQ_FIRST="+first)
		}
		argv, err := machine{Kernel: a.Kernel, Initrd: sc.Initrd, Cmdline: sc.cmdline(im), Relay: a.Relay, Server: sc.Server}.Argv()
		if err != nil {
			return nil, err
		}
		logPath := filepath.Join(logs, fmt.Sprintf("seqread-%s-%d.log", strings.ReplaceAll(im.Label, " ", ""), round))
		lines, err := bootLog(ctx, argv, logPath)
		if err == nil {
			var r seqRead
			if r, err = parseSeq(lines, im.Size); err == nil {
				fmt.Fprintf(env.Out, "round %d  sequential read, %s image (%s first): HTTP download %.1f MB/s, NBD + dm-verity %.1f MB/s (NBD alone %.1f MB/s)\n", round, im.Label, first, r.HTTP/1e6, r.Dev/1e6, r.Raw/1e6)
				httpBps = append(httpBps, time.Duration(r.HTTP))
				devBps = append(devBps, time.Duration(r.Dev))
				rawBps = append(rawBps, time.Duration(r.Raw))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("sequential read, round %d: %w (console %s):\n%s", round, err, logPath, consoleTail(lines, 15)))
	}
	if len(devBps) == 0 {
		return nil, errs[0]
	}
	return []Result{{
		Section: "boot", Metric: fmt.Sprintf("lazy: sequential read of the root, %s image, MB/s", im.Label),
		Ours: float64(median(devBps)) / 1e6, Ref: float64(median(httpBps)) / 1e6,
		RefName: "HTTP download", Better: "higher", Goal: ">= 0.8x",
		Note: fmt.Sprintf("median of %d; dd of the device (NBD, keeper, dm-verity) vs dd of an HTTP GET, same guest; the NBD device alone %.1f MB/s", len(devBps), float64(median(rawBps))/1e6),
	}}, nil
}
